/**
 * Import records (PRODUCT.md §7): an upload row with its results, issues and hold list, in the
 * shape `import list`, `import show` and `validate` print. Times are in the tenant's zone.
 */
import { DateTime } from 'luxon';
import type { Queryable } from '../store/db.js';
import type { UploadStatus } from '../types.js';
import { countBySchool, holdFacts, wasHeld, type SchoolCount } from './hold.js';
import { emptyCounts, isGroupsFile, warningCode, type ImportCounts, type ImportIssue, type ImportMode } from './types.js';

export interface ImportRecord {
  id: string;
  tenant: string;
  file: string;
  sha256: string;
  bytes: number;
  /** ISO 8601 with the tenant's offset */
  receivedAt: string;
  status: UploadStatus;
  mode: ImportMode | null;
  counts: ImportCounts;
  /**
   * What `counts` counts: users (users.csv), or memberships (groups.csv: created is memberships
   * added, deactivated memberships removed); no user is created or deactivated by a groups.csv.
   */
  counted: 'users' | 'memberships';
  errors: ImportIssue[];
  warnings: ImportIssue[];
  message: string | null;
  /** sftp | cli | validate */
  source: string;
  /** utf-8, windows-1252 or mixed (UTF-8 but for some lines), once read */
  encoding: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  /** held (and rejected) imports: usernames the file would have deactivated */
  heldDeactivations?: string[];
  /** the same users counted by school, most first (school null: none); empty when none has a school */
  heldBySchool?: SchoolCount[];
  /** held (and rejected) groups.csv imports: the memberships the file would have removed */
  heldRemovals?: Array<{ username: string; group: string }>;
  /** the operator who imported it at once with `import run --now`; null when the schedule did */
  requestedBy: string | null;
  approvedBy: string | null;
  approvedAt: string | null;
  rejectedBy: string | null;
  rejectedAt: string | null;
  /** true when `errors` or `warnings` lists fewer than `counts` says (list view, capped readers) */
  issuesTruncated: boolean;
  /** attempts that ended without an outcome (crash, lost connection), and why the last one did */
  attempts: number;
  lastAttemptError: string | null;
  /** the newer users.csv that replaced this one (status superseded) */
  supersededBy: string | null;
}

interface RecordRow {
  id: string;
  subdomain: string;
  timezone: string;
  file_name: string;
  sha256: string;
  bytes: number;
  received_at: Date;
  status: UploadStatus;
  mode: ImportMode | null;
  counts: ImportCounts | null;
  message: string | null;
  source: string;
  encoding: string | null;
  started_at: Date | null;
  finished_at: Date | null;
  requested_by: string | null;
  approved_by: string | null;
  approved_at: Date | null;
  rejected_by: string | null;
  rejected_at: Date | null;
  attempts: number;
  last_attempt_error: string | null;
  superseded_by: string | null;
}

/** An import_issues row, as ISSUE_COLUMNS selects it. */
interface IssueRow {
  upload_id: string;
  kind: 'error' | 'warning';
  line: number;
  column_name: string;
  value: string | null;
  message: string;
  code: string | null;
  username: string | null;
}

const ISSUE_COLUMNS = 'upload_id, kind, line, column_name, value, message, code, username';

/** An issue as stored: its fields in the order --json prints them (a username, when the row has one, last). */
function issueOf(i: IssueRow): ImportIssue {
  const issue: ImportIssue = { line: i.line, column: i.column_name, message: i.message };
  if (i.value !== null) issue.value = i.value;
  if (i.username !== null) issue.username = i.username;
  const code = warningCode(i.code);
  if (code !== undefined) issue.code = code;
  return issue;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Import ids are uuids; anything else is no import (and must not reach a uuid parameter). */
export const isImportId = (id: string): boolean => UUID.test(id);

const SELECT = `
  SELECT u.id, t.subdomain, t.timezone, u.file_name, u.sha256, u.bytes, u.received_at, u.status, u.mode,
         u.counts, u.message, u.source, u.encoding, u.started_at, u.finished_at,
         u.requested_by, u.approved_by, u.approved_at, u.rejected_by, u.rejected_at, u.attempts, u.last_attempt_error,
         u.superseded_by
    FROM uploads u JOIN tenants t ON t.id = u.tenant_id`;

export function zonedIso(at: Date | null, zone: string): string | null {
  if (!at) return null;
  return DateTime.fromJSDate(at, { zone }).set({ millisecond: 0 }).toISO({ suppressMilliseconds: true });
}

/**
 * A record as --json prints it (PRODUCT.md §7): its issues without their code. The code is what
 * the report's advice is keyed on, named and grouped as the report needs; printed, scripts would
 * come to rely on a list that only warnings have, that imports recorded before it lack, and that
 * is free to change with the advice.
 */
export function recordJson<R extends ImportRecord>(record: R): R {
  const bare = ({ code: _code, ...issue }: ImportIssue): ImportIssue => issue;
  return { ...record, errors: record.errors.map(bare), warnings: record.warnings.map(bare) };
}

/** One import with all of its errors and warnings; undefined when no upload has this id. */
export async function getImportRecord(db: Queryable, id: string): Promise<ImportRecord | undefined> {
  if (!isImportId(id)) return undefined;
  const { rows } = await db.query<RecordRow>(`${SELECT} WHERE u.id = $1`, [id]);
  const row = rows[0];
  if (!row) return undefined;
  const [record] = await withIssues(db, [row], null);
  return record;
}

/**
 * Imports newest first. Each carries at most `issuesPerImport` errors and warnings (default 100;
 * counts are exact; `import show` gives them all).
 */
export async function listImportRecords(
  db: Queryable,
  opts: { tenant?: string; limit?: number; issuesPerImport?: number } = {},
): Promise<ImportRecord[]> {
  const { rows } = await db.query<RecordRow>(`${SELECT} WHERE ($1::text IS NULL OR t.subdomain = $1) ORDER BY u.arrival DESC LIMIT $2`, [
    opts.tenant ?? null,
    opts.limit ?? 50,
  ]);
  return withIssues(db, rows, opts.issuesPerImport ?? 100);
}

/** Each import's errors and warnings in file order, at most `perImport` of each kind (null: all). */
export async function storedIssues(
  db: Queryable,
  ids: readonly string[],
  perImport: number | null,
): Promise<Map<string, { errors: ImportIssue[]; warnings: ImportIssue[] }>> {
  const { rows } = await db.query<IssueRow>(
    `SELECT x.* FROM unnest($1::uuid[]) AS q(id)
       CROSS JOIN (VALUES ('error'), ('warning')) AS k(kind)
       CROSS JOIN LATERAL (
         SELECT ${ISSUE_COLUMNS} FROM import_issues
          WHERE upload_id = q.id AND kind = k.kind ORDER BY line, id LIMIT $2) x`,
    [ids, perImport],
  );
  return new Map(
    ids.map((id) => {
      const mine = rows.filter((i) => i.upload_id === id);
      return [
        id,
        { errors: mine.filter((i) => i.kind === 'error').map(issueOf), warnings: mine.filter((i) => i.kind === 'warning').map(issueOf) },
      ];
    }),
  );
}

async function withIssues(db: Queryable, rows: RecordRow[], perImport: number | null): Promise<ImportRecord[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const issues = await storedIssues(db, ids, perImport);
  // The user's school as it is now, as the held report names it.
  const held = await db.query<{ upload_id: string; username: string; school: string | null }>(
    `SELECT h.upload_id, h.username, s.name AS school
       FROM import_hold_deactivations h JOIN users u ON u.id = h.user_id
       LEFT JOIN schools s ON s.id = u.school_id
      WHERE h.upload_id = ANY($1::uuid[])
      ORDER BY lower(h.username)`,
    [ids],
  );
  const removals = await db.query<{ upload_id: string; username: string; group: string }>(
    `SELECT upload_id, username, group_name AS "group" FROM import_hold_removals WHERE upload_id = ANY($1::uuid[])
      ORDER BY lower(group_name), lower(username)`,
    [ids],
  );
  return rows.map((r) => {
    const { errors, warnings } = issues.get(r.id) ?? { errors: [], warnings: [] };
    const counts = { ...emptyCounts(), ...(r.counts ?? {}) };
    const heldRows = held.rows.filter((h) => h.upload_id === r.id);
    const heldNames = heldRows.map((h) => h.username);
    const record: ImportRecord = {
      id: r.id,
      tenant: r.subdomain,
      file: r.file_name,
      sha256: r.sha256,
      bytes: r.bytes,
      receivedAt: zonedIso(r.received_at, r.timezone) ?? '',
      status: r.status,
      mode: r.mode,
      counts,
      counted: isGroupsFile(r.file_name) ? 'memberships' : 'users',
      errors,
      warnings,
      message: messageNow(r.status, r.message, r.last_attempt_error, r.file_name),
      source: r.source,
      encoding: r.encoding,
      startedAt: zonedIso(r.started_at, r.timezone),
      finishedAt: zonedIso(r.finished_at, r.timezone),
      durationMs: r.started_at && r.finished_at ? r.finished_at.getTime() - r.started_at.getTime() : null,
      requestedBy: r.requested_by,
      approvedBy: r.approved_by,
      approvedAt: zonedIso(r.approved_at, r.timezone),
      rejectedBy: r.rejected_by,
      rejectedAt: zonedIso(r.rejected_at, r.timezone),
      issuesTruncated: errors.length < counts.errors || warnings.length < counts.warnings,
      attempts: r.attempts,
      lastAttemptError: r.last_attempt_error,
      supersededBy: r.superseded_by,
    };
    if (isGroupsFile(r.file_name)) {
      const gone = removals.rows.filter((h) => h.upload_id === r.id).map(({ username, group }) => ({ username, group }));
      if (r.status === 'held' || r.status === 'rejected' || gone.length > 0) record.heldRemovals = gone;
    } else if (r.status === 'held' || r.status === 'rejected' || heldNames.length > 0) {
      record.heldDeactivations = heldNames;
      record.heldBySchool = countBySchool(heldRows.map((h) => h.school));
    }
    return record;
  });
}

/**
 * The record's message as it reads now. A held import's message tells the operator to approve or
 * reject it; once it has been rejected or replaced, those commands only fail, so what is left is
 * why it was held and what became of it.
 */
function messageNow(status: UploadStatus, message: string | null, lastAttemptError: string | null, file: string): string | null {
  // an upload that failed after repeated attempts has no file-level message: say why instead
  if (message === null) return status === 'failed' ? lastAttemptError : null;
  if (status !== 'rejected' && status !== 'superseded') return message;
  const facts = holdFacts(message);
  return facts === null ? message : wasHeld(facts, status, isGroupsFile(file) ? 'groups.csv' : 'users.csv');
}
