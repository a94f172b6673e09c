/**
 * `rosterd serve` stops cleanly on SIGTERM (issue 4 and 5, PRODUCT.md §2 "a transfer that is cut
 * off is never imported", §5): an upload in flight finishes within SHUTDOWN_GRACE_SECONDS or is
 * discarded whole; a running import commits or rolls back whole; no claim is left held; the exit
 * code is 0; the next start carries on. Every case runs the real daemon, real OpenSSH sftp (its
 * bandwidth limit makes a transfer slow enough to be caught in flight) and a real Postgres.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { rosterWriterPids, tenantUserCount } from '../support/db.js';
import { receiveUpload, useServeFixture, writeLargeUsersCsv, zoneWhereItIsNight, type ServeProcess } from '../support/serve.js';
import { makeClientKey, sftpBatch, startSftpBatch, waitFor, type ClientKey } from '../support/ssh.js';

const fx = useServeFixture('shutdown');
let zone: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(() => {
  zone = zoneWhereItIsNight();
});

const start = (graceSeconds: number): Promise<ServeProcess> =>
  fx.start({ SHUTDOWN_GRACE_SECONDS: String(graceSeconds), CLAIM_TTL_SECONDS: '10' });

/** A tenant of its own per case (so one case's roster cannot hold another's import), with its own key. */
async function newTenant(subdomain: string): Promise<{ subdomain: string; key: ClientKey }> {
  await createTenant(fx.db.pool, subdomain, { adminEmails: [`it@${subdomain}.example`], timezone: zone });
  const k = await makeClientKey(fx.tmp, 'ed25519', subdomain);
  await addKey(fx.db.pool, subdomain, k.publicLine);
  return { subdomain, key: k };
}

async function uploadsOf(subdomain: string) {
  const { rows } = await fx.db.pool.query<{
    id: string;
    status: string;
    sha256: string;
    bytes: number;
    stored_path: string;
    attempts: number;
    claim_token: string | null;
    counts: { created: number } | null;
  }>(
    `SELECT u.id, u.status, u.sha256, u.bytes, u.stored_path, u.attempts, u.claim_token, u.counts
       FROM uploads u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 ORDER BY u.received_at`,
    [subdomain],
  );
  return rows;
}

const userCount = (subdomain: string) => tenantUserCount(fx.db.pool, subdomain);

async function reportsOf(uploadId: string): Promise<number> {
  const { rows } = await fx.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE upload_id = $1`, [uploadId]);
  return rows[0]?.n ?? -1;
}

const rosterWriters = async () => (await rosterWriterPids(fx.db.pool)).length;

/** The spool file of the transfer in flight, once it holds `atLeast` bytes. */
async function spoolGrowing(atLeast: number): Promise<boolean> {
  const dir = path.join(fx.dataDir, 'spool');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    const st = await fs.stat(path.join(dir, n)).catch(() => undefined);
    if (st && st.size >= atLeast) return true;
  }
  return false;
}

async function waitForOutcome(subdomain: string, id: string, timeoutMs = 60_000) {
  return waitFor(
    async () => {
      const u = (await uploadsOf(subdomain)).find((r) => r.id === id);
      return u && !['pending', 'running'].includes(u.status) ? u : undefined;
    },
    timeoutMs,
    `upload ${id} to be imported`,
  );
}

/** What a client process wrote (stdout and stderr), so far. */
function output(child: ReturnType<typeof startSftpBatch>): () => string {
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  return () => text;
}

/** How a client process ended: its exit code, or the signal that ended it (sftp dies of SIGPIPE when cut off). */
function exitOf(child: ReturnType<typeof startSftpBatch>): Promise<number | NodeJS.Signals> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? (child.signalCode as NodeJS.Signals));
    child.once('exit', (code, signal) => resolve(code ?? (signal as NodeJS.Signals)));
  });
}

describe('SIGTERM during an upload', () => {
  it('a transfer that cannot finish within the grace period is discarded whole; exit 0; the next start carries on', async () => {
    const { subdomain, key: k } = await newTenant('stop-upload-cut');
    const big = path.join(fx.tmp, 'cut-users.csv');
    await writeLargeUsersCsv(big, 100_000, 'cut'); // ~8 MB at 250 KB/s: half a minute
    const daemon = await start(1);
    const sftp = startSftpBatch(daemon.sftpPort, subdomain, k, [`put ${big} users.csv`], ['-l', '2000']);
    await waitFor(() => spoolGrowing(200_000), 30_000, 'the upload to be in flight');

    const t0 = Date.now();
    const exit = await daemon.stop('SIGTERM', 30_000);
    const took = Date.now() - t0;
    expect(exit, daemon.dump()).toEqual({ code: 0, signal: null });
    expect(took, 'exit within the grace period and a little').toBeLessThan(10_000);
    expect(await exitOf(sftp), 'the client learns its upload failed').not.toBe(0);

    // Nothing recorded, nothing visible to the client, no half file anywhere.
    expect(await uploadsOf(subdomain)).toEqual([]);
    const jail = await fs.readdir(path.join(fx.dataDir, 'sftp', subdomain)).catch(() => [] as string[]);
    expect(jail, 'the tenant’s folder').toEqual([]);
    const spool = await fs.readdir(path.join(fx.dataDir, 'spool')).catch(() => [] as string[]);
    expect(spool, 'spool files of the discarded upload').toEqual([]);
    expect(daemon.logs.some((l) => /discarded/.test(String(l.msg)))).toBe(true);

    // The next start: the SIS tries again, and this time the file arrives and is imported.
    const next = await start(1);
    const small = path.join(fx.tmp, 'cut-small.csv');
    await writeLargeUsersCsv(small, 10, 'again');
    const put = await sftpBatch(next.sftpPort, subdomain, k, [`put ${small} users.csv`]);
    expect(put.code, put.stderr).toBe(0);
    const [row] = await uploadsOf(subdomain);
    expect(row?.sha256).toBe(sha256(await fs.readFile(small)));
    const done = await waitForOutcome(subdomain, row?.id ?? '');
    expect(done).toMatchObject({ status: 'succeeded', counts: expect.objectContaining({ created: 10 }) as unknown });
    expect(await next.stop(), next.dump()).toEqual({ code: 0, signal: null });
  }, 120_000);

  it('a transfer that finishes within the grace period is received whole and stays pending, also when Ctrl-C under npm start signals twice at once; the next start imports it', async () => {
    const { subdomain, key: k } = await newTenant('stop-upload-finish');
    const file = path.join(fx.tmp, 'finish-users.csv');
    const bytes = await writeLargeUsersCsv(file, 25_000, 'fin'); // ~2 MB at 500 KB/s: about 4 s
    const daemon = await start(30);
    const sftp = startSftpBatch(daemon.sftpPort, subdomain, k, [`put ${file} users.csv`], ['-l', '4000']);
    const clientSays = output(sftp);
    await waitFor(() => spoolGrowing(100_000), 30_000, 'the upload to be in flight');

    // The terminal's SIGINT and the one npm forwards arrive together: one graceful stop.
    daemon.child.kill('SIGINT');
    const exit = await daemon.stop('SIGINT', 60_000);
    expect(exit, daemon.dump()).toEqual({ code: 0, signal: null });
    expect(daemon.logs.map((l) => l.msg)).not.toContain('second signal: exiting now');
    const clientExit = await exitOf(sftp);
    expect(clientExit, `the client’s upload succeeded; sftp said: ${clientSays()}\nrosterd said:\n${daemon.dump()}`).toBe(0);

    const rows = await uploadsOf(subdomain);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'pending', bytes, sha256: sha256(await fs.readFile(file)), attempts: 0, claim_token: null });
    expect(sha256(await fs.readFile(path.join(fx.dataDir, rows[0]?.stored_path ?? '')))).toBe(sha256(await fs.readFile(file)));
    expect(await userCount(subdomain)).toBe(0);

    const next = await start(30);
    const done = await waitForOutcome(subdomain, rows[0]?.id ?? '');
    expect(done).toMatchObject({ status: 'succeeded', attempts: 0, counts: expect.objectContaining({ created: 25_000 }) as unknown });
    expect(await userCount(subdomain)).toBe(25_000);
    expect(await next.stop(), next.dump()).toEqual({ code: 0, signal: null });
  }, 120_000);
});

/**
 * A tenant with a users.csv of `rows` passwords, and a daemon (grace `graceSeconds`) that is
 * hashing them: staged and planned, its transaction open, fetching passwords to hash.
 */
async function hashingImport(subdomain: string, prefix: string, rows: number, graceSeconds: number) {
  await createTenant(fx.db.pool, subdomain, { adminEmails: [`it@${subdomain}.example`], timezone: zone });
  const lines = Array.from({ length: rows }, (_, i) => `${prefix}${String(i).padStart(4, '0')},Passw0rd-${i}`);
  const id = await receiveUpload(fx.db.pool, fx.dataDir, subdomain, `username,password\n${lines.join('\n')}\n`);
  const daemon = await start(graceSeconds);
  await waitFor(
    async () =>
      ((
        await fx.db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'FETCH % FROM import_passwords'`,
        )
      ).rowCount ?? 0) > 0,
    30_000,
    'the import to hash passwords',
  );
  return { id, daemon };
}

describe('SIGTERM during an import', () => {
  const ROWS = 200_000;

  it('with a grace period shorter than the import: exit 0, committed or rolled back whole, no claim held; the next start imports it once', async () => {
    const subdomain = 'stop-import-short';
    await createTenant(fx.db.pool, subdomain, { adminEmails: [`it@${subdomain}.example`], timezone: zone });
    const file = path.join(fx.tmp, 'short-users.csv');
    await writeLargeUsersCsv(file, ROWS, 'short');
    const id = await receiveUpload(fx.db.pool, fx.dataDir, subdomain, await fs.readFile(file));

    const daemon = await start(1);
    await waitFor(async () => (await uploadsOf(subdomain))[0]?.status === 'running', 30_000, 'the import to start');
    await waitFor(
      async () => (await rosterWriters()) > 0 || (await uploadsOf(subdomain))[0]?.status !== 'running',
      60_000,
      'the import to write users',
    );
    const t0 = Date.now();
    const exit = await daemon.stop('SIGTERM', 60_000);
    const took = Date.now() - t0;
    expect(exit, daemon.dump()).toEqual({ code: 0, signal: null });

    // Whatever the process left is whole: its transaction is over (committed or rolled back).
    await waitFor(async () => (await rosterWriters()) === 0, 60_000, 'the import’s transaction to end');
    const [after] = await uploadsOf(subdomain);
    expect(after?.claim_token, 'a claim left held').toBeNull();
    expect(['succeeded', 'pending']).toContain(after?.status);
    if (after?.status === 'succeeded') {
      expect(await userCount(subdomain)).toBe(ROWS);
      expect(await reportsOf(id)).toBe(1);
    } else {
      expect(await userCount(subdomain)).toBe(0);
      expect(await reportsOf(id)).toBe(0);
      expect(after?.attempts, 'a shutdown is not a failed attempt').toBe(0);
    }
    // The grace period was 1 s; an operator's SIGTERM should not wait for the whole import.
    expect(took, `stopping took ${took} ms with SHUTDOWN_GRACE_SECONDS=1`).toBeLessThan(5_000);

    const next = await start(30);
    const done = await waitForOutcome(subdomain, id, 90_000);
    expect(done).toMatchObject({ status: 'succeeded', claim_token: null, counts: expect.objectContaining({ created: ROWS }) as unknown });
    expect(await userCount(subdomain)).toBe(ROWS);
    expect(await reportsOf(id)).toBe(1);
    const imported = [...daemon.logs, ...next.logs].filter((l) => l.msg === 'imported' && l.uploadId === id);
    expect(imported).toHaveLength(1);
    expect(await next.stop(), next.dump()).toEqual({ code: 0, signal: null });
  }, 180_000);

  it('while passwords are being hashed: the hashing stops, the import rolls back, exit 0 within the grace period', async () => {
    // Before the fix, closing the hashing pool left the import waiting for its hashes for ever: the
    // process never exited, and its open transaction held the tenant's lock on every replica.
    const subdomain = 'stop-hashing';
    // Hashing 300 passwords takes ~20 s.
    const { id, daemon } = await hashingImport(subdomain, 'hash', 300, 1);
    const t0 = Date.now();
    const exit = await daemon.stop('SIGTERM', 30_000);
    const took = Date.now() - t0;
    expect(exit, daemon.dump()).toEqual({ code: 0, signal: null });
    expect(took, `stopping took ${took} ms with SHUTDOWN_GRACE_SECONDS=1`).toBeLessThan(6_000);
    await waitFor(async () => (await rosterWriters()) === 0, 30_000, 'the import’s transaction to end');
    const [after] = await uploadsOf(subdomain);
    expect(after).toMatchObject({ status: 'pending', claim_token: null, attempts: 0 });
    expect(await userCount(subdomain)).toBe(0);
    expect(await reportsOf(id)).toBe(0);
    // Its 20 s of hashing would hold up the next cases' daemons: out of the way.
    await fx.db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = $1`, [subdomain]);
  }, 90_000);

  it('with time to finish: the import commits, then the process exits 0 with no claim held', async () => {
    const subdomain = 'stop-import-long';
    await createTenant(fx.db.pool, subdomain, { adminEmails: [`it@${subdomain}.example`], timezone: zone });
    const file = path.join(fx.tmp, 'long-users.csv');
    await writeLargeUsersCsv(file, ROWS, 'long');
    const id = await receiveUpload(fx.db.pool, fx.dataDir, subdomain, await fs.readFile(file));

    const daemon = await start(120);
    await waitFor(async () => (await uploadsOf(subdomain))[0]?.status === 'running', 30_000, 'the import to start');
    const exit = await daemon.stop('SIGTERM', 120_000);
    expect(exit, daemon.dump()).toEqual({ code: 0, signal: null });

    const [after] = await uploadsOf(subdomain);
    expect(after).toMatchObject({
      status: 'succeeded',
      claim_token: null,
      attempts: 0,
      counts: expect.objectContaining({ created: ROWS }) as unknown,
    });
    expect(await userCount(subdomain)).toBe(ROWS);
    expect(await reportsOf(id)).toBe(1);
    expect(daemon.logs.filter((l) => l.msg === 'imported' && l.uploadId === id)).toHaveLength(1);
  }, 180_000);

  it('a second signal forces: exit 1 at once, nothing partial, and the next start imports the upload once', async () => {
    const subdomain = 'stop-import-forced';
    // Passwords to hash (~10 s on one worker): the import is still running a second after the first signal.
    const { id, daemon } = await hashingImport(subdomain, 'forced', 150, 120);
    daemon.child.kill('SIGTERM');
    await daemon.waitForLog((l) => l.msg === 'rosterd stopping', 5_000, "'rosterd stopping'");
    // A second signal within a second is the first one delivered twice (npm start), not the operator's.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect((await uploadsOf(subdomain))[0]?.status, 'the import finished before the second signal').toBe('running');
    const t0 = Date.now();
    const exit = await daemon.stop('SIGTERM', 10_000);
    expect(exit, daemon.dump()).toEqual({ code: 1, signal: null });
    expect(Date.now() - t0, 'the second signal does not wait for the grace period').toBeLessThan(3_000);
    expect(daemon.logs.map((l) => l.msg)).toContain('second signal: exiting now');

    await waitFor(async () => (await rosterWriters()) === 0, 60_000, 'the import’s transaction to end');
    expect(await userCount(subdomain)).toBe(0);
    expect(await reportsOf(id)).toBe(0);

    // Like a crash: the claim (if still held) is taken back at the next start's first tick (its
    // lock went with the process), and the upload imported.
    const next = await start(30);
    const done = await waitForOutcome(subdomain, id, 90_000);
    expect(done).toMatchObject({ status: 'succeeded', claim_token: null, counts: expect.objectContaining({ created: 150 }) as unknown });
    expect(await userCount(subdomain)).toBe(150);
    expect(await reportsOf(id)).toBe(1);
    expect(await next.stop(), next.dump()).toEqual({ code: 0, signal: null });
  }, 180_000);
});
