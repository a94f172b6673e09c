/**
 * The pool after Postgres dropped every connection (a failover, a restart): the first transaction
 * that follows must not be handed an idle client whose connection is gone. It is the one that
 * records a cut import as a failed attempt (schedule/process.ts); failing there left the upload
 * claimed until its claim expired (CLAIM_TTL_SECONDS) instead of retried on the next tick.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/log/logger.js';
import { openDatabase } from '../../src/store/connect.js';
import { createPool, withTransaction } from '../../src/store/db.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

it('database connections have TCP keepalive on, so a server that vanished without a word is noticed, not waited for forever', async (ctx) => {
  const pool = createPool(db.url, createLogger('silent'), 1);
  try {
    // The client's own port, as the server sees it; then its socket in the kernel's table.
    const { rows } = await pool.query<{ port: number | null }>('SELECT inet_client_port() AS port');
    const port = rows[0]?.port;
    // A DATABASE_URL through a Unix socket has no TCP connection to look at (nor to lose).
    if (port === null || port === undefined) return ctx.skip('the test database is reached through a Unix socket, not TCP');
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    const sockets = ['/proc/net/tcp', '/proc/net/tcp6']
      .flatMap((table) => readFileSync(table, 'utf8').split('\n').slice(1))
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f[1]?.endsWith(`:${hex}`) && f[3] === '01'); // local address, ESTABLISHED
    expect(sockets.length).toBe(1);
    // timer_active (before the colon in the "tr:tm->when" field): 2 is the keepalive timer.
    expect(sockets[0]?.[5]?.split(':')[0]).toBe('02');
  } finally {
    await pool.end();
  }
});

it('a transaction right after every connection was terminated gets a live connection', async () => {
  // Without the retry in begin() about one round in four fails here: twenty rounds all passing
  // by luck is below one in a hundred.
  for (let round = 0; round < 20; round++) {
    const pool = createPool(db.url, createLogger('silent'), 4);
    try {
      // Three connections, idle in the pool; one of them then busy with a query when all are cut.
      const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
      const pids = await Promise.all(
        clients.map(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid),
      );
      for (const c of clients) c.release();
      // As the scheduler does: the query in flight fails, and the failure is recorded at once.
      const recorded = pool.query('SELECT pg_sleep(10)').then(
        () => 'the busy query was not cut',
        () => withTransaction(pool, async (client) => (await client.query<{ ok: number }>('SELECT 1 AS ok')).rows[0]?.ok),
      );
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      try {
        await admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
      } finally {
        await admin.end();
      }
      expect(await recorded, `round ${round}`).toBe(1);
    } finally {
      await pool.end().catch(() => undefined);
    }
  }
});

it("a command's database close returns only once its connections are closed", async () => {
  // A CLI command's close is followed at once by stopping the embedded Postgres (the last one
  // out stops it): a connection not yet closed then is cut off, and logged as lost.
  const database = await openDatabase(loadConfig({ DATABASE_URL: db.url, DATA_DIR: '/nonexistent' }), createLogger('silent'), 4);
  const clients = await Promise.all([database.pool.connect(), database.pool.connect(), database.pool.connect()]);
  let ended = 0;
  for (const c of clients) c.on('end', () => ended++);
  await Promise.all(clients.map((c) => c.query('SELECT 1')));
  for (const c of clients) c.release();
  expect(database.pool.totalCount).toBe(3);
  await database.close();
  expect(ended).toBe(3);
});
