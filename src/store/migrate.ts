import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { RosterdError } from '../errors.js';
import type { Logger } from '../types.js';
import { waitForLocks, withClient } from './db.js';
import { migrationsDir } from './paths.js';

// Any constant works; it only has to be the same in every rosterd process.
const MIGRATION_LOCK_KEY = 4_242_001;

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = migrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 3)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(path.join(dir, file), 'utf8'),
    })),
  );
}

/**
 * Applies pending migrations, each in its own transaction. A session-level advisory lock makes
 * this safe when several processes start at once: the second waits, then finds nothing to do.
 */
export async function migrate(pool: pg.Pool, logger: Logger): Promise<{ applied: string[] }> {
  const migrations = await loadMigrations();
  return withClient(pool, async (client) => {
    // Another process's migrations are waited for whatever the lock_timeout: in a transaction of
    // its own that lifts it, as the session-level lock outlives the transaction.
    await client.query('BEGIN');
    try {
      await waitForLocks(client);
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = new Set((await client.query<{ id: number }>('SELECT id FROM schema_migrations')).rows.map((r) => r.id));
      const applied: string[] = [];
      for (const m of migrations) {
        if (done.has(m.id)) continue;
        try {
          await client.query('BEGIN');
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw new RosterdError('MIGRATION_FAILED', `migration ${m.name} failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
        logger.info({ migration: m.name }, 'migration applied');
        applied.push(m.name);
      }
      return { applied };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  });
}

/** Migrations present in the code but not applied to the database (for /readyz and doctor). */
export async function pendingMigrations(pool: pg.Pool): Promise<string[]> {
  const migrations = await loadMigrations();
  const exists = await pool.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (!exists.rows[0]?.t) return migrations.map((m) => m.name);
  const done = new Set((await pool.query<{ id: number }>('SELECT id FROM schema_migrations')).rows.map((r) => r.id));
  return migrations.filter((m) => !done.has(m.id)).map((m) => m.name);
}
