/**
 * The database stays unreachable for a while (not a blip: Postgres refuses every new connection
 * of the daemon's database and has cut the ones it had), with the real `rosterd serve`:
 * - a login with a registered key is refused, the log says the database is unavailable, and such
 *   refusals do not count toward blocking the address (PRODUCT.md §2), so the same address logs
 *   in at once when the database is back;
 * - an upload whose CLOSE comes during the outage fails with a message and leaves nothing (no
 *   copy, no spool file, no row); the same file sent again afterwards is received normally;
 * - the daemon stays up, /readyz says not ready and then ready again, and the outage does not
 *   flood the log with errors.
 * (serve-db-lost.test.ts covers connections cut mid-import; http.test.ts the /readyz response.)
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { useServeFixture, zoneWhereItIsDay, type LogLine, type ServeProcess } from '../support/serve.js';
import { makeClientKey, rejection, sftpBatch, sftpP, ssh2Sftp, waitFor, type ClientKey } from '../support/ssh.js';

const LOGIN_TENANT = 'dbdown-login';
const CLOSE_TENANT = 'dbdown-close';
/** Low, so that the refusals during the outage would block the address if they counted. */
const MAX_AUTH_FAILURES = 3;
const ATTEMPTS_DURING_OUTAGE = MAX_AUTH_FAILURES + 2;
/** The test env's SCHEDULE_CRON (startServe's default): one scheduler tick per second. */
const TICKS_PER_SECOND = 1;

const fx = useServeFixture('dbdown');
let daemon: ServeProcess;
let loginKey: ClientKey;
let closeKey: ClientKey;
let loginFingerprint: string;
let closeFingerprint: string;

/** Outages this file caused, for the error budget: [start, end] in ms. */
const outages: Array<{ from: number; to: number | null }> = [];

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject('adminUrl') });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Backends connected to the file's database (the daemon's, the test pool's). */
async function backends(c: pg.Client): Promise<number[]> {
  const { rows } = await c.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [
    fx.db.name,
  ]);
  return rows.map((r) => r.pid);
}

/**
 * Postgres refuses every new connection to the database and ends those it has; it stays so
 * until databaseUp(). (Two steps, as in serve-db-lost.test.ts: pg_terminate_backend in the same
 * WHERE clause could run before the datname filter.)
 */
async function databaseDown(): Promise<void> {
  outages.push({ from: Date.now(), to: null });
  await admin(async (c) => {
    await c.query(`ALTER DATABASE ${fx.db.name} ALLOW_CONNECTIONS false`);
    for (const pid of await backends(c)) await c.query('SELECT pg_terminate_backend($1)', [pid]);
    await waitFor(async () => (await backends(c)).length === 0, 10_000, 'every backend of the database to end');
  });
}

async function databaseUp(): Promise<void> {
  await admin((c) => c.query(`ALTER DATABASE ${fx.db.name} ALLOW_CONNECTIONS true`));
  const open = outages.find((o) => o.to === null);
  if (open) open.to = Date.now();
}

async function readyz(): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${daemon.httpPort}/readyz`);
  return { status: res.status, body: await res.json() };
}

async function expectNotReady(): Promise<void> {
  const down = await readyz();
  expect(down.status, JSON.stringify(down.body)).toBe(503);
  expect(down.body).toMatchObject({ ready: false, checks: { database: { ok: false } } });
}

/** Back up: the daemon's /readyz says so again (its pool reconnects by itself). */
async function waitUntilReady(): Promise<void> {
  await waitFor(async () => (await readyz()).status === 200, 15_000, '/readyz to answer 200 again');
}

async function uploadRows(tenant: string) {
  const { rows } = await fx.db.pool.query<{
    status: string;
    sha256: string;
    bytes: number;
    stored_path: string;
    key_fingerprint: string | null;
    remote_address: string | null;
  }>(
    `SELECT u.status, u.sha256, u.bytes, u.stored_path, u.key_fingerprint, u.remote_address
       FROM uploads u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 ORDER BY u.received_at`,
    [tenant],
  );
  return rows;
}

/** Names in a folder, none if it does not exist. */
async function names(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
}

const spoolFilesOf = async (tenant: string) => (await names(path.join(fx.dataDir, 'spool'))).filter((n) => n.startsWith(`${tenant}.`));
const copiesOf = (tenant: string) => names(path.join(fx.dataDir, 'uploads', tenant));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const after = (mark: number) => daemon.logs.slice(mark);

function usersCsv(prefix: string, rows: number): Buffer {
  const lines = ['username,email,first name,last name,graduation year,role,sis id'];
  for (let i = 0; i < rows; i++) lines.push(`${prefix}${i},${prefix}${i}@district.example.org,First${i},Last${i},2030,student,SIS${i}`);
  return Buffer.from(lines.join('\n') + '\n');
}

beforeAll(async () => {
  // Daytime in the tenants' zone: uploads stay pending (nothing is imported while the test looks).
  const timezone = zoneWhereItIsDay();
  for (const t of [LOGIN_TENANT, CLOSE_TENANT]) await createTenant(fx.db.pool, t, { adminEmails: [`it@${t}.example`], timezone });
  loginKey = await makeClientKey(fx.tmp, 'ed25519', 'login');
  closeKey = await makeClientKey(fx.tmp, 'ed25519', 'close');
  loginFingerprint = (await addKey(fx.db.pool, LOGIN_TENANT, loginKey.publicLine)).fingerprint;
  closeFingerprint = (await addKey(fx.db.pool, CLOSE_TENANT, closeKey.publicLine)).fingerprint;
  daemon = await fx.start({ SFTP_MAX_AUTH_FAILURES: String(MAX_AUTH_FAILURES), SFTP_BLOCK_SECONDS: '600' });
});

afterEach(async () => {
  // Whatever happened, the database accepts connections again before the next test.
  await databaseUp();
});

describe('the database stays unreachable', () => {
  it('refuses a registered key with "database unavailable", without counting it toward blocking the address', async () => {
    const mark = daemon.logs.length;
    await databaseDown();
    await expectNotReady();

    for (let i = 0; i < ATTEMPTS_DURING_OUTAGE; i++) {
      const res = await sftpBatch(daemon.sftpPort, LOGIN_TENANT, loginKey, ['ls']);
      // Not in, and public key is all the server offers: no password or keyboard-interactive prompt.
      expect(res.code, res.stderr).toBe(255);
      expect(res.stderr).toMatch(/Permission denied \(publickey\)/);
      expect(res.stdout).not.toMatch(/password/i);
    }

    const refused = await waitFor(
      () => {
        const lines = after(mark).filter((l) => l.event === 'login.refused' && l.username === LOGIN_TENANT);
        return lines.length >= ATTEMPTS_DURING_OUTAGE ? lines : undefined;
      },
      10_000,
      'every refusal to be logged',
    );
    expect(refused).toHaveLength(ATTEMPTS_DURING_OUTAGE);
    for (const line of refused) {
      expect(line).toMatchObject({
        level: 'warn',
        reason: 'internal-error',
        remoteAddress: '127.0.0.1',
        fingerprint: loginFingerprint,
        method: 'publickey',
      });
    }
    const unavailable = after(mark).filter((l) => l.msg === 'SFTP login check failed: database unavailable');
    expect(unavailable).toHaveLength(ATTEMPTS_DURING_OUTAGE);
    for (const line of unavailable) {
      expect(line).toMatchObject({ level: 'error', remoteAddress: '127.0.0.1' });
      // The cause is the database refusing the connection, named as Postgres says it.
      expect(String((line.err as { message?: string } | undefined)?.message)).toMatch(/not currently accepting connections/);
    }
    // Not failures of the client: the address was never blocked, no connection cut for too many.
    const blocking = after(mark).filter(
      (l) => l.event === 'login.address_blocked' || l.event === 'login.connection_refused' || l.reason === 'too-many-attempts',
    );
    expect(blocking).toEqual([]);

    await databaseUp();
    await waitUntilReady();

    // The same address, at once (a block would last SFTP_BLOCK_SECONDS = 10 minutes): in, and uploads.
    const content = usersCsv('login', 20);
    const file = path.join(fx.tmp, 'login-users.csv');
    await fs.writeFile(file, content);
    const put = await sftpBatch(daemon.sftpPort, LOGIN_TENANT, loginKey, [`put ${file} users.csv`]);
    expect(put.code, put.stderr).toBe(0);
    // (Log lines come through a pipe, the client's answers through a socket: the log may lag.)
    await waitFor(
      () =>
        after(mark).find(
          (l) =>
            l.event === 'login.accepted' &&
            l.tenant === LOGIN_TENANT &&
            l.fingerprint === loginFingerprint &&
            l.remoteAddress === '127.0.0.1',
        ),
      10_000,
      'the login to be logged',
    );
    const rows = await uploadRows(LOGIN_TENANT);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'pending', sha256: sha256(content), bytes: content.length });
  });

  it('fails a CLOSE that comes during the outage, leaving nothing; the same file sent again afterwards is received', async () => {
    const content = usersCsv('close', 2_000); // about 140 KB: several WRITEs
    const half = Math.floor(content.length / 2);
    const session = await ssh2Sftp({ port: daemon.sftpPort, username: CLOSE_TENANT, privateKey: closeKey.privateKey });
    try {
      // Logged in and writing while the database is up.
      const handle = await sftpP.open(session.sftp, '/users.csv', 'w');
      await sftpP.write(session.sftp, handle, content.subarray(0, half), 0);
      await sftpP.write(session.sftp, handle, content.subarray(half), half);
      expect(await spoolFilesOf(CLOSE_TENANT), 'the upload is being spooled').toHaveLength(1);

      const mark = daemon.logs.length;
      await databaseDown();
      await expectNotReady();

      const err = await rejection(sftpP.close(session.sftp, handle));
      expect(err.code).toBe(4); // SSH_FX_FAILURE
      expect(err.message).toMatch(/try again later/);

      // Nothing was received: no copy, no spool file, nothing visible, nothing recorded as received.
      expect(await copiesOf(CLOSE_TENANT)).toEqual([]);
      expect(await spoolFilesOf(CLOSE_TENANT)).toEqual([]);
      expect(await names(path.join(fx.dataDir, 'sftp', CLOSE_TENANT))).toEqual([]);
      const failed = await waitFor(
        () => after(mark).find((l) => l.msg === 'upload failed: nothing was received' && l.tenant === CLOSE_TENANT),
        10_000,
        'the failed upload to be logged',
      );
      expect(failed).toMatchObject({ level: 'warn', file: 'users.csv' });
      expect(after(mark).filter((l) => l.event === 'upload.received')).toEqual([]);

      await databaseUp();
      await waitUntilReady();
      expect(await uploadRows(CLOSE_TENANT), 'a row for the failed upload').toEqual([]);

      // The SIS tries again, on the same connection: received normally.
      const retry = await sftpP.open(session.sftp, '/users.csv', 'w');
      await sftpP.write(session.sftp, retry, content, 0);
      await sftpP.close(session.sftp, retry);
    } finally {
      session.end();
    }
    const rows = await uploadRows(CLOSE_TENANT);
    expect(rows).toHaveLength(1);
    const row = rows[0];
    expect(row).toMatchObject({
      status: 'pending',
      sha256: sha256(content),
      bytes: content.length,
      key_fingerprint: closeFingerprint,
      remote_address: '127.0.0.1',
    });
    expect(await copiesOf(CLOSE_TENANT)).toHaveLength(1);
    expect(sha256(await fs.readFile(path.join(fx.dataDir, row?.stored_path ?? '')))).toBe(sha256(content));
    expect(sha256(await fs.readFile(path.join(fx.dataDir, 'sftp', CLOSE_TENANT, 'users.csv')))).toBe(sha256(content));
    expect(await spoolFilesOf(CLOSE_TENANT)).toEqual([]);
  });

  it('keeps the daemon up through the outages, not ready then ready again, without an error storm', async () => {
    const mark = daemon.logs.length;
    await databaseDown();
    await expectNotReady();
    expect((await fetch(`http://127.0.0.1:${daemon.httpPort}/healthz`)).status).toBe(200);
    // The scheduler keeps ticking against the dead database, and the process lives through it.
    await waitFor(
      () => after(mark).filter((l) => l.msg === 'tick: could not process pending uploads; the next tick tries again').length >= 2,
      15_000,
      'two scheduler ticks during the outage',
    );
    expect(daemon.exit, daemon.dump()).toBeUndefined();
    await databaseUp();
    await waitUntilReady();
    expect(daemon.exit, daemon.dump()).toBeUndefined();

    // Every error line of the whole file has a known cause, and there are few of them: one per
    // login refused for the outage, one per failed CLOSE, at most one per scheduler pass (imports,
    // reports, also the report pass between ticks) per tick of a dead database, at most one tick
    // more per outage at its edges.
    const errors = daemon.logs.filter((l) => l.level === 'error' || l.level === 'fatal');
    const kinds = {
      login: (l: LogLine) => l.msg === 'SFTP login check failed: database unavailable',
      close: (l: LogLine) => l.msg === 'SFTP request failed' && l.request === 'CLOSE',
      tick: (l: LogLine) =>
        l.msg === 'tick: could not process pending uploads; the next tick tries again' ||
        // the database went away between listing the tenants and claiming for one (per tenant)
        l.msg === "could not process the tenant's pending uploads" ||
        l.msg === 'could not deliver reports; the next pass tries again',
    };
    const unknown = errors.filter((l) => !Object.values(kinds).some((k) => k(l)));
    expect(unknown, 'error lines of no known cause').toEqual([]);
    const refusedLogins = daemon.logs.filter((l) => l.event === 'login.refused' && l.reason === 'internal-error').length;
    const failedCloses = daemon.logs.filter((l) => l.msg === 'upload failed: nothing was received').length;
    expect(errors.filter(kinds.login)).toHaveLength(refusedLogins);
    expect(errors.filter(kinds.close)).toHaveLength(failedCloses);
    const outageSeconds = outages.reduce((s, o) => s + Math.ceil(((o.to ?? Date.now()) - o.from) / 1000), 0);
    const tickBudget = 2 * (outageSeconds * TICKS_PER_SECOND + outages.length);
    expect(errors.filter(kinds.tick).length, `outages: ${outageSeconds} s in ${outages.length}`).toBeLessThanOrEqual(tickBudget);
    expect(daemon.nonJson).toEqual([]);

    // And it still stops cleanly.
    expect(await daemon.stop(), daemon.dump()).toEqual({ code: 0, signal: null });
  });
});
