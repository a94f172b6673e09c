import pg from 'pg';
import type { Logger } from '../types.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that can run a query: the pool, or a client inside a transaction. */
export type Queryable = pg.Pool | pg.PoolClient;

// bigint (int8) columns come back as strings by default; ours (ids, counts, bytes) fit in a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** Idle time before the first keepalive probe on a database connection. */
const KEEPALIVE_IDLE_MS = 30_000;

export interface PoolOptions {
  /**
   * lock_timeout of every connection, in ms (0 or unset: Postgres's default, which waits for ever).
   * Set by a SET on connect, not as a startup parameter, which PgBouncer refuses.
   */
  lockTimeoutMs?: number;
}

export function createPool(connectionString: string, logger: Logger, max = 10, options: PoolOptions = {}): pg.Pool {
  // A Postgres that silently drops packets must not hang a connect for minutes. TCP keepalive: a
  // connection whose server vanished without a word (a failover, a NAT or firewall that forgot it)
  // would otherwise wait for a query's answer forever, an import with it, and the replica with that.
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: 'rosterd',
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    // Before the pool hands the connection out; a connection it fails on is not handed out.
    ...(options.lockTimeoutMs
      ? {
          onConnect: async (client: pg.ClientBase) => {
            await client.query("SELECT set_config('lock_timeout', $1, false)", [`${options.lockTimeoutMs}ms`]);
          },
        }
      : {}),
  });
  // An idle client whose connection drops emits 'error' on the pool; unhandled, that would crash
  // the daemon. The next query gets a fresh connection.
  pool.on('error', (err) => logger.warn({ error: err.message, code: (err as { code?: string }).code }, 'idle database connection lost'));
  // A checked-out client whose connection dies emits 'error' on the client itself, which the pool
  // does not listen to; unhandled, it would crash the daemon. The query in flight rejects anyway.
  pool.on('connect', (client) =>
    client.on('error', (err) => logger.warn({ error: err.message, code: (err as { code?: string }).code }, 'database connection lost')),
  );
  return pool;
}

/** How long endPool waits for connections to close before giving up on them. */
const END_POOL_WAIT_MS = 5_000;

/**
 * Ends the pool and resolves once its connections are closed. pool.end() resolves as soon as it
 * has asked them to close, before Postgres has seen them go; the embedded Postgres, stopped by the
 * last command out right after, then cut them off, and a command that had succeeded printed
 * "database connection lost" twice. A connection still checked out is not waited for.
 */
export async function endPool(pool: pg.Pool): Promise<void> {
  const closing = pool.idleCount;
  const closed = new Promise<void>((resolve) => {
    if (closing === 0) return resolve();
    let removed = 0;
    // pg-pool emits 'remove' once a client it ended has closed its connection.
    pool.on('remove', () => {
      if (++removed >= closing) resolve();
    });
    setTimeout(resolve, END_POOL_WAIT_MS).unref();
  });
  await pool.end();
  await closed;
}

export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/**
 * Within a transaction, lifts lock_timeout (PoolOptions) for the rest of it: for the waits rosterd
 * means, which may last as long as another process's import or migrations.
 */
export async function waitForLocks(client: pg.PoolClient): Promise<void> {
  await client.query("SELECT set_config('lock_timeout', '0', true)");
}

/** Runs fn in one transaction: committed if it returns, rolled back if it throws. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await begin(pool);
  let broken = false;
  try {
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true; // the connection itself is gone; do not return it to the pool
    }
    throw err;
  } finally {
    client.release(broken);
  }
}

/** Pooled clients tried before the first statement's error is the caller's (see connectWith). */
const CONNECT_TRIES = 5;

/**
 * A pooled client on which `first` (its first statement) worked, and what it returned. When
 * Postgres drops every connection (a failover, a restart), the pool learns of its idle clients'
 * deaths only as their sockets are read, and the first work after a failure (recording it) may
 * well be handed one of them: about one time in four here. A failed first statement did nothing
 * worth keeping, so the client is closed and another is tried, once the event loop has had a turn
 * to let the pool drop the dead ones.
 */
export async function connectWith<T>(
  pool: pg.Pool,
  first: (client: pg.PoolClient) => Promise<T>,
): Promise<{ client: pg.PoolClient; value: T }> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      return { client, value: await first(client) };
    } catch (err) {
      client.release(true);
      if (attempt >= CONNECT_TRIES) throw err;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** A client with a transaction begun (see connectWith). */
async function begin(pool: pg.Pool): Promise<pg.PoolClient> {
  return (await connectWith(pool, (client) => client.query('BEGIN'))).client;
}
