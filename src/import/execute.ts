/**
 * The part every way of importing shares (a claimed upload, an approval, a dry run): read the
 * file, apply it inside the caller's transaction, and record the outcome on the upload row.
 */
import path from 'node:path';
import type { Pool, PoolClient } from 'pg';
import type { Config } from '../config/config.js';
import { RosterdError } from '../errors.js';
import { listSchools } from '../store/schools.js';
import { waitForLocks, type Queryable } from '../store/db.js';
import type { Clock, Logger, UploadStatus } from '../types.js';
import { applyGroups } from './apply-groups.js';
import { applyUsers } from './apply-users.js';
import type { ImportHook, ImportTarget } from './engine-types.js';
import type { PasswordHasher } from './hash-pool.js';
import { insertIssues } from './issues.js';
import { loadCheckKey } from './password.js';
import { isImportId } from './records.js';
import { readGroupsFile } from './read/groups-reader.js';
import { lastUsersRows } from './rejected-rows.js';
import { readUsersFile } from './read/users-reader.js';
import { emptyCounts, isGroupsFile, type FileRejectedError, type ImportCounts, type ImportMode } from './types.js';
import { refuseUnusableFile, UnusableFileError } from './unusable-file.js';

/** What the engine needs; `hasher` is optional (one is made per import when absent). */
export interface ImportContext {
  pool: Pool;
  logger: Logger;
  clock: Clock;
  config: Config;
  hasher?: PasswordHasher;
}

export interface Outcome {
  status: UploadStatus;
  mode: ImportMode | null;
  encoding: string | null;
  counts: ImportCounts;
  message: string | null;
}

export interface ExecuteOptions {
  dryRun: boolean;
  overrideThreshold: boolean;
  hasher: PasswordHasher | undefined;
  at?: ImportHook | undefined;
}

export interface UploadTarget extends ImportTarget {
  tenant: string;
  fileName: string;
  status: UploadStatus;
  /** absolute path of the file to read */
  path: string;
  /** SHA-256 recorded when the file was received */
  sha256: string;
}

/** The upload and its tenant's threshold; `forUpdate` locks the row (approve, reject). */
export async function loadTarget(db: Queryable, dataDir: string, uploadId: string, forUpdate = false): Promise<UploadTarget> {
  const { rows } = isImportId(uploadId)
    ? await db.query<{
        id: string;
        tenant_id: number;
        subdomain: string;
        file_name: string;
        stored_path: string;
        sha256: string;
        status: UploadStatus;
        threshold_percent: string;
        threshold_count: number | null;
      }>(
        `SELECT u.id, u.tenant_id, t.subdomain, u.file_name, u.stored_path, u.sha256, u.status, t.threshold_percent, t.threshold_count
           FROM uploads u JOIN tenants t ON t.id = u.tenant_id WHERE u.id = $1 ${forUpdate ? 'FOR UPDATE OF u' : ''}`,
        [uploadId],
      )
    : { rows: [] };
  const row = rows[0];
  if (!row) {
    throw new RosterdError('IMPORT_NOT_FOUND', `no import has the ID "${uploadId}"; "rosterd import list" shows them`);
  }
  return {
    uploadId: row.id,
    tenantId: row.tenant_id,
    tenant: row.subdomain,
    fileName: row.file_name,
    status: row.status,
    path: path.resolve(dataDir, row.stored_path),
    sha256: row.sha256,
    thresholdPercent: Number(row.threshold_percent),
    thresholdCount: row.threshold_count,
  };
}

/**
 * Imports of one tenant are serialised (a nightly import and an approval must not interleave);
 * the lock is released when the transaction ends.
 */
export async function lockTenantRoster(client: PoolClient, tenantId: number): Promise<void> {
  await waitForLocks(client);
  await client.query('SELECT pg_advisory_xact_lock($1::integer, $2::integer)', [IMPORT_LOCK_CLASS, tenantId]);
}

/** First key of the two-key advisory lock; the second is the tenant id. */
const IMPORT_LOCK_CLASS = 0x726f7374; // 'rost'

/**
 * Reads and applies the file in the caller's transaction. FileRejectedError propagates, also for a
 * full sync none of whose rows could be used (unusable-file.ts): the caller rolls back.
 */
export async function executeImport(
  client: PoolClient,
  config: Config,
  clock: Clock,
  target: UploadTarget,
  options: ExecuteOptions,
): Promise<Outcome> {
  await lockTenantRoster(client, target.tenantId);
  if (isGroupsFile(target.fileName)) {
    const result = await applyGroups(client, target, readGroupsFile(target.path), {
      at: options.at,
      lastUsersRows: (usernames) =>
        lastUsersRows(client, { dataDir: config.DATA_DIR, now: clock.now(), tenantId: target.tenantId }, usernames),
      dryRun: options.dryRun,
      overrideThreshold: options.overrideThreshold,
    });
    const outcome: Outcome = {
      status: statusOf(options.dryRun, result.held, result.counts),
      mode: result.mode,
      encoding: result.encoding,
      counts: result.counts,
      message: result.message,
    };
    await refuseUnusableFile(client, target, true, outcome);
    return outcome;
  }
  const schools = await listSchools(client, target.tenantId);
  const checkKey = await loadCheckKey(config.DATA_DIR);
  const now = clock.now();
  const read = () => readUsersFile(target.path, { schools, now });
  const result = await applyUsers(client, target, read(), {
    reread: read,
    hasher: options.hasher,
    checkKey,
    dryRun: options.dryRun,
    overrideThreshold: options.overrideThreshold,
    at: options.at,
  });
  const status = statusOf(options.dryRun, result.held, result.counts);
  const outcome: Outcome = { status, mode: result.mode, encoding: result.encoding, counts: result.counts, message: result.message };
  await refuseUnusableFile(client, target, false, outcome);
  return outcome;
}

function statusOf(dryRun: boolean, held: boolean, counts: ImportCounts): UploadStatus {
  if (dryRun) return 'validated';
  if (held) return 'held';
  return counts.errors > 0 ? 'completed_with_errors' : 'succeeded';
}

/**
 * Stores the issues of a file refused whole, once the caller has rolled back what the engine did,
 * and returns the outcome to record: failed, the refusal its one error; or, for a full sync none of
 * whose rows could be used (UnusableFileError), the refusal its message and the rows' errors and
 * warnings its issues, as an import lists them, so that every row to fix is listed.
 */
export async function storeRejection(client: PoolClient, uploadId: string, err: FileRejectedError): Promise<Outcome> {
  if (err instanceof UnusableFileError) {
    await insertIssues(client, uploadId, 'error', err.issues.errors);
    await insertIssues(client, uploadId, 'warning', err.issues.warnings);
    return err.outcome;
  }
  await insertIssues(client, uploadId, 'error', [{ line: err.line, column: '', message: err.message }]);
  return { status: 'failed', mode: null, encoding: null, counts: { ...emptyCounts(), errors: 1 }, message: err.message };
}

/**
 * Writes the outcome on the upload row, only if the row is still in the status this process
 * expects (its claim, or a hold being approved); otherwise the transaction must not commit.
 */
export async function recordOutcome(
  client: PoolClient,
  uploadId: string,
  expected: UploadStatus,
  outcome: Outcome,
  times: { startedAt: Date; finishedAt: Date },
  approval?: { by: string; at: Date },
): Promise<void> {
  const { rowCount } = await client.query(
    `UPDATE uploads SET status = $3, mode = $4, encoding = $5, counts = $6, message = $7,
            started_at = $8, finished_at = $9, status_changed_at = $9,
            approved_by = COALESCE($10, approved_by), approved_at = COALESCE($11, approved_at)
      WHERE id = $1 AND status = $2`,
    [
      uploadId,
      expected,
      outcome.status,
      outcome.mode,
      outcome.encoding,
      JSON.stringify(outcome.counts),
      outcome.message,
      times.startedAt,
      times.finishedAt,
      approval?.by ?? null,
      approval?.at ?? null,
    ],
  );
  if (rowCount !== 1) {
    throw new RosterdError(
      'INTERNAL',
      `import ${uploadId} is no longer ${expected}: another process changed it meanwhile, so this attempt was rolled back`,
    );
  }
}
