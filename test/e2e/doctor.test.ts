import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { runDoctor, type DoctorReport } from '../../src/ops/doctor.js';
import { loadOrCreateHostKeys } from '../../src/sftp/host-keys.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startTestSmtp, type TestSmtp } from '../support/smtp.js';

/** `rosterd doctor --json` as a subprocess; the report, its exit code, and the text form too. */
async function doctor(env: Record<string, string | undefined>) {
  const [json, text] = await Promise.all([runCli(['doctor', '--json'], env), runCli(['doctor'], env)]);
  const report = json.json<DoctorReport>();
  const check = (name: string) => {
    const found = report.checks.find((c) => c.name === name);
    if (!found) throw new Error(`no "${name}" check in ${JSON.stringify(report, null, 2)}`);
    return found;
  };
  return { code: json.code, textCode: text.code, text: text.stdout, stderr: text.stderr + json.stderr, report, check };
}

describe('rosterd doctor', () => {
  let db: TestDatabase;
  let smtp: TestSmtp;
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-doctor-'));
    dirs.push(dir);
    return dir;
  };

  beforeAll(async () => {
    [db, smtp] = await Promise.all([createTestDatabase(), startTestSmtp()]);
  });

  afterAll(async () => {
    await smtp?.close();
    await db?.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('passes on a good setup: every check OK, exit 0, one line per check', async () => {
    const dataDir = tempDir();
    await loadOrCreateHostKeys(dataDir);
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir, SMTP_URL: smtp.url });
    expect(r.code, r.text + r.stderr).toBe(0);
    expect(r.textCode).toBe(0);
    expect(r.report.ok).toBe(true);
    expect(r.report.checks.map((c) => c.name)).toEqual([
      'configuration',
      'variable names',
      'data directory',
      'data directory permissions',
      'free space',
      'host keys',
      'database',
      'migrations',
      'reports',
      'usernames',
      'clock',
      'time zones',
      'schedule',
      'received files',
      'mail',
    ]);
    for (const c of r.report.checks)
      expect(c.status === 'ok' || (c.name === 'free space' && c.status === 'warn'), JSON.stringify(c)).toBe(true);
    expect(r.check('host keys').detail).toMatch(/^SHA256:\S+, SHA256:\S+$/);
    expect(r.check('mail').detail).toContain(`127.0.0.1:${smtp.port}`);
    expect(r.text).toMatch(/^OK {4}configuration /m);
    expect(r.text).toMatch(/^OK {4}database {2,}connected to 127\.0\.0\.1:\d+\/rosterd_t_\w+ \(PostgreSQL /m);
    expect(r.text).toMatch(/all checks passed\n$/);
    expect(r.text + r.stderr, 'no credentials printed').not.toContain(new URL(db.url).password || '\u0000');
  });

  it('warns about a report that has waited more than an hour, with its last error (a warning: exit 0)', async () => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO outbox (message, status, attempts, last_error, created_at)
       VALUES ('{}'::jsonb, 'pending', 9, 'connect ECONNREFUSED 10.0.0.9:25', now() - interval '2 hours') RETURNING id`,
    );
    try {
      const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
      expect(r.code, r.text).toBe(0);
      expect(r.check('reports')).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(
          /^1 report waiting for more than an hour, the oldest since .* \(last error: connect ECONNREFUSED 10\.0\.0\.9:25\)$/,
        ),
        fix: expect.stringContaining('rosterd serve is running'),
      });
    } finally {
      await db.pool.query('DELETE FROM outbox WHERE id = $1', [rows[0]!.id]);
    }
  });

  it('warns when usernames have letters the database does not fold (a C character type)', async () => {
    const name = `${new URL(db.url).pathname.slice(1)}_c`;
    await db.pool.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`);
    const url = Object.assign(new URL(db.url), { pathname: `/${name}` }).toString();
    try {
      const dataDir = tempDir();
      expect((await runCli(['migrate'], { DATABASE_URL: url, DATA_DIR: dataDir })).code).toBe(0);
      const clean = await doctor({ DATABASE_URL: url, DATA_DIR: dataDir, SMTP_URL: smtp.url });
      expect(clean.check('usernames')).toMatchObject({
        status: 'ok',
        detail: expect.stringMatching(/A-Z only \(LC_CTYPE C\); every username so far is ASCII/),
      });
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`INSERT INTO users (tenant_id, username) VALUES (1, 'élodie1')`);
      await c.end();
      const r = await doctor({ DATABASE_URL: url, DATA_DIR: dataDir, SMTP_URL: smtp.url });
      expect(r.code, r.text).toBe(0); // a warning
      expect(r.check('usernames')).toMatchObject({
        status: 'warn',
        detail: '1 username has letters outside A-Z, which LC_CTYPE C does not fold: Élodie and ÉLODIE would be two users',
      });
    } finally {
      await db.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  it("warns when this host's clock is off from the database's, which the window and claims depend on", async () => {
    const env = { DATABASE_URL: db.url, DATA_DIR: tempDir(), LOG_LEVEL: 'silent' };
    const clockCheck = async (offsetMs: number) => {
      const clock = { now: () => new Date(Date.now() + offsetMs) };
      const report = await runDoctor({ env, logger: createLogger('silent'), clock });
      return report.checks.find((c) => c.name === 'clock');
    };
    expect(await clockCheck(-120_000)).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(
        /^this host's clock is 12\d s behind the database's clock: rosterd here would open and close the night window/,
      ),
      fix: expect.stringContaining('NTP'),
    });
    expect((await clockCheck(30_000))?.detail).toMatch(/3\d s ahead of the database's clock/);
    expect(await clockCheck(0)).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^within \d s of the database's clock$/) });
  });

  it('warns about a username stored twice, decomposed (as a Mac saves accents) and composed, naming the district', async () => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('twin-usd', 'Twin', '{it@twin.example}') RETURNING id`,
    );
    const tenantId = rows[0]!.id;
    await db.pool.query(`INSERT INTO users (tenant_id, username) VALUES ($1, $2), ($1, $3)`, [
      tenantId,
      'josé.m'.normalize('NFC'),
      'josé.m'.normalize('NFD'),
    ]);
    try {
      const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
      expect(r.code, r.text).toBe(0); // a warning
      expect(r.check('usernames')).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(/^1 username is stored with decomposed accents .* so each is two users: twin-usd \(1\)$/),
        fix: expect.stringContaining('the next users.csv import of these districts keeps the composed user'),
      });
      // as the next import leaves them: the decomposed one deactivated, nothing left to warn of
      await db.pool.query(`UPDATE users SET active = false WHERE tenant_id = $1 AND username = $2`, [tenantId, 'josé.m'.normalize('NFD')]);
      const after = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
      expect(after.check('usernames').status).toBe('ok');
    } finally {
      await db.pool.query('DELETE FROM users WHERE tenant_id = $1', [tenantId]);
      await db.pool.query('DELETE FROM tenants WHERE id = $1', [tenantId]);
    }
  });

  it('fails on a tenant zone this Node does not know, and warns of an abbreviation (EST) stored before they were refused', async () => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails, timezone) VALUES
         ('zone-gone', 'Gone', '{it@gone.example}', 'Mars/Olympus_Mons'), ('zone-est', 'Est', '{it@est.example}', 'EST')
       RETURNING id`,
    );
    try {
      const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
      expect(r.code, r.text).toBe(1);
      expect(r.check('time zones')).toMatchObject({
        status: 'fail',
        detail: expect.stringMatching(/^zone-gone \(Mars\/Olympus_Mons\): not a time zone this Node\.js knows, so its night window/),
        fix: expect.stringContaining('rosterd tenant update SUBDOMAIN --timezone'),
      });
      await db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = 'zone-gone'`);
      const est = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
      expect(est.code, est.text).toBe(0);
      expect(est.check('time zones')).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(/^zone-est \(EST\): an abbreviation, not a region's zone/),
      });
    } finally {
      await db.pool.query('DELETE FROM tenants WHERE id = ANY($1)', [rows.map((r) => r.id)]);
    }
  });

  it('fails when SCHEDULE_CRON fires only while a tenant window is shut, naming the tenant', async () => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails, timezone) VALUES ('sched-night', 'Night', '{it@night.example}', 'America/Chicago')
       RETURNING id`,
    );
    try {
      // node-cron reads the expression in the server's zone (TZ): noon in Chicago is outside 18:00-06:00.
      const env = { DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url, TZ: 'America/Chicago' };
      const noon = await doctor({ ...env, SCHEDULE_CRON: '0 12 * * *' });
      expect(noon.code, noon.text).toBe(1);
      expect(noon.check('schedule')).toMatchObject({
        status: 'fail',
        detail:
          'SCHEDULE_CRON "0 12 * * *" does not fire while the import window of sched-night (18:00-06:00 America/Chicago) is open, ' +
          'in the next 14 nights: its uploads are not imported',
        fix: expect.stringMatching(/^set SCHEDULE_CRON to fire during the night/) as unknown,
      });
      const late = await doctor({ ...env, SCHEDULE_CRON: '0 23 * * *' });
      expect(late.check('schedule')).toEqual({
        name: 'schedule',
        status: 'ok',
        detail: 'SCHEDULE_CRON "0 23 * * *": fires inside the window of the active tenant',
      });
    } finally {
      await db.pool.query('DELETE FROM tenants WHERE id = ANY($1)', [rows.map((r) => r.id)]);
    }
  });

  it('warns about received files with no import record (a database restored from an older backup), naming the districts', async () => {
    const dataDir = tempDir();
    const copy = (tenant: string, name: string, ageMs: number) => {
      mkdirSync(path.join(dataDir, 'uploads', tenant), { recursive: true });
      const file = path.join(dataDir, 'uploads', tenant, name);
      writeFileSync(file, 'username\n');
      const at = new Date(Date.now() - ageMs);
      utimesSync(file, at, at);
      return path.join('uploads', tenant, name);
    };
    const recorded = copy('kept-usd', '20261101T010000Z-a-users.csv', 86_400_000);
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('kept-usd', 'Kept', '{it@kept.example}') RETURNING id`,
    );
    await db.pool.query(
      `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, status) VALUES ($1, 'users.csv', 9, repeat('0', 64), $2, 'succeeded')`,
      [rows[0]!.id, recorded],
    );
    try {
      copy('kept-usd', '20261121T010000Z-b-users.csv', 2 * 86_400_000); // as if its row were lost
      copy('lost-usd', '20261120T010000Z-c-users.csv', 3_600_000);
      copy('lost-usd', '20261121T235900Z-d-users.csv', 1_000); // being received: its row is not there yet
      const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir, SMTP_URL: smtp.url });
      expect(r.code, r.text).toBe(0); // a warning
      expect(r.check('received files')).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(
          /^2 files in .*uploads have no import record \(the newest, uploads\/lost-usd\/20261120T010000Z-c-users\.csv, from .*\), of kept-usd, lost-usd: received after the backup/,
        ),
        fix: expect.stringContaining('ask these districts to upload users.csv again'),
      });
      const clean = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
      expect(clean.check('received files')).toMatchObject({ status: 'ok' });
    } finally {
      await db.pool.query(`DELETE FROM uploads WHERE stored_path = $1`, [recorded]);
      await db.pool.query(`DELETE FROM tenants WHERE id = $1`, [rows[0]!.id]);
    }
  });

  it('passes without SMTP_URL when the .eml outbox folder can be written, and before the first start', async () => {
    const dataDir = tempDir();
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir });
    expect(r.code, r.text).toBe(0);
    expect(r.check('mail').detail).toContain(path.join(dataDir, 'outbox'));
    expect(r.check('host keys').detail).toMatch(/none yet/);
  });

  it('creates nothing: with the embedded Postgres and no DATA_DIR yet, the database checks are skipped, not run in a new cluster', async () => {
    const dataDir = path.join(tempDir(), 'not-yet');
    const r = await doctor({ DATABASE_URL: undefined, DATA_DIR: dataDir });
    expect(r.check('data directory')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/does not exist yet/) as unknown });
    for (const name of ['database', 'migrations', 'reports', 'usernames', 'clock', 'time zones', 'schedule', 'received files']) {
      expect(r.check(name)).toMatchObject({
        status: 'skip',
        detail: expect.stringMatching(/embedded Postgres lives in DATA_DIR/) as unknown,
      });
    }
    expect(existsSync(dataDir), 'doctor made DATA_DIR').toBe(false);
  });

  it('names a DATABASE_URL it cannot connect to, and exits 1 without crashing', async () => {
    const r = await doctor({ DATABASE_URL: 'postgres://rosterd:wrong@127.0.0.1:1/rosterd', DATA_DIR: tempDir() });
    expect(r.code).toBe(1);
    expect(r.textCode).toBe(1);
    expect(r.report.ok).toBe(false);
    expect(r.check('database')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/cannot connect to 127\.0\.0\.1:1\/rosterd: .*ECONNREFUSED/),
    });
    expect(r.check('database').fix).toMatch(/check DATABASE_URL/);
    expect(r.check('migrations').status).toBe('skip');
    expect(r.check('configuration').status).toBe('ok');
    expect(r.text).toMatch(/^FAIL {2}database /m);
    expect(r.text).toContain('→ check DATABASE_URL');
    expect(r.text + r.stderr).not.toContain('wrong');
  });

  it('reports a malformed DATABASE_URL as a configuration failure (exit 1), not a usage error', async () => {
    const r = await doctor({ DATABASE_URL: 'mysql://root@localhost/x', DATA_DIR: tempDir() });
    expect(r.code).toBe(1);
    expect(r.check('configuration')).toMatchObject({ status: 'fail', detail: expect.stringContaining('DATABASE_URL') });
    expect(r.check('database').status).toBe('skip');
  });

  it('reports a bad LOG_LEVEL as a configuration failure naming it, without a stack trace (exit 1)', async () => {
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), LOG_LEVEL: 'verbose' });
    expect(r.code).toBe(1);
    expect(r.textCode).toBe(1);
    expect(r.check('configuration')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/LOG_LEVEL="verbose" is not valid: expected one of fatal, error, warn/),
    });
    expect(r.check('database').status).toBe('skip');
    expect(r.text).toMatch(/^FAIL {2}configuration {2,}LOG_LEVEL="verbose"/m);
    expect(r.stderr).toBe('');
  });

  it('warns of a variable that looks like a misspelling of one rosterd reads, naming both and what rosterd does instead (exit 0)', async () => {
    const dataDir = tempDir();
    const r = await doctor({
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      SMTP_URI: 'smtp://rosterd:hunter2@mail.example:25',
      SFTPPORT: '2022',
    });
    expect(r.code, r.text).toBe(0); // a warning
    expect(r.check('variable names')).toEqual({
      name: 'variable names',
      status: 'warn',
      detail:
        'SFTPPORT is set but rosterd reads SFTP_PORT, so it uses the default SFTP_PORT=2222\n' +
        'SMTP_URI is set but rosterd reads SMTP_URL, so reports are written as .eml files to DATA_DIR/outbox',
      fix: 'rename SFTPPORT to SFTP_PORT; rename SMTP_URI to SMTP_URL (the names rosterd reads are listed in the README, Configuration)',
    });
    expect(r.text).toMatch(
      /^WARN {2}variable names {2,}SFTPPORT is set but rosterd reads SFTP_PORT, .*\n {10,}SMTP_URI is set .*\n {10,}→ rename SFTPPORT/m,
    );
    expect(r.check('mail').detail, 'what the warning says is so').toContain(path.join(dataDir, 'outbox'));
    expect(r.text + r.stderr + JSON.stringify(r.report)).not.toContain('hunter2');
    // also beside a configuration that fails, where it may be the reason
    const bad = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), LOG_LEVEL: 'loud', SFTPPORT: '2022' });
    expect(bad.check('variable names')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/^SFTPPORT is set/) });
  });

  it('does not warn of variable names in a clean environment', async () => {
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: smtp.url });
    expect(r.check('variable names')).toEqual({
      name: 'variable names',
      status: 'ok',
      detail: 'no variable looks like a misspelling of one rosterd reads',
    });
  });

  it('names every bad variable in the configuration check, a line each under the first in the text form', async () => {
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SFTP_PORT: 'twenty-two', LOG_LEVEL: 'verbose' });
    expect(r.code).toBe(1);
    expect(r.check('configuration').detail.split('\n')).toEqual([
      expect.stringMatching(/^SFTP_PORT="twenty-two" is not valid: expected a whole number\./),
      expect.stringMatching(/^LOG_LEVEL="verbose" is not valid: expected one of fatal, /),
    ]);
    expect(r.text).toMatch(/^FAIL {2}configuration {2,}SFTP_PORT="twenty-two" .*\n {10,}LOG_LEVEL="verbose" .*\n {10,}→ /m);
  });

  it('shows the socket folder of a DATABASE_URL that connects over a Unix socket', async () => {
    const socketDir = path.join(tempDir(), 'no-postgres-here');
    const r = await doctor({ DATABASE_URL: `postgres://root@/rosterd?host=${socketDir}`, DATA_DIR: tempDir() });
    expect(r.check('configuration').detail).toContain(`Postgres at socket ${socketDir} (database rosterd)`);
    expect(r.check('configuration').detail).not.toContain('unparsable');
    expect(r.check('database')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining(`cannot connect to socket ${socketDir} (database rosterd)`),
    });
  });

  it('names a mail server that does not answer', async () => {
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: 'smtp://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.check('mail')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/mail server at 127\.0\.0\.1:1 cannot be used: .*ECONNREFUSED/),
    });
    expect(r.check('mail').fix).toMatch(/check SMTP_URL/);
    expect(r.check('database').status).toBe('ok');
  });

  it("says that a mail server's TLS certificate was refused, and what to do, rather than to check the URL", async () => {
    // STARTTLS with smtp-server's own test certificate, which no CA signed (and which has expired).
    const server = new SMTPServer({ authOptional: true, logger: false });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.server.address() as AddressInfo).port;
      const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: tempDir(), SMTP_URL: `smtp://127.0.0.1:${port}` });
      expect(r.check('mail')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/certificate/) });
      expect(r.check('mail').fix).toMatch(/NODE_EXTRA_CA_CERTS=.*tls\.rejectUnauthorized=false/);
      expect(r.check('mail').fix).not.toMatch(/check SMTP_URL/);
      // As the fix says: with the check turned off, the same server is accepted.
      const off = await doctor({
        DATABASE_URL: db.url,
        DATA_DIR: tempDir(),
        SMTP_URL: `smtp://127.0.0.1:${port}?tls.rejectUnauthorized=false`,
      });
      expect(off.check('mail').status).toBe('ok');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('names a data directory that cannot be written (a path under a regular file fails even as root)', async () => {
    const parent = tempDir();
    const file = path.join(parent, 'not-a-directory');
    writeFileSync(file, '');
    const dataDir = path.join(file, 'data');
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir });
    expect(r.code).toBe(1);
    expect(r.check('data directory')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining(`${dataDir} cannot be used (ENOTDIR)`),
    });
    expect(r.check('mail')).toMatchObject({ status: 'fail', detail: expect.stringContaining('not writable') });
    expect(r.text).toMatch(/^FAIL {2}data directory /m);
  });

  it('names a data directory others can read, and a host key others can read', async () => {
    const dataDir = tempDir();
    await loadOrCreateHostKeys(dataDir);
    chmodSync(dataDir, 0o755);
    chmodSync(path.join(dataDir, 'host_keys', 'ssh_host_rsa_key'), 0o644);
    const r = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir });
    expect(r.code).toBe(1);
    expect(r.check('data directory permissions')).toMatchObject({ status: 'fail', fix: expect.stringContaining(`chmod o-rw ${dataDir}`) });
    expect(r.check('host keys')).toMatchObject({ status: 'fail', fix: expect.stringContaining('chmod 600') });
  });

  it('quotes a DATA_DIR with spaces or quotes in the commands it says to run, so that they work as pasted', async () => {
    const parent = path.join(tempDir(), "district's data");
    const dataDir = path.join(parent, 'roster files');
    const missing = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir });
    const fix = missing.check('data directory').fix ?? '';
    expect(fix).toBe(`or create it now: mkdir -p -m 700 '${parent.replace("'", `'\\''`)}/roster files'`);
    // Run as pasted: one folder, the one DATA_DIR names (unquoted, it made "…/district's" and "data/roster" and "files").
    execFileSync('sh', ['-c', fix.replace(/^or create it now: /, '')]);
    expect(statSync(dataDir).isDirectory()).toBe(true);
    chmodSync(dataDir, 0o755);
    const open = await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir });
    const chmod = open.check('data directory permissions').fix ?? '';
    execFileSync('sh', ['-c', chmod]);
    expect(statSync(dataDir).mode & 0o777).toBe(0o751);
    expect((await doctor({ DATABASE_URL: db.url, DATA_DIR: dataDir })).check('data directory permissions').status).toBe('ok');
  });

  it('names migrations that are not applied', async () => {
    const bare = `rosterd_t_doctor_${process.pid}`;
    const admin = new pg.Client({ connectionString: inject('adminUrl') });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${bare}`);
      await admin.query(`CREATE DATABASE ${bare}`);
      const url = new URL(inject('adminUrl'));
      url.pathname = `/${bare}`;
      const r = await doctor({ DATABASE_URL: url.toString(), DATA_DIR: tempDir() });
      expect(r.code).toBe(1);
      expect(r.check('migrations')).toMatchObject({
        status: 'fail',
        detail: expect.stringMatching(/^not applied: 001_foundation/),
        fix: expect.stringContaining('rosterd migrate'),
      });
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${bare} WITH (FORCE)`);
      await admin.end();
    }
  });
});
