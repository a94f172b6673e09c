/**
 * The liveness of a claim on an upload (PRODUCT.md §5: a crash leaves the upload pending again, to
 * be retried). The claimer holds a session-level advisory lock on a connection of its own for as
 * long as its claim lives. Postgres drops the lock as soon as that connection closes, which the
 * kernel does for a process that dies however it dies (kill -9, the OOM killer, a container
 * stopped), so a process that can take the lock knows the claim's holder is gone, and takes the
 * upload back at its next tick rather than after CLAIM_TTL_SECONDS (claims.ts takeBackLapsedClaims).
 * The expiry stays for a host that vanished without closing its connections: its session, and the
 * lock, linger until Postgres notices the dead peer.
 *
 * The lock has the two-key form. The first key is rosterd's claims' own (no other user of advisory
 * locks, nor the import's tenant lock, meets it); the second is chosen at random among the free
 * ones and stored with the claim (uploads.claim_lock), so a claim taken back by expiry, whose
 * vanished holder may still hold its lock, never stands in the way of the next claim.
 *
 * Sessions must be the process's own: behind a pooler in transaction mode (PgBouncer's
 * pool_mode=transaction) the lock would stay on whichever server connection took it.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { connectWith } from '../store/db.js';

/** First key of every claim's lock: 'rocl'. Other first keys: execute.ts (the tenant's import), migrate.ts (one-key form). */
export const CLAIM_LOCK_CLASS = 0x726f636c;

/** Random second keys tried before giving up: each is found held with a chance of n in 2^32 (n claims running). */
const KEY_TRIES = 8;

/** How long release() waits for the unlock before it closes the connection instead. */
const UNLOCK_WAIT_MS = 5_000;

/** Every random key tried was held: something else takes advisory locks in rosterd's claims' class. */
export class ClaimLockUnavailableError extends Error {
  constructor(tries: number) {
    super(
      `could not take a claim lock: ${tries} random keys of advisory lock class ${CLAIM_LOCK_CLASS} (rosterd's claims) were all held. ` +
        `Another application seems to use this class; find its sessions with "SELECT pid FROM pg_locks WHERE locktype = 'advisory' ` +
        `AND classid = ${CLAIM_LOCK_CLASS}" and move it to other keys. The upload stays pending and is tried again at the next tick.`,
    );
    this.name = 'ClaimLockUnavailableError';
  }
}

/**
 * A claim's lock, held by the session of a connection checked out of the pool for the claim's
 * lifetime. release() must be called once the claim has ended (its outcome committed, or the
 * upload given back): the connection returns to the pool only once the lock is let go, and is
 * closed instead when that cannot be told.
 */
export class ClaimLock {
  /** the second key of the lock (uploads.claim_lock) */
  readonly key: number;
  /** the connection whose session holds the lock: for short statements of the claim (its heartbeat); never released but by release() */
  readonly client: pg.PoolClient;
  private lost = false;
  private released = false;
  private onLostListener: (() => void) | undefined;
  private readonly onEnd = () => {
    this.lost = true;
    this.onLostListener?.();
  };

  private constructor(client: pg.PoolClient, key: number) {
    this.client = client;
    this.key = key;
    client.once('end', this.onEnd);
  }

  /**
   * Takes a free lock of the claims' class on a connection of its own. `nextKey` gives the second
   * keys to try (random ones; a test hands in its own to meet keys it holds).
   */
  static async take(pool: pg.Pool, nextKey: () => number = randomKey): Promise<ClaimLock> {
    // A failed statement took no lock worth keeping: connectWith closes that session and tries another.
    const { client, value: key } = await connectWith(pool, (c) => tryFreeKey(c, nextKey));
    if (key === undefined) {
      client.release();
      throw new ClaimLockUnavailableError(KEY_TRIES);
    }
    return new ClaimLock(client, key);
  }

  /** Told once if the connection holding the lock closes while the claim lives (the claim may then be taken back). */
  onLost(listener: () => void): void {
    this.onLostListener = listener;
    if (this.lost) listener();
  }

  /** Lets go of the lock and gives the connection back. Idempotent; never throws. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.client.removeListener('end', this.onEnd);
    if (this.lost) return this.client.release(true);
    const unlock = this.client
      .query<{ unlocked: boolean }>('SELECT pg_advisory_unlock($1, $2) AS unlocked', [CLAIM_LOCK_CLASS, this.key])
      .then(
        ({ rows }) => rows[0]?.unlocked === true,
        () => false,
      );
    // A connection that no longer answers (a network cut) must not hold up the scheduler's tick.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), UNLOCK_WAIT_MS);
    });
    const unlocked = await Promise.race([unlock, late]);
    clearTimeout(timer);
    // Closing the session is the sure way to leave nothing held when the unlock was not seen to work.
    this.client.release(unlocked ? undefined : true);
  }
}

function randomKey(): number {
  return randomBytes(4).readInt32BE(0);
}

async function tryFreeKey(client: pg.PoolClient, nextKey: () => number): Promise<number | undefined> {
  for (let i = 0; i < KEY_TRIES; i++) {
    const key = nextKey();
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [CLAIM_LOCK_CLASS, key]);
    if (rows[0]?.locked === true) return key;
  }
  return undefined;
}

/**
 * Inside a transaction: the tokens of the claims whose lock nobody holds, their holders gone. Each
 * lock found free is the caller's transaction's until it ends.
 */
export async function locksFree(client: pg.PoolClient, claims: ReadonlyArray<{ token: string; key: number }>): Promise<string[]> {
  if (claims.length === 0) return [];
  const { rows } = await client.query<{ token: string }>(
    `SELECT c.token FROM unnest($1::uuid[], $2::integer[]) AS c(token, key) WHERE pg_try_advisory_xact_lock($3, c.key)`,
    [claims.map((c) => c.token), claims.map((c) => c.key), CLAIM_LOCK_CLASS],
  );
  return rows.map((r) => r.token);
}
