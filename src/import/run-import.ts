/**
 * Importing one upload (PRODUCT.md §3, §4), approving or rejecting a held one. The changes and the
 * outcome (status, counts, issues, and whatever `onOutcome` writes, e.g. the report outbox) are
 * committed in one transaction. A file the reader rejects is recorded as failed with nothing
 * applied. Anything else (a lost connection, a crash) throws with nothing committed, so the caller
 * can retry.
 */
import type { PoolClient } from 'pg';
import { RosterdError } from '../errors.js';
import { withTransaction } from '../store/db.js';
import type { ImportHook } from './engine-types.js';
import {
  executeImport,
  loadTarget,
  lockTenantRoster,
  recordOutcome,
  storeRejection,
  type ImportContext,
  type Outcome,
  type UploadTarget,
} from './execute.js';
import { createPasswordHasher, type PasswordHasher } from './hash-pool.js';
import { interruptible, stopBetweenSteps, throwIfInterrupted } from './interrupt.js';
import { getImportRecord, zonedIso, type ImportRecord } from './records.js';
import { verifyStoredCopy } from './stored-copy.js';
import { FileRejectedError } from './types.js';
import { FIX_AND_UPLOAD } from './unusable-file.js';

export type { ImportContext } from './execute.js';

export type OnOutcome = (client: PoolClient, record: ImportRecord) => Promise<void>;

export interface RunImportOptions {
  /** called inside the outcome's transaction (the report outbox is written there) */
  onOutcome?: OnOutcome;
  /** recorded as the approver when the import applies a held file (see approveImport) */
  approvedBy?: string;
  /** internal: fault injection for tests */
  at?: ImportHook;
  /**
   * Aborting it interrupts the import (an operator's Ctrl-C): the statement in flight is cancelled,
   * hashing stops, and the import rolls back whole and throws IMPORT_INTERRUPTED.
   */
  signal?: AbortSignal;
  /** told, once the outcome is committed, of the held users.csv or groups.csv uploads this import superseded */
  onSupersededHeld?: (held: SupersededHeld[]) => void;
}

/** A held users.csv (or groups.csv) that a newer whole one replaced: it can no longer be approved. */
export interface SupersededHeld {
  id: string;
  fileName: string;
  receivedAt: Date;
}

/** Imports an upload that the caller has claimed (status `running`). */
export async function runImport(ctx: ImportContext, uploadId: string, opts: RunImportOptions = {}): Promise<ImportRecord> {
  const startedAt = ctx.clock.now();
  const target = await loadTarget(ctx.pool, ctx.config.DATA_DIR, uploadId);
  if (target.status !== 'running') {
    throw new RosterdError('INTERNAL', `import ${uploadId} is ${target.status}, not running; claim it before importing`);
  }
  const log = ctx.logger.child({ uploadId, tenant: target.tenant, file: target.fileName });
  log.info({ event: 'import.started' }, 'import started');
  const { signal } = opts;
  throwIfInterrupted(signal);
  // Between the engine's steps, an interrupted import goes no further.
  const at = stopBetweenSteps(signal, opts.at);
  return withHasher(ctx, signal, async (hasher) => {
    try {
      await verifyStoredCopy(target);
      throwIfInterrupted(signal);
      let superseded: SupersededHeld[] = [];
      const record = await withTransaction(ctx.pool, (client) =>
        interruptible(ctx.pool, client, signal, async () => {
          const outcome = await executeImport(client, ctx.config, ctx.clock, target, {
            dryRun: false,
            overrideThreshold: false,
            hasher,
            at,
          });
          superseded = await supersedeHeld(client, target, outcome, ctx.clock.now());
          return finish(client, uploadId, 'running', outcome, startedAt, ctx, opts);
        }),
      );
      // The outcome is logged by the caller (the scheduler's decision line), once.
      if (superseded.length > 0) opts.onSupersededHeld?.(superseded);
      return record;
    } catch (err) {
      if (!(err instanceof FileRejectedError)) throw err;
      throwIfInterrupted(signal);
      return withTransaction(ctx.pool, (client) => recordRejectedFile(client, uploadId, 'running', err, startedAt, ctx, opts));
    }
  });
}

/**
 * Applies a held import, computed against the roster as it stands now, whatever the number of
 * deactivations (the approval overrides the threshold for this import only).
 */
export async function approveImport(
  ctx: ImportContext,
  uploadId: string,
  opts: { approvedBy: string; onOutcome?: OnOutcome; at?: ImportHook; signal?: AbortSignal },
): Promise<ImportRecord> {
  const startedAt = ctx.clock.now();
  const { signal } = opts;
  throwIfInterrupted(signal);
  // As in runImport: an interrupted approval goes no further than the step it is in, and rolls back.
  const at = stopBetweenSteps(signal, opts.at);
  return withHasher(ctx, signal, (hasher) =>
    withTransaction(ctx.pool, (client) =>
      interruptible(ctx.pool, client, signal, async () => {
        // The tenant's roster lock first, then the held row, in the order an import of a newer
        // users.csv takes them (supersedeHeld, inside the import): the other way round, the two
        // could deadlock. An import of the tenant running meanwhile is waited for.
        await lockTenantRoster(client, (await loadTarget(client, ctx.config.DATA_DIR, uploadId)).tenantId);
        const target = await loadTarget(client, ctx.config.DATA_DIR, uploadId, true);
        if (target.status !== 'held') throw notHeld(uploadId, target.status, target.fileName);
        await refuseIfNewerPending(client, target);
        try {
          await verifyStoredCopy(target);
        } catch (err) {
          if (!(err instanceof FileRejectedError)) throw err;
          throw new RosterdError(
            'IMPORT_APPROVAL_STALE',
            `import ${uploadId} cannot be approved: ${err.message.replace(/ Nothing was changed\..*$/, '')} ` +
              `Nothing was changed. Ask the district to upload the file again, which replaces this one when it is imported; ` +
              `reject this one ("rosterd import reject ${uploadId}") only if none is coming.`,
          );
        }
        throwIfInterrupted(signal);
        // The held report's issues are replaced by the ones computed now.
        await client.query('DELETE FROM import_issues WHERE upload_id = $1', [uploadId]);
        const outcome = await executeImport(client, ctx.config, ctx.clock, target, {
          dryRun: false,
          overrideThreshold: true,
          hasher,
          at,
        }).catch((err: unknown) => {
          // Read against the roster and schools as they stand now, the file may no longer be
          // usable at all (unusable-file.ts): the approval changes nothing, the hold stays.
          if (!(err instanceof FileRejectedError)) throw err;
          throw new RosterdError(
            'IMPORT_APPROVAL_STALE',
            `import ${uploadId} cannot be approved: ${err.message.replace(` ${FIX_AND_UPLOAD}`, '')} ` +
              `Ask the district to upload a corrected ${target.fileName}, which replaces this one when it is imported; ` +
              `reject this one ("rosterd import reject ${uploadId}") only if none is coming.`,
          );
        });
        throwIfInterrupted(signal);
        ctx.logger.info({ importId: uploadId, approvedBy: opts.approvedBy }, 'held import approved');
        return finish(client, uploadId, 'held', outcome, startedAt, ctx, opts, { by: opts.approvedBy, at: ctx.clock.now() });
      }),
    ),
  );
}

/** Discards a held import: nothing is applied, the record says who rejected it and when. */
export async function rejectImport(
  ctx: ImportContext,
  uploadId: string,
  opts: { by: string; onOutcome?: OnOutcome },
): Promise<ImportRecord> {
  return withTransaction(ctx.pool, async (client) => {
    const target = await loadTarget(client, ctx.config.DATA_DIR, uploadId, true);
    if (target.status !== 'held') throw notHeld(uploadId, target.status, target.fileName);
    const now = ctx.clock.now();
    await client.query(`UPDATE uploads SET status = 'rejected', rejected_by = $2, rejected_at = $3, status_changed_at = $3 WHERE id = $1`, [
      uploadId,
      opts.by,
      now,
    ]);
    ctx.logger.info({ importId: uploadId, rejectedBy: opts.by }, 'held import rejected');
    const record = await mustGet(client, uploadId);
    await opts.onOutcome?.(client, record);
    return record;
  });
}

/**
 * A newer whole roster replaces the tenant's held users.csv when it is imported: approving a held
 * one after it would apply an older roster over the newer one (deactivating whoever it added).
 * Decided here, in the transaction that records the import's outcome, because only a full sync is
 * a roster, and which one a file is is known once it is read (the claim, src/schedule/claims.ts,
 * comes before): a delta (an action column) changes the users it lists and leaves a held file to
 * its decision; a file that failed replaces nothing. A groups.csv is always the whole set of
 * memberships: a newer one imported (or held in its turn) replaces a held one. Rolled back with
 * the import, so a crash or a lost claim leaves the held one held.
 */
async function supersedeHeld(client: PoolClient, target: UploadTarget, outcome: Outcome, now: Date): Promise<SupersededHeld[]> {
  if (!['users.csv', 'groups.csv'].includes(target.fileName) || outcome.mode !== 'full') return [];
  const { rows } = await client.query<SupersededHeld>(
    `UPDATE uploads h SET status = 'superseded', superseded_by = n.id, status_changed_at = $2
       FROM uploads n
      WHERE n.id = $1 AND h.tenant_id = n.tenant_id AND h.file_name = n.file_name AND h.status = 'held' AND h.arrival < n.arrival
      RETURNING h.id, h.file_name AS "fileName", h.received_at AS "receivedAt"`,
    [target.uploadId, now],
  );
  return rows;
}

/**
 * A newer users.csv of the tenant waiting to be imported replaces a held one when it is imported,
 * if it is a whole roster; approving the held one first would apply the roster the district has
 * already corrected, deactivations included. Whether it is, is known once it is read, so the
 * approval is refused until it has been imported, whichever it is.
 */
async function refuseIfNewerPending(client: PoolClient, target: UploadTarget): Promise<void> {
  const groups = target.fileName === 'groups.csv';
  if (target.fileName !== 'users.csv' && !groups) return;
  const { rows } = await client.query<{ id: string; received_at: Date; timezone: string }>(
    `SELECT n.id, n.received_at, t.timezone FROM uploads n JOIN uploads h ON h.id = $1 JOIN tenants t ON t.id = n.tenant_id
      WHERE n.tenant_id = h.tenant_id AND n.file_name = h.file_name AND n.status IN ('pending', 'running')
        AND n.arrival > h.arrival
      ORDER BY n.arrival DESC LIMIT 1`,
    [target.uploadId],
  );
  const newer = rows[0];
  if (newer === undefined) return;
  const received = zonedIso(newer.received_at, newer.timezone) ?? '';
  const run = `"rosterd import run --tenant ${target.tenant} --now" imports the newer one now`;
  throw new RosterdError(
    'IMPORT_APPROVAL_STALE',
    groups
      ? `import ${target.uploadId} cannot be approved: a newer groups.csv of ${target.tenant} (import ${newer.id}, received ` +
          `${received}) is waiting to be imported, and replaces it at the next run. Nothing was changed. ${run}.`
      : `import ${target.uploadId} cannot be approved: a newer users.csv of ${target.tenant} (import ${newer.id}, received ` +
          `${received}) is waiting to be imported, and replaces it at the next run if it is a whole roster. ` +
          `Nothing was changed. ${run}; if it has an action column (a delta), this one stays held, to approve or reject after it.`,
  );
}

function notHeld(uploadId: string, status: string, file: string): RosterdError {
  if (status === 'superseded') {
    return new RosterdError(
      'IMPORT_NOT_HELD',
      `import ${uploadId} is superseded, not held: a newer ${file} of the tenant was imported after it${file === 'users.csv' ? ' (a whole roster)' : ''}, so it can no longer be approved ("rosterd import show ${uploadId}" names the newer one)`,
    );
  }
  return new RosterdError(
    'IMPORT_NOT_HELD',
    `import ${uploadId} is ${status}, not held: only a held import can be approved or rejected ("rosterd import show ${uploadId}" shows it)`,
  );
}

async function finish(
  client: PoolClient,
  uploadId: string,
  expected: 'running' | 'held',
  outcome: Outcome,
  startedAt: Date,
  ctx: ImportContext,
  opts: { onOutcome?: OnOutcome; approvedBy?: string },
  approval?: { by: string; at: Date },
): Promise<ImportRecord> {
  const finishedAt = ctx.clock.now();
  const approvedBy = approval ?? (opts.approvedBy ? { by: opts.approvedBy, at: finishedAt } : undefined);
  await recordOutcome(client, uploadId, expected, outcome, { startedAt, finishedAt }, approvedBy);
  const record = await mustGet(client, uploadId);
  await opts.onOutcome?.(client, record);
  return record;
}

async function recordRejectedFile(
  client: PoolClient,
  uploadId: string,
  expected: 'running' | 'held',
  err: FileRejectedError,
  startedAt: Date,
  ctx: ImportContext,
  opts: { onOutcome?: OnOutcome },
): Promise<ImportRecord> {
  // Earlier attempts' issues (there are none after a rollback, but a retried claim may differ).
  await client.query('DELETE FROM import_issues WHERE upload_id = $1', [uploadId]);
  const outcome = await storeRejection(client, uploadId, err);
  return finish(client, uploadId, expected, outcome, startedAt, ctx, opts);
}

async function mustGet(client: PoolClient, uploadId: string): Promise<ImportRecord> {
  const record = await getImportRecord(client, uploadId);
  if (!record) throw new RosterdError('IMPORT_NOT_FOUND', `import ${uploadId} disappeared while it was being recorded`);
  return record;
}

/**
 * The context's hasher, or one made for this import (its workers start only if a password changed),
 * closed when `signal` aborts: the hashes waited for fail, so the import stops hashing at once.
 */
async function withHasher<T>(ctx: ImportContext, signal: AbortSignal | undefined, fn: (hasher: PasswordHasher) => Promise<T>): Promise<T> {
  if (ctx.hasher) return fn(ctx.hasher);
  const hasher = createPasswordHasher({ workers: ctx.config.HASH_WORKERS });
  const close = () => void hasher.close();
  signal?.addEventListener('abort', close, { once: true });
  try {
    return await fn(hasher);
  } finally {
    signal?.removeEventListener('abort', close);
    await hasher.close();
  }
}
