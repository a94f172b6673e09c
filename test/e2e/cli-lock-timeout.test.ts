/**
 * A command blocked by another database session's lock (a psql left in BEGIN, a long ALTER TABLE)
 * stops after CLI_LOCK_TIMEOUT_SECONDS with DATABASE_LOCKED, naming the sessions that hold a
 * transaction open, instead of hanging for ever; the waits rosterd means (another process's
 * migrations, an import of the same tenant) are not cut off.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImportRecord } from '../../src/import/records.js';
import { runCli } from '../support/cli.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
let env: Record<string, string>;

beforeAll(async () => {
  f = await importFixture();
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent', CLI_LOCK_TIMEOUT_SECONDS: '1' };
  await f.addTenant('lock-usd');
});
afterAll(async () => f?.close());

/** Another session, as a person in psql would hold it, until `release`. */
async function otherSession(statements: string[]): Promise<{ pid: number; release(): Promise<void> }> {
  const client = new pg.Client({ connectionString: f.db.url, application_name: 'psql-left-open' });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  for (const sql of statements) await client.query(sql);
  return {
    pid: rows[0]!.pid,
    release: async () => {
      await client.query('ROLLBACK').catch(() => undefined);
      await client.end();
    },
  };
}

describe('a command waiting for a lock another session holds', () => {
  it('stops after CLI_LOCK_TIMEOUT_SECONDS with DATABASE_LOCKED, as JSON on stdout, naming the session', async () => {
    const holder = await otherSession(['BEGIN', 'LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE']);
    try {
      // Older than the wait, so that it counts as holding a transaction open longer than it.
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      const started = Date.now();
      const r = await runCli(['tenant', 'list', '--json'], env);
      expect(Date.now() - started, 'stopped after about a second, not waiting for ever').toBeLessThan(15_000);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toBe('');
      const { error } = r.json<{ error: { code: string; message: string } }>();
      expect(error.code).toBe('DATABASE_LOCKED');
      expect(error.message).toMatch(/^this command waited 1s for a database lock another session holds, and stopped; /);
      expect(error.message).toContain(`pid ${holder.pid} (psql-left-open, user `);
      expect(error.message).toMatch(/idle in transaction for \d+ s\)/);
      expect(error.message).toContain('SELECT pg_terminate_backend(PID)');

      const text = await runCli(['tenant', 'update', 'lock-usd', '--threshold', '12'], env);
      expect(text.code).toBe(1);
      expect(text.stdout).toBe('');
      expect(text.stderr).toMatch(new RegExp(`^rosterd: this command waited 1s .*pid ${holder.pid} \\(psql-left-open`));
      expect(text.stderr, 'no stack trace: a RosterdError').not.toMatch(/\n\s+at /);
    } finally {
      await holder.release();
    }
    // Nothing was changed, and with the session gone the same command works.
    const again = await runCli(['tenant', 'update', 'lock-usd', '--threshold', '12', '--json'], env);
    expect(again.code, again.stdout).toBe(0);
    expect(again.json()).toMatchObject({ thresholdPercent: 12 });
  });

  it("waits for another process's migrations, however long, and then finds the schema current", async () => {
    // migrate.ts's MIGRATION_LOCK_KEY, as a `rosterd serve` starting elsewhere holds it.
    const migrating = await otherSession(['SELECT pg_advisory_lock(4242001)']);
    const released = new Promise((resolve) => setTimeout(resolve, 3_000)).then(() => migrating.release());
    const started = Date.now();
    const r = await runCli(['migrate', '--json'], env);
    await released;
    expect(r.code, r.stdout).toBe(0);
    expect(r.json()).toMatchObject({ applied: [], status: 'current' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);
  });

  it('import approve waits for an import of the same tenant, however long, and then applies the held import', async () => {
    const rows = Array.from({ length: 10 }, (_, i) => `user${i}x`);
    await f.importCsv('lock-usd', csv('username', ...rows));
    const held = await f.importCsv('lock-usd', csv('username', rows[0]!));
    expect(held.status).toBe('held');
    const { rows: t } = await f.db.pool.query<{ id: number }>(`SELECT id FROM tenants WHERE subdomain = 'lock-usd'`);
    // execute.ts's roster lock (IMPORT_LOCK_CLASS, tenant id), as an import running in rosterd serve holds it.
    const importing = await otherSession(['BEGIN', `SELECT pg_advisory_xact_lock(${0x726f7374}, ${t[0]!.id})`]);
    const released = new Promise((resolve) => setTimeout(resolve, 3_000)).then(() => importing.release());
    const r = await runCli(['import', 'approve', held.id, '--by', 'jane@district', '--json'], env);
    await released;
    expect(r.code, r.stdout).toBe(0);
    expect(r.json<ImportRecord>()).toMatchObject({ status: 'succeeded', counts: { deactivated: 9 } });
  });
});
