import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  registerTenants,
  randomFile,
  rejection,
  sftpBatch,
  sftpP,
  ssh2Sftp,
  startSftpBatch,
  startSftpServer,
  waitFor,
  whenClosed,
  type ClientKey,
  type TestSftpServer,
} from '../support/ssh.js';

/**
 * Transfers that do not end well, and the server's own limits: a transfer cut off is never
 * queued, a file over MAX_UPLOAD_BYTES is refused, idle clients are dropped, shutdown drains.
 */

const TENANTS = ['alpha-usd', 'beta-usd', 'gamma-usd', 'delta-usd'] as const;
const TENANT = TENANTS[0];
const MAX = 4 * 1024 * 1024;

let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
let keys: Record<(typeof TENANTS)[number], ClientKey>;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const spoolFiles = async () => (await fs.readdir(path.join(dataDir, 'spool')).catch(() => [])).filter((n) => n.endsWith('.part'));
const uploadCount = async (tenant: string = TENANT) => (await listUploads(db.pool, { tenant })).length;
const connect = (tenant: (typeof TENANTS)[number] = TENANT, port = srv.port) =>
  ssh2Sftp({ port, username: tenant, privateKey: keys[tenant].privateKey });

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-transfers-'));
  dataDir = path.join(tmp, 'data');
  keys = await registerTenants(db.pool, tmp, TENANTS);
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { MAX_UPLOAD_BYTES: String(MAX) } });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('cut-off transfers', () => {
  it('an sftp killed mid-upload leaves nothing queued, while other tenants keep uploading', async () => {
    const big = await randomFile(tmp, 'big.csv', 3 * 1024 * 1024);
    const before = await uploadCount();
    // 2000 Kbit/s: the upload takes about 12 s, so it is surely in flight when killed.
    const child = startSftpBatch(srv.port, TENANT, keys[TENANT], [`put ${big} /users.csv`], ['-l', '2000']);
    await waitFor(async () => (await spoolFiles()).length > 0, 10_000, 'the upload to start');
    // Meanwhile, three other tenants upload at once.
    const others = await Promise.all(
      TENANTS.slice(1).map(async (t) => {
        const f = await randomFile(tmp, `${t}.csv`, 200_000);
        return { t, r: await sftpBatch(srv.port, t, keys[t], [`put ${f} /users.csv`]), sha: sha256(await fs.readFile(f)) };
      }),
    );
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    await waitFor(async () => (await spoolFiles()).length === 0, 10_000, 'the cut-off spool file to be removed');
    expect(await uploadCount()).toBe(before);
    await expect(fs.stat(path.join(dataDir, 'sftp', TENANT, 'users.csv'))).rejects.toThrow(/ENOENT/);
    for (const { t, r, sha } of others) {
      expect(r.code, `${t}: ${r.stderr}`).toBe(0);
      expect((await listUploads(db.pool, { tenant: t }))[0]).toMatchObject({ status: 'pending', sha256: sha });
    }
    expect(srv.logs).toContainEqual(expect.objectContaining({ msg: 'upload discarded: the file was never closed', tenant: TENANT }));
  });

  it('a client that drops its TCP connection mid-upload leaves nothing queued and does not disturb the daemon', async () => {
    const before = await uploadCount();
    const s = await connect();
    const h = await sftpP.open(s.sftp, '/users.csv', 'w');
    await sftpP.write(s.sftp, h, Buffer.alloc(256 * 1024, 'x'), 0);
    (s.client as unknown as { _sock: { destroy(): void } })._sock.destroy();
    await waitFor(async () => (await spoolFiles()).length === 0, 10_000, 'the spool file to be removed');
    expect(await uploadCount()).toBe(before);
    const f = await randomFile(tmp, 'after-drop.csv', 1000);
    expect((await sftpBatch(srv.port, TENANT, keys[TENANT], [`put ${f} /users.csv`])).code).toBe(0);
    expect(await uploadCount()).toBe(before + 1);
  });
});

describe('MAX_UPLOAD_BYTES', () => {
  it('refuses a larger upload with a clear message and queues nothing', async () => {
    const before = await uploadCount();
    const previous = await fs.readFile(path.join(dataDir, 'sftp', TENANT, 'users.csv'));
    const tooBig = await randomFile(tmp, 'too-big.csv', MAX + 1);
    const r = await sftpBatch(srv.port, TENANT, keys[TENANT], [`put ${tooBig} /users.csv`]);
    expect(r.code).not.toBe(0);
    const s = await connect();
    try {
      const h = await sftpP.open(s.sftp, '/users.csv', 'w');
      await sftpP.write(s.sftp, h, Buffer.alloc(1024), 0);
      const err = await rejection(sftpP.write(s.sftp, h, Buffer.alloc(1024), MAX));
      expect(err.message).toMatch(new RegExp(`larger than the limit of ${MAX} bytes \\(MAX_UPLOAD_BYTES\\)`));
      expect((await rejection(sftpP.close(s.sftp, h))).message).toMatch(/MAX_UPLOAD_BYTES/);
    } finally {
      s.end();
    }
    expect(await uploadCount()).toBe(before);
    expect(await fs.readFile(path.join(dataDir, 'sftp', TENANT, 'users.csv'))).toEqual(previous);
    await waitFor(async () => (await spoolFiles()).length === 0, 5000, 'the spool to be empty');
  });

  it('`put -p` (times and mode kept, sent as SETSTAT/FSETSTAT) uploads, and the file keeps its own read-only mode', async () => {
    const local = await randomFile(tmp, 'keep-times.csv', 50_000);
    await fs.chmod(local, 0o755);
    await fs.utimes(local, new Date('2026-01-02T03:04:05Z'), new Date('2026-01-02T03:04:05Z'));
    const before = (await listUploads(db.pool, { tenant: TENANT })).length;
    const r = await sftpBatch(srv.port, TENANT, keys[TENANT], [`put -p ${local} /users.csv`, 'ls -l /users.csv']);
    expect(r.code, r.stderr).toBe(0);
    const uploads = await listUploads(db.pool, { tenant: TENANT });
    expect(uploads).toHaveLength(before + 1);
    expect(uploads[0]).toMatchObject({ bytes: 50_000, sha256: sha256(await fs.readFile(local)), status: 'pending' });
    // The client's 0755 was accepted and not applied: a district cannot make its files executable.
    expect(r.stdout).toMatch(/^-r--------\s.*users\.csv$/m);
  });

  it('accepts a file of exactly MAX_UPLOAD_BYTES', async () => {
    const exact = await randomFile(tmp, 'exact.csv', MAX);
    const r = await sftpBatch(srv.port, TENANT, keys[TENANT], [`put ${exact} /users.csv`]);
    expect(r.code, r.stderr).toBe(0);
    expect((await listUploads(db.pool, { tenant: TENANT }))[0]).toMatchObject({ bytes: MAX, sha256: sha256(await fs.readFile(exact)) });
  });
});

describe('idle timeout and shutdown', () => {
  it('closes a connection idle for SFTP_IDLE_TIMEOUT_SECONDS', async () => {
    const idle = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_IDLE_TIMEOUT_SECONDS: '1' } });
    try {
      const s = await connect(TENANT, idle.port);
      const started = Date.now();
      await whenClosed(s.client);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(idle.logs).toContainEqual(expect.objectContaining({ msg: 'SFTP connection ending', reason: expect.stringMatching(/idle/) }));
    } finally {
      await idle.close();
    }
  });

  it('also closes one that went quiet halfway through an upload, and queues nothing', async () => {
    const idle = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_IDLE_TIMEOUT_SECONDS: '1' } });
    try {
      const before = await uploadCount();
      const s = await connect(TENANT, idle.port);
      const h = await sftpP.open(s.sftp, '/users.csv', 'w');
      // Less than the server's write buffer: these bytes wait in memory, not on disk.
      await sftpP.write(s.sftp, h, Buffer.alloc(100 * 1024, 'x'), 0);
      const started = Date.now();
      await whenClosed(s.client);
      expect(Date.now() - started).toBeLessThan(6000);
      await waitFor(async () => (await spoolFiles()).length === 0, 5000, 'the spool file to be removed');
      expect(await uploadCount()).toBe(before);
      expect(idle.logs).toContainEqual(expect.objectContaining({ msg: 'SFTP connection ending', reason: expect.stringMatching(/idle/) }));
    } finally {
      await idle.close();
    }
  });

  it('close() stops accepting, lets an upload in flight finish, ends idle sessions at once', async () => {
    const server = await startSftpServer({ pool: db.pool, dataDir });
    const before = await uploadCount('beta-usd');
    const uploading = await connect('beta-usd', server.port);
    const idle = await connect('gamma-usd', server.port);
    const idleClosed = whenClosed(idle.client);
    const h = await sftpP.open(uploading.sftp, '/users.csv', 'w');
    await sftpP.write(uploading.sftp, h, Buffer.from('username\n'), 0);
    const closing = server.close(10_000);
    await idleClosed;
    await expect(connect('delta-usd', server.port)).rejects.toThrow();
    await sftpP.write(uploading.sftp, h, Buffer.from('abcd\n'), 9);
    await sftpP.close(uploading.sftp, h);
    await closing;
    expect(await uploadCount('beta-usd')).toBe(before + 1);
    expect((await listUploads(db.pool, { tenant: 'beta-usd' }))[0]).toMatchObject({
      bytes: 14,
      sha256: sha256(Buffer.from('username\nabcd\n')),
    });
    await server.close(); // idempotent
  });

  it('close() discards an upload not finished within the grace period', async () => {
    const server = await startSftpServer({ pool: db.pool, dataDir });
    const before = await uploadCount('delta-usd');
    const s = await connect('delta-usd', server.port);
    const h = await sftpP.open(s.sftp, '/users.csv', 'w');
    await sftpP.write(s.sftp, h, Buffer.from('username\n'), 0);
    const started = Date.now();
    await server.close(300);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await uploadCount('delta-usd')).toBe(before);
    expect(await spoolFiles()).toEqual([]);
  });
});
