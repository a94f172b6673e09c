/**
 * A full sync none of whose rows could be used is not a roster: every data row is an error, as
 * when a groups.csv names users by SIS ID (S1, S2) or a users.csv comes from the wrong export.
 * Applied, it would only take away: remove every membership, or deactivate every user, that it
 * does not list. So it fails as a whole, like an empty file, whatever the tenant's threshold: the
 * caller's FileRejectedError path rolls back what the engine did in the transaction and records
 * the failure with this message, and with the rows' errors and warnings (UnusableFileError), so
 * that the report, `import show`, `validate` and --json list every row to fix, not only the first.
 */
import type { PoolClient } from 'pg';
import type { Outcome, UploadTarget } from './execute.js';
import { DEFAULT_MAX_ERRORS as MAX_KEPT_ISSUES } from './read/summary.js';
import { storedIssues } from './records.js';
import { emptyCounts, FileRejectedError, type ImportCounts, type ImportIssue } from './types.js';

/**
 * The refusal, with what the engine found in the file's rows. They are rolled back with the rest
 * of the engine's work, so they travel with the error for the caller to record again.
 */
export class UnusableFileError extends FileRejectedError {
  constructor(
    message: string,
    /** failed, with this message; counts of the rows read and of their issues, nothing applied */
    readonly outcome: Outcome,
    /** the errors and warnings the engine kept (at most MAX_KEPT_ISSUES of each), in file order */
    readonly issues: { errors: ImportIssue[]; warnings: ImportIssue[] },
  ) {
    super(message);
    this.name = 'UnusableFileError';
  }
}

/** Throws FileRejectedError for a full sync with data rows, none of them used, that takes something away. */
export async function refuseUnusableFile(client: PoolClient, target: UploadTarget, groups: boolean, outcome: Outcome): Promise<void> {
  const c = outcome.counts;
  if (outcome.mode !== 'full' || c.rows === 0 || c.deactivated === 0 || usedRows(c, groups) > 0) return;
  // A users.csv row whose status is inactive is used, and counted as a deactivation: a row without
  // an error is what tells it apart. (Kept errors are capped; a file past the cap is judged as
  // usable, and the safety hold judges it.)
  if (!groups && (await linesWithErrors(client, target.uploadId)) < c.rows) return;
  // In file order: the first of them is the message's example.
  const issues = await keptIssues(client, target.uploadId);
  // Everything the file would take away, out of what there was before it: the engine may already
  // have taken it away in this transaction (rolled back by the caller), and added nothing; a held
  // groups.csv has taken nothing away.
  const before = groups
    ? await client.query<{ n: string }>(
        `SELECT count(*) + $2::bigint AS n FROM memberships m JOIN groups g ON g.id = m.group_id WHERE g.tenant_id = $1::bigint`,
        [target.tenantId, outcome.status === 'held' ? 0 : c.deactivated],
      )
    : await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM users
          WHERE tenant_id = $1::bigint AND (active OR (NOT active AND last_import_id = $2::uuid))`,
        [target.tenantId, target.uploadId],
      );
  const message = unusableFileMessage(groups, c, Number(before.rows[0]?.n ?? c.deactivated), issues.errors[0]);
  // Nothing is applied, so nothing is counted as done: what the file had, and what is wrong with it.
  const counts: ImportCounts = { ...emptyCounts(), rows: c.rows, errors: c.errors, warnings: c.warnings };
  const refused: Outcome = { status: 'failed', mode: outcome.mode, encoding: outcome.encoding, counts, message };
  throw new UnusableFileError(message, refused, issues);
}

/**
 * The issues the engine stored, as many of each kind as an import keeps (a groups.csv's errors
 * found against the database are not capped as they are stored; here they are, as they are held
 * in memory until the rollback is over).
 */
async function keptIssues(client: PoolClient, uploadId: string): Promise<UnusableFileError['issues']> {
  return (await storedIssues(client, [uploadId], MAX_KEPT_ISSUES)).get(uploadId) ?? { errors: [], warnings: [] };
}

/**
 * Rows the import would apply. users.csv: every valid row that is not a duplicate is created,
 * updated, reactivated or unchanged. groups.csv: every usable row is one membership, added or
 * already there (repeated lines make one).
 */
function usedRows(c: ImportCounts, groups: boolean): number {
  return groups ? c.created + c.unchanged : c.created + c.updated + c.reactivated + c.unchanged;
}

async function linesWithErrors(client: PoolClient, uploadId: string): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(DISTINCT line) AS n FROM import_issues WHERE upload_id = $1 AND kind = 'error' AND line > 0`,
    [uploadId],
  );
  return Number(rows[0]?.n ?? 0);
}

/** What the district is told to do, at the end of the message (an approval says otherwise). */
export const FIX_AND_UPLOAD = 'Fix the errors and upload it again.';

export function unusableFileMessage(
  groups: boolean,
  c: ImportCounts,
  before: number,
  first: { line: number; message: string } | undefined,
): string {
  // The file as the district knows it (validate may read one of another name).
  const file = groups ? 'groups.csv' : 'users.csv';
  const n = c.rows.toLocaleString('en-US');
  const why = first ? ` (the first error, on line ${first.line}: ${first.message.trim().replace(/\.$/, '')})` : '';
  const none = c.rows === 1 ? `The one row of ${file} could not be used${why}` : `None of the ${n} rows of ${file} could be used${why}`;
  const gone = c.deactivated.toLocaleString('en-US');
  const of = before === 1 ? 'the one' : c.deactivated >= before ? `all ${gone}` : `${gone} of the ${before.toLocaleString('en-US')}`;
  const what = groups
    ? `removed ${of} group membership${before === 1 ? '' : 's'}`
    : `deactivated ${of} active user${before === 1 ? '' : 's'}`;
  return `${none}, so nothing was changed: applying it would have ${what}. ${FIX_AND_UPLOAD}`;
}
