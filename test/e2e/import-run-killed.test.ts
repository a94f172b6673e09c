/**
 * kill -9 of `rosterd import run --now` in the middle of an import (PRODUCT.md §5: a crash leaves
 * nothing partial, and the upload goes back to pending and is retried): the next `import run`
 * takes the upload back at once, not after CLAIM_TTL_SECONDS (ten minutes here), and imports it
 * once; while the importing process lives, another run leaves its claim alone. The built CLI runs
 * as a subprocess against a real Postgres.
 */
import os from 'node:os';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLAIM_LOCK_CLASS } from '../../src/schedule/claim-lock.js';
import { importHashing, runCli, startCli, type CliProcess } from '../support/cli.js';
import { tenantUserCount } from '../support/db.js';
import { waitFor } from '../support/wait.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

const TENANT = 'killed-usd';
const PASSWORDS = 100;

let f: ImportFixture;
let env: Record<string, string>;

beforeAll(async () => {
  f = await importFixture();
  // One hashing thread: 100 passwords take several seconds, so the import is surely in progress.
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent', HASH_WORKERS: '1', CLAIM_TTL_SECONDS: '600' };
});
afterAll(async () => f?.close());

async function upload(id: string) {
  const { rows } = await f.db.pool.query<{
    status: string;
    attempts: number;
    claimed_by: string | null;
    claim_token: string | null;
    claim_lock: number | null;
    claim_expires_at: Date | null;
    last_attempt_error: string | null;
  }>(`SELECT status, attempts, claimed_by, claim_token, claim_lock, claim_expires_at, last_attempt_error FROM uploads WHERE id = $1`, [id]);
  return rows[0];
}

/** Sessions of this database holding a claim's lock (rosterd's claims' class). */
async function claimLockHolders(): Promise<number[]> {
  const { rows } = await f.db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [CLAIM_LOCK_CLASS],
  );
  return rows.map((r) => r.pid);
}

const hashing = (run: CliProcess): Promise<void> => importHashing(f.db.pool, run);

it('kill -9 of import run mid-import: the next run takes the upload back at once, long before its claim expires, and imports it once', async () => {
  await f.addTenant(TENANT);
  const rows = Array.from({ length: PASSWORDS }, (_, i) => `killed${String(i).padStart(4, '0')},Passw0rd-${i}`);
  const id = await f.receive(TENANT, csv('username,password', ...rows), 'users.csv', 'pending');

  const first = startCli(['import', 'run', '--now', '--tenant', TENANT], env);
  await hashing(first);
  const claimed = await upload(id);
  expect(claimed).toMatchObject({ status: 'running', attempts: 0, claimed_by: `cli:${os.hostname()}:${first.child.pid}` });
  expect(claimed?.claim_lock, 'the claim is backed by a lock').not.toBeNull();
  expect(await claimLockHolders()).toHaveLength(1);

  // While it lives, another run leaves its claim alone and says who imports the upload.
  const meanwhile = await runCli(['import', 'run', '--now', '--tenant', TENANT], env);
  expect(meanwhile.code, meanwhile.stdout + meanwhile.stderr).toBe(0);
  expect(meanwhile.stdout).toContain(`an import is running: users.csv ${id}, claimed by cli:${os.hostname()}:${first.child.pid}`);
  expect(await upload(id)).toMatchObject({ status: 'running', attempts: 0, claim_token: claimed?.claim_token });
  expect(first.child.exitCode, 'the first run was still importing').toBeNull();

  const killedAt = Date.now();
  first.child.kill('SIGKILL');
  expect((await first.result).signal).toBe('SIGKILL');
  // The kernel closes the dead process's connections; Postgres ends its sessions and their locks.
  await waitFor(async () => (await claimLockHolders()).length === 0, 10_000, 'Postgres to end the killed run’s sessions');
  // Nothing of the import was kept; the claim stands, its expiry ten minutes away.
  expect(await tenantUserCount(f.db.pool, TENANT)).toBe(0);
  const orphan = await upload(id);
  expect(orphan).toMatchObject({ status: 'running', attempts: 0, claim_token: claimed?.claim_token });
  expect(orphan!.claim_expires_at!.getTime() - Date.now()).toBeGreaterThan(500_000);

  const next = await runCli(['import', 'run', '--now', '--tenant', TENANT], { ...env, HASH_WORKERS: '2' });
  expect(next.code, next.stdout + next.stderr).toBe(0);
  expect(next.stdout).toMatch(new RegExp(`^will retry\\s+${id}\\s+${TENANT}\\s+users\\.csv`, 'm'));
  expect(next.stdout).toMatch(new RegExp(`^succeeded\\s+${id}`, 'm'));
  expect(Date.now() - killedAt, 'taken back well before the claim would have expired').toBeLessThan(120_000);
  expect(await upload(id)).toMatchObject({
    status: 'succeeded',
    attempts: 1,
    claim_token: null,
    claim_lock: null,
    last_attempt_error: null,
  });
  expect(await tenantUserCount(f.db.pool, TENANT)).toBe(PASSWORDS);
  const { rows: reports } = await f.db.pool.query('SELECT 1 FROM outbox WHERE upload_id = $1', [id]);
  expect(reports).toHaveLength(1);
  expect(await claimLockHolders()).toEqual([]);
}, 180_000);
