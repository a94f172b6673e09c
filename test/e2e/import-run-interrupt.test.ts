/**
 * Ctrl-C on `rosterd import run` (PRODUCT.md §5, §7): the import in progress rolls back, its
 * upload is pending again without a failed attempt counted (three impatient Ctrl-Cs used to fail
 * it after IMPORT_MAX_ATTEMPTS, each claim held until CLAIM_TTL_SECONDS), and the command exits
 * 130 saying so; a second Ctrl-C exits at once. And an `import run` that finds the tenant's upload
 * being imported by another process says so, by whom and until when, not "nothing pending".
 * The built CLI runs as a subprocess against a real Postgres.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rosterWriterPids, tenantUserCount } from '../support/db.js';
import { importHashing, runCli, startCli, type CliProcess } from '../support/cli.js';
import { startTestSmtp } from '../support/smtp.js';
import { writeLargeUsersCsv } from '../support/serve.js';
import { waitFor } from '../support/wait.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
let env: Record<string, string>;

beforeAll(async () => {
  f = await importFixture();
  // One hashing thread: 120 passwords take several seconds, so the import is surely in progress.
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent', HASH_WORKERS: '1' };
});
afterAll(async () => f?.close());

const withPasswords = (prefix: string, rows: number) =>
  csv('username,password', ...Array.from({ length: rows }, (_, i) => `${prefix}${String(i).padStart(4, '0')},Passw0rd-${i}`));

async function upload(id: string) {
  const { rows } = await f.db.pool.query<{
    status: string;
    attempts: number;
    claim_token: string | null;
    last_attempt_error: string | null;
    requested_by: string | null;
  }>('SELECT status, attempts, claim_token, last_attempt_error, requested_by FROM uploads WHERE id = $1', [id]);
  return rows[0];
}

const reports = async (id: string) =>
  (await f.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE upload_id = $1', [id])).rows[0]?.n;

const hashing = (run: CliProcess): Promise<void> => importHashing(f.db.pool, run);

describe('Ctrl-C on import run --now', () => {
  it('rolls the import back and puts the upload back to pending, not counted: three Ctrl-Cs leave it importable', async () => {
    await f.addTenant('ctrlc-usd');
    const id = await f.receive('ctrlc-usd', withPasswords('ctrlc', 120), 'users.csv', 'pending');

    for (const json of [false, true, false]) {
      const run = startCli(['import', 'run', '--now', '--tenant', 'ctrlc-usd', ...(json ? ['--json'] : [])], env);
      await hashing(run);
      const t0 = Date.now();
      run.child.kill('SIGINT');
      const r = await run.result;
      const took = Date.now() - t0;
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(130);
      expect(took, 'the import stops at once, not after its hashing').toBeLessThan(5_000);
      expect(r.stderr).toBe('');
      if (json) {
        expect(r.json()).toMatchObject({
          interruptedBy: 'SIGINT',
          interrupted: [{ id, tenant: 'ctrlc-usd', file: 'users.csv', status: 'pending' }],
          failed: [],
          retried: [],
        });
      } else {
        expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(
          `interrupted (SIGINT): import ${id} (ctrlc-usd users.csv) rolled back, nothing changed; ` +
            'the upload is pending again and will be imported at the next run',
        );
      }
      expect(await upload(id)).toMatchObject({
        status: 'pending',
        attempts: 0,
        claim_token: null,
        last_attempt_error: expect.stringMatching(/interrupted by the operator/) as unknown,
        // Given back, not imported by that run: whoever runs it next is recorded, or no one.
        requested_by: null,
      });
      expect(await rosterWriterPids(f.db.pool)).toEqual([]);
      expect(await tenantUserCount(f.db.pool, 'ctrlc-usd')).toBe(0);
      expect(await reports(id)).toBe(0);
    }

    // IMPORT_MAX_ATTEMPTS is 3: the upload is still imported, once, by the next run.
    const done = await runCli(['import', 'run', '--now', '--tenant', 'ctrlc-usd'], { ...env, HASH_WORKERS: '2' });
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.stdout).toMatch(new RegExp(`^succeeded\\s+${id}`, 'm'));
    expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 0, claim_token: null, requested_by: expect.any(String) });
    expect(await tenantUserCount(f.db.pool, 'ctrlc-usd')).toBe(120);
    expect(await reports(id)).toBe(1);
  }, 180_000);

  it('while a large file is being staged (its COPY in flight): the statement is cancelled, exit 130 at once', async () => {
    await f.addTenant('ctrlc-copy-usd');
    const file = path.join(f.dataDir, 'large-users.csv');
    await writeLargeUsersCsv(file, 1_000_000, 'copy');
    const id = await f.receive('ctrlc-copy-usd', readFileSync(file), 'users.csv', 'pending');
    const run = startCli(['import', 'run', '--now', '--tenant', 'ctrlc-copy-usd'], env);
    await waitFor(
      async () => {
        if (run.child.exitCode !== null) throw new Error(`rosterd exited before staging: ${JSON.stringify(run.output())}`);
        const { rowCount } = await f.db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE 'COPY %'`,
        );
        return (rowCount ?? 0) > 0;
      },
      30_000,
      'the import to stage the file',
    );
    const t0 = Date.now();
    run.child.kill('SIGINT');
    const r = await run.result;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(130);
    expect(Date.now() - t0, 'the COPY does not run to its end (about 8 s more)').toBeLessThan(5_000);
    expect(r.stdout).toContain(`interrupted (SIGINT): import ${id} (ctrlc-copy-usd users.csv) rolled back`);
    expect(await upload(id)).toMatchObject({ status: 'pending', attempts: 0, claim_token: null });
    expect(await tenantUserCount(f.db.pool, 'ctrlc-copy-usd')).toBe(0);
    await f.db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = 'ctrlc-copy-usd'`);
  }, 90_000);

  it('a second Ctrl-C exits at once, with nothing partial kept', async () => {
    await f.addTenant('ctrlc2-usd');
    const id = await f.receive('ctrlc2-usd', withPasswords('twice', 120), 'users.csv', 'pending');
    const run = startCli(['import', 'run', '--now', '--tenant', 'ctrlc2-usd'], env);
    await hashing(run);
    // Something holds the command up after the rollback (here: the outbox, whose queued reports
    // it counts), and the operator will not wait.
    const blocker = await f.db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE');
      run.child.kill('SIGINT');
      await waitFor(async () => (await upload(id))?.status === 'pending', 10_000, 'the upload to be given back');
      // A second signal within a second is the first delivered twice (npx forwards Ctrl-C): wait past it.
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      expect(run.child.exitCode, 'the first Ctrl-C is stuck on the outbox').toBeNull();
      const t0 = Date.now();
      run.child.kill('SIGINT');
      const r = await run.result;
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(130);
      expect(Date.now() - t0).toBeLessThan(2_000);
      expect(r.stderr).toMatch(/^rosterd: SIGINT again: exiting now/);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    expect(await upload(id)).toMatchObject({ status: 'pending', attempts: 0, claim_token: null });
    await waitFor(async () => (await rosterWriterPids(f.db.pool)).length === 0, 10_000, 'no import transaction left');
    expect(await tenantUserCount(f.db.pool, 'ctrlc2-usd')).toBe(0);
    // Out of the way of the next case's runs over every tenant.
    await f.db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = 'ctrlc2-usd'`);
  }, 90_000);

  it('while reports are being sent: no further report is begun, the rest stay queued, exit 130', async () => {
    const smtp = await startTestSmtp({ replyDelayMs: 4_000 });
    try {
      for (const t of ['ctrlc-mail-a', 'ctrlc-mail-b']) {
        await f.addTenant(t);
        await f.receive(t, csv('username', `${t}-user`), 'users.csv', 'pending');
      }
      // the first tenant's report is queued without a mail server; the second run sends both
      expect((await runCli(['import', 'run', '--now', '--tenant', 'ctrlc-mail-a'], env)).code).toBe(0);
      const run = startCli(['import', 'run', '--now', '--tenant', 'ctrlc-mail-b'], { ...env, SMTP_URL: smtp.url });
      await waitFor(async () => smtp.received.length > 0, 30_000, 'the first report to reach the mail server');
      run.child.kill('SIGINT');
      const r = await run.result;
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(130);
      // The report sent was the first tenant's (the oldest goes first); this run's own is the one left queued.
      expect(r.stdout).toMatch(/^reports: 1 queued; rosterd serve sends them/m);
      expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(/^interrupted \(SIGINT\) while sending reports: the imports above are done/);
      expect(smtp.received).toHaveLength(1);
      const { rows } = await f.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE status = 'pending'`);
      expect(rows[0]?.n).toBeGreaterThan(0);
    } finally {
      await smtp.close();
    }
  }, 90_000);
});

describe('Ctrl-C on import approve', () => {
  it('rolls the approval back at once: the import is still held, nothing changed, exit 130; approving again applies it', async () => {
    await f.addTenant('ctrlc-approve');
    const roster = Array.from({ length: 20 }, (_, i) => `keep${String(i).padStart(2, '0')}`);
    expect((await f.importCsv('ctrlc-approve', csv('username', ...roster))).status).toBe('succeeded');
    // Half the roster gone (over the 10 % threshold) and 120 new users whose passwords the approval hashes.
    const held = await f.importCsv(
      'ctrlc-approve',
      csv('username,password', ...roster.slice(0, 10).map((u) => `${u},`), ...withPasswords('newc', 120).split('\n').slice(1, -1)),
    );
    expect(held.status).toBe('held');
    const heldReports = await reports(held.id);

    const run = startCli(['import', 'approve', held.id, '--by', 'ops'], env);
    await hashing(run);
    const t0 = Date.now();
    run.child.kill('SIGINT');
    const r = await run.result;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(130);
    expect(Date.now() - t0, 'the approval stops at once, not after its hashing').toBeLessThan(5_000);
    expect(r.stdout.trim()).toBe(
      `interrupted (SIGINT): import ${held.id} was not approved, nothing was changed; it is still held, and "rosterd import approve ${held.id}" applies it`,
    );
    expect(await upload(held.id)).toMatchObject({ status: 'held' });
    expect(await rosterWriterPids(f.db.pool)).toEqual([]);
    expect(await tenantUserCount(f.db.pool, 'ctrlc-approve')).toBe(20);
    expect(await reports(held.id)).toBe(heldReports);

    const done = await runCli(['import', 'approve', held.id, '--by', 'ops', '--json'], { ...env, HASH_WORKERS: '2' });
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.json()).toMatchObject({ id: held.id, status: 'succeeded', counts: { created: 120, deactivated: 10 } });
    expect(await reports(held.id)).toBe((heldReports ?? 0) + 1);
    await f.db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = 'ctrlc-approve'`);
  }, 90_000);
});

describe('import run while another process imports the tenant', () => {
  it('says an import is running, by whom and until when its claim lasts, not "nothing pending"', async () => {
    await f.addTenant('busy-usd');
    const id = await f.receive('busy-usd', csv('username', 'someone1'), 'users.csv', 'pending');
    const { rows } = await f.db.pool.query<{ claim_expires_at: Date }>(
      `UPDATE uploads SET status = 'running', claimed_by = 'cli:otherhost:4242', claim_token = $2, claimed_at = now(),
              claim_expires_at = now() + interval '10 minutes'
        WHERE id = $1 RETURNING claim_expires_at`,
      [id, randomUUID()],
    );
    const until = rows[0]!.claim_expires_at.toISOString();
    const line =
      `busy-usd: nothing imported: an import is running: users.csv ${id}, claimed by cli:otherhost:4242; ` +
      `its claim lasts until ${until}`;

    const named = await runCli(['import', 'run', '--now', '--tenant', 'busy-usd'], env);
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout).toContain(line);
    expect(named.stdout).not.toContain('nothing pending');
    const all = await runCli(['import', 'run', '--now'], env);
    expect(all.stdout).toContain(line);
    expect(all.stdout).not.toContain('nothing pending');

    // With a groups.csv pending behind it, the tenant is busy: the same line.
    const groups = await f.receive('busy-usd', csv('username,owner,group', 'someone1,,Math'), 'groups.csv', 'pending');
    const json = await runCli(['import', 'run', '--now', '--tenant', 'busy-usd', '--json'], env);
    expect(json.json()).toMatchObject({
      running: [{ tenant: 'busy-usd', id, file: 'users.csv', claimedBy: 'cli:otherhost:4242', claimExpiresAt: until }],
      skipped: [],
      imported: [],
    });
    expect((await upload(groups))?.status).toBe('pending');
    await f.db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = 'busy-usd'`);
  }, 60_000);
});
