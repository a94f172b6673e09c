/**
 * A claim's advisory lock (schedule/claim-lock.ts) when some of the keys it tries are already
 * held: by a claim of another replica, or by another application sharing the class. It must take
 * a free key, or, when every key it tried was held, fail with a message the operator can act on,
 * holding nothing and giving its connection back.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLAIM_LOCK_CLASS, ClaimLock, ClaimLockUnavailableError } from '../../src/schedule/claim-lock.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
/** A session of another application, holding keys of the claims' class. */
let other: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  other = new pg.Client({ connectionString: db.url });
  await other.connect();
});

afterAll(async () => {
  await other?.end();
  await db?.drop();
});

/** The claims' locks held by sessions other than `other`. */
async function claimLocksOfOthers(): Promise<number[]> {
  const { rows } = await other.query<{ objid: string }>(
    `SELECT objid::text FROM pg_locks
      WHERE locktype = 'advisory' AND classid = $1 AND granted AND pid <> pg_backend_pid()`,
    [CLAIM_LOCK_CLASS],
  );
  return rows.map((r) => Number(r.objid));
}

it('takes the first free key after keys found held, and lets it go on release', async () => {
  await other.query('SELECT pg_advisory_lock($1, 11), pg_advisory_lock($1, 12)', [CLAIM_LOCK_CLASS]);
  try {
    const keys = [11, 12, 13];
    const lock = await ClaimLock.take(db.pool, () => keys.shift() ?? 99);
    expect(lock.key).toBe(13);
    expect(await claimLocksOfOthers()).toEqual([13]);
    await lock.release();
    expect(await claimLocksOfOthers()).toEqual([]);
  } finally {
    await other.query('SELECT pg_advisory_unlock_all()');
  }
});

it('every key it tries is held: a ClaimLockUnavailableError that says how to find the other user of the class, nothing held, the connection back in the pool', async () => {
  const held = [21, 22, 23, 24, 25, 26, 27, 28];
  for (const key of held) await other.query('SELECT pg_advisory_lock($1, $2)', [CLAIM_LOCK_CLASS, key]);
  try {
    let next = 0;
    const tried: number[] = [];
    const nextKey = () => {
      const key = held[next++ % held.length] ?? 0;
      tried.push(key);
      return key;
    };
    const err = await ClaimLock.take(db.pool, nextKey).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ClaimLockUnavailableError);
    const message = (err as Error).message;
    expect(message).toContain('8 random keys');
    expect(message).toContain(`classid = ${CLAIM_LOCK_CLASS}`);
    expect(message).toContain('The upload stays pending');
    // It tried each key once, and gave up there rather than looping.
    expect(tried).toEqual(held);
    expect(await claimLocksOfOthers()).toEqual([]);
    // The connection went back to the pool, not left checked out.
    expect(db.pool.totalCount - db.pool.idleCount).toBe(0);
  } finally {
    await other.query('SELECT pg_advisory_unlock_all()');
  }
});
