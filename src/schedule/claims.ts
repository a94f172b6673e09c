/**
 * Claims on uploads (PRODUCT.md §5, exactly once with several replicas).
 *
 * Deciding what a tenant imports next happens in a short transaction that holds the tenant's row
 * (FOR NO KEY UPDATE SKIP LOCKED: one process decides per tenant at a time; SFTP receipts, which
 * only take a key-share lock through their foreign key, are not blocked). In it, older pending
 * users.csv are superseded and one upload is claimed: status 'running', a claim token and an
 * expiry. A tenant with an upload running claims nothing more, so users.csv is always applied
 * before a groups.csv pushed with it.
 *
 * A claim lives while its claimer does: the claimer holds the claim's lock (claim-lock.ts) from
 * before the claim commits until its end has committed. A claim whose lock is free has lost its
 * holder (killed, its connection closed), and is taken back at the next tick; one whose lock is
 * still held is taken back only once it has expired (a host gone without closing its connections,
 * or a claimer stalled past the expiry), as is a claim made without a lock (a rosterd before
 * migration 010).
 *
 * The importer checks, inside the transaction that records the outcome, that the claim token is
 * still its own (fenceClaim); a process whose claim was taken back after it stalled (or lost its
 * lock's connection) therefore rolls back instead of applying the upload a second time.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { withTransaction, type Queryable } from '../store/db.js';
import { ClaimLock, locksFree } from './claim-lock.js';

export interface TenantRef {
  id: number;
  subdomain: string;
  timezone: string;
  windowStart: string;
  windowEnd: string;
}

export interface PendingUpload {
  id: string;
  fileName: string;
  receivedAt: Date;
}

export interface Claim {
  uploadId: string;
  fileName: string;
  receivedAt: Date;
  token: string;
  expiresAt: Date;
  /** held until the claim has ended; the caller releases it then (ClaimLock.release) */
  lock: ClaimLock;
}

/** Why a tenant's turn ended without a claim. */
export type NoClaim =
  | { kind: 'busy' } // another process is deciding for this tenant, or one of its uploads is running
  | { kind: 'nothing' }
  | { kind: 'closed'; pending: PendingUpload[] } // the caller's gate said no
  | { kind: 'on_hold'; pending: PendingUpload[]; heldId: string } // groups.csv waits for a held users.csv
  | { kind: 'settling'; pending: PendingUpload[]; until: Date };

export type ClaimStep = { kind: 'claimed'; claim: Claim; superseded: SupersededUpload[] } | NoClaim;

/** A pending upload a newer one of the same name replaced before either was imported. */
export interface SupersededUpload extends PendingUpload {
  /** the newer upload that replaced it */
  by: string;
}

export interface ClaimRequest {
  tenantId: number;
  now: Date;
  /** who claims (host:pid), shown to operators */
  claimedBy: string;
  /** the operator whose `import run --now` claims it, recorded with the import; the schedule's claims have none */
  requestedBy?: string;
  settleMs: number;
  ttlMs: number;
  /** decides, from the pending uploads, whether the tenant may import now (the window) */
  gate: (pending: PendingUpload[]) => boolean;
}

export class ClaimLostError extends Error {
  constructor(uploadId: string) {
    super(`the claim on upload ${uploadId} was taken back by another process; this attempt is rolled back`);
    this.name = 'ClaimLostError';
  }
}

/**
 * Decides what the tenant imports next, and claims it. A claimed step's lock is the caller's to
 * release once the claim has ended.
 */
export async function claimNext(pool: pg.Pool, req: ClaimRequest): Promise<ClaimStep> {
  // Taken before the claim commits, so that no committed claim is ever without its lock held.
  const taken: { lock?: ClaimLock } = {};
  try {
    return await decideAndClaim(pool, req, taken);
  } catch (err) {
    await taken.lock?.release();
    throw err;
  }
}

async function decideAndClaim(pool: pg.Pool, req: ClaimRequest, taken: { lock?: ClaimLock }): Promise<ClaimStep> {
  return withTransaction(pool, async (client): Promise<ClaimStep> => {
    const locked = await client.query(`SELECT 1 FROM tenants WHERE id = $1 AND status = 'active' FOR NO KEY UPDATE SKIP LOCKED`, [
      req.tenantId,
    ]);
    if (locked.rowCount === 0) return { kind: 'busy' };
    const { rows: pending } = await client.query<PendingUpload>(
      `SELECT id, file_name AS "fileName", received_at AS "receivedAt" FROM uploads
        WHERE tenant_id = $1 AND status = 'pending' ORDER BY arrival`,
      [req.tenantId],
    );
    if (pending.length === 0) return { kind: 'nothing' };
    if (!req.gate(pending)) return { kind: 'closed', pending };
    const running = await client.query(`SELECT 1 FROM uploads WHERE tenant_id = $1 AND status = 'running' LIMIT 1`, [req.tenantId]);
    if ((running.rowCount ?? 0) > 0) return { kind: 'busy' };

    // Settled: nothing has arrived for settleMs, so a users.csv and groups.csv pushed together are both here.
    const newest = Math.max(...pending.map((p) => p.receivedAt.getTime()));
    if (req.now.getTime() - newest < req.settleMs) return { kind: 'settling', pending, until: new Date(newest + req.settleMs) };

    // Of each file, the newest pending one is imported and the older ones superseded: a users.csv
    // is the whole roster, a groups.csv the whole set of memberships. Newest is last in the
    // database's arrival order, not by received_at, which each replica takes from its own clock.
    const superseded: SupersededUpload[] = [];
    const newestOf = async (fileName: string): Promise<PendingUpload | undefined> => {
      const same = pending.filter((p) => p.fileName === fileName);
      const kept = same[same.length - 1];
      const older = same.slice(0, -1);
      if (kept && older.length > 0) {
        await client.query(
          `UPDATE uploads SET status = 'superseded', superseded_by = $2, status_changed_at = $3
            WHERE id = ANY($1::uuid[]) AND status = 'pending'`,
          [older.map((o) => o.id), kept.id, req.now],
        );
        superseded.push(...older.map((o) => ({ ...o, by: kept.id })));
      }
      return kept;
    };
    const keep = await newestOf('users.csv');
    const groups = await newestOf('groups.csv');
    // A held users.csv is not replaced here: only a whole roster replaces it, not a delta (an
    // action column), and which one this is is known once the file is read. The import decides
    // it in its own transaction (src/import/run-import.ts supersedeHeld).
    const next = keep ?? groups ?? pending[0];
    if (!next) return { kind: 'nothing' };
    if (next.fileName !== 'users.csv') {
      // groups.csv names the users of the tenant's roster; while a users.csv is held, the roster
      // it was pushed with is undecided, so it waits for the approval or the rejection.
      const held = await client.query<{ id: string }>(
        `SELECT id FROM uploads WHERE tenant_id = $1 AND status = 'held' AND file_name = 'users.csv' ORDER BY arrival DESC LIMIT 1`,
        [req.tenantId],
      );
      const heldId = held.rows[0]?.id;
      if (heldId !== undefined) return { kind: 'on_hold', pending, heldId };
    }
    const token = randomUUID();
    const expiresAt = new Date(req.now.getTime() + req.ttlMs);
    const lock = (taken.lock = await ClaimLock.take(pool));
    await client.query(
      `UPDATE uploads SET status = 'running', status_changed_at = $2, claimed_by = $3, claim_token = $4, claimed_at = $2,
              claim_expires_at = $5, claim_lock = $6, requested_by = $7
        WHERE id = $1 AND status = 'pending'`,
      [next.id, req.now, req.claimedBy, token, expiresAt, lock.key, req.requestedBy ?? null],
    );
    return {
      kind: 'claimed',
      claim: { uploadId: next.id, fileName: next.fileName, receivedAt: next.receivedAt, token, expiresAt, lock },
      superseded,
    };
  });
}

/**
 * Inside the outcome's transaction: lock the upload row, make sure the claim is still ours, and
 * release it (the claimer and time stay, as the record of who imported it). Throws ClaimLostError.
 */
export async function fenceClaim(client: pg.PoolClient, uploadId: string, token: string): Promise<void> {
  const { rows } = await client.query<{ claim_token: string | null }>('SELECT claim_token FROM uploads WHERE id = $1 FOR UPDATE', [
    uploadId,
  ]);
  if (rows[0]?.claim_token !== token) throw new ClaimLostError(uploadId);
  await client.query(
    'UPDATE uploads SET claim_token = NULL, claim_expires_at = NULL, claim_lock = NULL, last_attempt_error = NULL WHERE id = $1',
    [uploadId],
  );
}

/** Keep a live claim from lapsing during a long import. False when the claim is no longer ours. */
export async function extendClaim(db: Queryable, uploadId: string, token: string, expiresAt: Date): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE uploads SET claim_expires_at = $3 WHERE id = $1 AND claim_token = $2 AND status = 'running'`,
    [uploadId, token, expiresAt],
  );
  return (rowCount ?? 0) > 0;
}

export interface EndedAttempt {
  uploadId: string;
  tenantId: number;
  status: 'pending' | 'failed';
  attempts: number;
}

type OnFailed = (client: pg.PoolClient, ended: EndedAttempt) => Promise<void>;

/**
 * An attempt ended without an outcome: count it, and put the upload back to pending, or mark it
 * failed after maxAttempts. Runs `onFailed` for a failed upload in the same transaction (the report).
 * Empty when the claim `token` is no longer on the upload (taken back meanwhile).
 */
export async function endAttempts(
  pool: pg.Pool,
  args: { token: string; uploadId: string; now: Date; maxAttempts: number; error: string },
  onFailed: OnFailed,
): Promise<EndedAttempt[]> {
  return withTransaction(pool, async (client) => {
    const ended = await endWhere(
      client,
      `SELECT id FROM uploads WHERE id = $5 AND claim_token = $6 FOR UPDATE`,
      [args.uploadId, args.token],
      args,
    );
    for (const e of ended) if (e.status === 'failed') await onFailed(client, e);
    return ended;
  });
}

/** Why a claim was taken back: it expired, or its lock was free (its holder gone). */
export type Lapse = 'expired' | 'holder_gone';

export interface TakenBack extends EndedAttempt {
  lapsed: Lapse;
  claimedBy: string | null;
}

/** What `import show` (and the failed report) says of an attempt whose claim was taken back. */
export const LAPSE_ERRORS: Readonly<Record<Lapse, string>> = {
  expired: 'the importing process stopped before it finished (its claim expired)',
  holder_gone: 'the importing process stopped before it finished (its connection to the database closed)',
};

/**
 * Takes back the claims whose importer is gone, each counted as an attempt as endAttempts does:
 * those that expired before `now`, and those whose lock nobody holds any more (claim-lock.ts).
 * A claim being recorded (its row locked) is left to its importer.
 */
export async function takeBackLapsedClaims(
  pool: pg.Pool,
  args: { now: Date; maxAttempts: number },
  onFailed: OnFailed,
): Promise<TakenBack[]> {
  return withTransaction(pool, async (client) => {
    const { rows: live } = await client.query<{ token: string; key: number }>(
      `SELECT claim_token AS token, claim_lock AS key FROM uploads
        WHERE status = 'running' AND claim_expires_at >= $1 AND claim_token IS NOT NULL AND claim_lock IS NOT NULL`,
      [args.now],
    );
    // Transaction-level probes: a lock found free is let go when this transaction ends, by
    // Postgres, so the pooled session that probed never keeps one.
    const gone = await locksFree(client, live);
    const expired = await endWhere(
      client,
      `SELECT id FROM uploads WHERE status = 'running' AND claim_expires_at < $2 FOR UPDATE SKIP LOCKED`,
      [],
      { ...args, error: LAPSE_ERRORS.expired },
    );
    const holderGone =
      gone.length === 0
        ? []
        : await endWhere(
            client,
            `SELECT id FROM uploads WHERE status = 'running' AND claim_token = ANY($5::uuid[]) FOR UPDATE SKIP LOCKED`,
            [gone],
            { ...args, error: LAPSE_ERRORS.holder_gone },
          );
    const taken = [
      ...expired.map((e) => ({ ...e, lapsed: 'expired' as const })),
      ...holderGone.map((e) => ({ ...e, lapsed: 'holder_gone' as const })),
    ];
    for (const e of taken) if (e.status === 'failed') await onFailed(client, e);
    return taken;
  });
}

/** Ends the attempts of the uploads `target` selects ($5 on: `params`); the counting both kinds share. */
async function endWhere(
  client: pg.PoolClient,
  target: string,
  params: unknown[],
  args: { now: Date; maxAttempts: number; error: string },
): Promise<Array<EndedAttempt & { claimedBy: string | null }>> {
  const { rows } = await client.query<{
    id: string;
    tenant_id: number;
    status: 'pending' | 'failed';
    attempts: number;
    claimed_by: string | null;
  }>(
    `UPDATE uploads SET
       attempts = attempts + 1,
       status = CASE WHEN attempts + 1 >= $1 THEN 'failed' ELSE 'pending' END,
       status_changed_at = $2,
       last_attempt_error = $3,
       message = CASE WHEN attempts + 1 >= $1 THEN $4 ELSE message END,
       finished_at = CASE WHEN attempts + 1 >= $1 THEN $2 ELSE finished_at END,
       claim_token = NULL,
       claim_expires_at = NULL,
       claim_lock = NULL,
       -- pending again: whoever claims it next imports it (an operator's --now, or the schedule)
       requested_by = CASE WHEN attempts + 1 >= $1 THEN requested_by END
     WHERE id IN (${target})
     RETURNING id, tenant_id, status, attempts, claimed_by`,
    [
      args.maxAttempts,
      args.now,
      args.error.slice(0, 2000),
      `rosterd could not finish importing this file after ${args.maxAttempts} attempts (last: ${args.error.slice(0, 500)}). ` +
        'Nothing was changed. Upload the file again, or ask your rosterd operator to look at the logs.',
      ...params,
    ],
  );
  return rows.map((r) => ({ uploadId: r.id, tenantId: r.tenant_id, status: r.status, attempts: r.attempts, claimedBy: r.claimed_by }));
}

/**
 * Shutdown ran out of time, or an operator interrupted `import run`: give these claims back
 * (pending again, not counted as an attempt; `why` is what `import show` says of it). An import
 * still running on such a claim can no longer record its outcome (its upload is not 'running'
 * under its token any more), so it rolls back whole.
 */
export async function releaseClaims(
  pool: pg.Pool,
  tokens: readonly string[],
  now: Date,
  why = 'interrupted by a shutdown; imported on a later tick',
): Promise<string[]> {
  if (tokens.length === 0) return [];
  return withTransaction(pool, async (client) => {
    // The import may hold the row while it commits; then it is about to finish anyway.
    await client.query(`SET LOCAL lock_timeout = '2s'`);
    const { rows } = await client.query<{ id: string }>(
      `UPDATE uploads SET status = 'pending', status_changed_at = $2, claim_token = NULL, claim_expires_at = NULL, claim_lock = NULL,
              last_attempt_error = $3, requested_by = NULL
        WHERE claim_token = ANY($1::uuid[]) AND status = 'running'
        RETURNING id`,
      [tokens, now, why],
    );
    return rows.map((r) => r.id);
  });
}

/** An upload being imported: who holds its claim, and until when unless renewed. */
export interface RunningClaim {
  uploadId: string;
  fileName: string;
  claimedBy: string | null;
  claimedAt: Date | null;
  expiresAt: Date | null;
}

/**
 * The tenant's uploads being imported right now, so that an operator whose `import run` claimed
 * nothing learns that an import is running, by whom, and until when its claim lasts (a process
 * killed outright has its claim taken back at the next run; one on a host that vanished keeps it
 * until then).
 */
export async function runningClaims(db: pg.Pool | pg.PoolClient, tenantId: number): Promise<RunningClaim[]> {
  const { rows } = await db.query<RunningClaim>(
    `SELECT id AS "uploadId", file_name AS "fileName", claimed_by AS "claimedBy", claimed_at AS "claimedAt",
            claim_expires_at AS "expiresAt"
       FROM uploads WHERE tenant_id = $1 AND status = 'running' ORDER BY claimed_at, id`,
    [tenantId],
  );
  return rows;
}
