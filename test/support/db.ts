import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { createPool } from '../../src/store/db.js';

export interface TestDatabase {
  pool: pg.Pool;
  /** connection string of this database, for CLI subprocesses (DATABASE_URL) */
  url: string;
  name: string;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database of its own for one test file (cloned from the run's template), or
 * with `empty`, one with no schema at all (for migrations themselves).
 */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject('adminUrl');
  const template = opts.empty ? 'template0' : inject('templateDb');
  const name = `rosterd_t_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = createPool(url.toString(), createLogger('silent'), 10);
  return {
    pool,
    url: url.toString(),
    name,
    drop: async () => {
      await pool.end().catch(() => undefined);
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await c.end();
    },
  };
}

/** Users of one tenant, active or not. */
export async function tenantUserCount(pool: pg.Pool, subdomain: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1`,
    [subdomain],
  );
  return rows[0]?.n ?? -1;
}

/**
 * Backends other than the caller's holding a write lock on users: imports writing the roster
 * (a test waits for one to start, or for a dead one's transaction to end).
 */
export async function rosterWriterPids(pool: pg.Pool): Promise<number[]> {
  const { rows } = await pool.query<{ pid: number }>(
    `SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
      WHERE c.relname = 'users' AND l.mode = 'RowExclusiveLock' AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.pid <> pg_backend_pid()`,
  );
  return rows.map((r) => r.pid);
}
