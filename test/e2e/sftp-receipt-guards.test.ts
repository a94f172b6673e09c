/**
 * What may not become a received upload (PRODUCT.md §2 "Receipt"), and logins that must not get
 * an address blocked: a session whose key was revoked (or tenant suspended) after it logged in;
 * a resume or append onto the previous complete file; two sessions renaming one temporary file at
 * once; clients that offer several keys before the right one.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Channel, SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { revokeKey } from '../../src/store/keys.js';
import { updateTenant } from '../../src/store/tenants.js';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  makeClientKey,
  registerTenants,
  rejection,
  sftpBatch,
  sftpP,
  ssh2Sftp,
  startSftpServer,
  waitFor,
  whenClosed,
  type ClientKey,
  type TestSftpServer,
} from '../support/ssh.js';

const TENANTS = ['revoked-usd', 'revoked2-usd', 'suspended-usd', 'resume-usd', 'race-usd', 'ext-usd', 'agent-usd', 'shown-usd'] as const;
type Tenant = (typeof TENANTS)[number];

let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
let keys: Record<Tenant, ClientKey>;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const uploads = (tenant: Tenant) => listUploads(db.pool, { tenant });
const connect = (tenant: Tenant) => ssh2Sftp({ port: srv.port, username: tenant, privateKey: keys[tenant].privateKey });
const csvOf = (n: number, prefix = 'user') =>
  Buffer.from('username,email\n' + Array.from({ length: n }, (_, i) => `${prefix}${i + 1000},${prefix}${i}@x.org\n`).join(''));

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-guards-'));
  dataDir = path.join(tmp, 'data');
  keys = await registerTenants(db.pool, tmp, TENANTS);
  // A low block threshold, so that counting every offered key would show within a few logins.
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_MAX_AUTH_FAILURES: '3' } });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

it('a key revoked after login: the open session can neither deliver nor open a file, and is ended', async () => {
  const s = await connect('revoked-usd');
  const h = await sftpP.open(s.sftp, 'users.csv', 'w');
  await sftpP.write(s.sftp, h, csvOf(3), 0);
  const fingerprint = srv.logs.find((l) => l.event === 'login.accepted' && l.tenant === 'revoked-usd')?.fingerprint as string;
  await revokeKey(db.pool, fingerprint);
  const closed = whenClosed(s.client);
  const err = await rejection(sftpP.close(s.sftp, h));
  expect(err.message).toBe('this key was revoked after you logged in: nothing was received');
  await closed; // the server ends the connection
  expect(await uploads('revoked-usd')).toEqual([]);
  expect(srv.logs.some((l) => l.event === 'access.withdrawn' && l.reason === 'this key was revoked')).toBe(true);
});

it.each([
  ['remove', (s: SFTPWrapper) => sftpP.unlink(s, 'users.csv')],
  ['rename', (s: SFTPWrapper) => sftpP.rename(s, 'users.csv', 'users.csv.filepart')],
  ['list', (s: SFTPWrapper) => sftpP.readdir(s, '/')],
  ['stat', (s: SFTPWrapper) => sftpP.stat(s, 'users.csv')],
])('a key revoked after login: the open session may not %s either, and is ended', async (_what, request) => {
  const s = await connect('revoked2-usd');
  await sftpP.writeFile(s.sftp, 'users.csv', csvOf(2));
  const fingerprint = srv.logs.find((l) => l.event === 'login.accepted' && l.tenant === 'revoked2-usd')?.fingerprint as string;
  await revokeKey(db.pool, fingerprint);
  const closed = whenClosed(s.client);
  const err = await rejection(request(s.sftp));
  expect(err.message).toBe('this key was revoked after you logged in');
  await closed;
  // The district's file is still there, as it was.
  await expect(fs.stat(path.join(dataDir, 'sftp', 'revoked2-usd', 'users.csv'))).resolves.toMatchObject({ size: csvOf(2).length });
  await db.pool.query('UPDATE ssh_keys SET revoked_at = NULL WHERE fingerprint = $1', [fingerprint]);
});

it('a tenant suspended after login: reading back its files is refused too', async () => {
  const s = await connect('suspended-usd');
  await sftpP.writeFile(s.sftp, 'users.csv', csvOf(2));
  expect(await uploads('suspended-usd')).toHaveLength(1);
  await updateTenant(db.pool, 'suspended-usd', { status: 'suspended' });
  const err = await rejection(sftpP.readFile(s.sftp, 'users.csv'));
  expect(err.message).toBe("the district's account was suspended after you logged in");
  await updateTenant(db.pool, 'suspended-usd', { status: 'active' });
  s.end();
});

it('resuming or appending onto the previous complete users.csv is refused; a fresh write without TRUNC that covers it is not', async () => {
  const v1 = csvOf(20, 'old');
  const v2 = csvOf(30, 'new');
  const s = await connect('resume-usd');
  await sftpP.writeFile(s.sftp, 'users.csv', v1);

  // PuTTY's `reput`, `lftp put -c`: open without TRUNC or APPEND, continue at the remote size.
  let h = await sftpP.open(s.sftp, 'users.csv', 'r+');
  await sftpP.write(s.sftp, h, v2.subarray(v1.length), v1.length);
  let err = await rejection(sftpP.close(s.sftp, h));
  expect(err.message).toMatch(/^this would keep part of the previous file: rosterd does not resume or append to an upload/);
  // A shorter file written over it without TRUNC would keep the old tail.
  h = await sftpP.open(s.sftp, 'users.csv', 'r+');
  await sftpP.write(s.sftp, h, v1.subarray(0, 40), 0);
  err = await rejection(sftpP.close(s.sftp, h));
  expect(err.message).toMatch(/^this would keep part of the previous file/);
  expect(err.code).toBe(8); // OP_UNSUPPORTED: "Operation unsupported" where only the status is shown
  // Append mode is refused at OPEN (curl -C - ignores a failed CLOSE; see sftp-upload.test.ts).
  err = await rejection(sftpP.open(s.sftp, 'users.csv', 'a'));
  expect(err.code).toBe(8);
  expect(err.message).toMatch(/^rosterd does not resume or append to an upload/);
  expect(await uploads('resume-usd')).toHaveLength(1);
  expect(await sftpP.readFile(s.sftp, 'users.csv')).toEqual(v1);

  // The whole new file written from 0 without TRUNC replaces every old byte: received.
  h = await sftpP.open(s.sftp, 'users.csv', 'r+');
  await sftpP.write(s.sftp, h, v2, 0);
  await sftpP.close(s.sftp, h);
  expect(await sftpP.readFile(s.sftp, 'users.csv')).toEqual(v2);

  // A temporary file may be continued (WinSCP resumes its own .filepart), then renamed.
  h = await sftpP.open(s.sftp, 'users.csv.filepart', 'w');
  await sftpP.write(s.sftp, h, v1.subarray(0, 100), 0);
  await sftpP.close(s.sftp, h);
  h = await sftpP.open(s.sftp, 'users.csv.filepart', 'r+');
  await sftpP.write(s.sftp, h, v1.subarray(100), 100);
  await sftpP.close(s.sftp, h);
  await sftpP.rename(s.sftp, 'users.csv.filepart', 'users.csv');
  const list = await uploads('resume-usd');
  expect(list.map((u) => u.sha256).sort()).toEqual([sha256(v1), sha256(v1), sha256(v2)].sort());
  s.end();
});

it('two sessions renaming one temporary file at once: one receives it, intact; the other is told it is gone', async () => {
  const [a, b] = await Promise.all([connect('race-usd'), connect('race-usd')]);
  for (let round = 0; round < 15; round++) {
    const [x, y] = [csvOf(50 + round, `a${round}x`), csvOf(60 + round, `b${round}x`)];
    await Promise.all([sftpP.writeFile(a.sftp, 'users.csv.filepart', x), sftpP.writeFile(b.sftp, 'users.csv.filepart', y)]);
    const outcomes = await Promise.allSettled([
      sftpP.rename(a.sftp, 'users.csv.filepart', 'users.csv'),
      sftpP.rename(b.sftp, 'users.csv.filepart', 'users.csv'),
    ]);
    const ok = outcomes.filter((o) => o.status === 'fulfilled').length;
    expect(ok).toBe(1);
    const refused = outcomes.find((o) => o.status === 'rejected');
    expect((refused as PromiseRejectedResult).reason.message).toMatch(/no such file/i);
  }
  const list = await uploads('race-usd');
  expect(list).toHaveLength(15);
  // Every recorded SHA-256 is its stored copy's.
  for (const u of list) {
    const { rows } = await db.pool.query<{ stored_path: string }>('SELECT stored_path FROM uploads WHERE id = $1', [u.id]);
    expect(sha256(await fs.readFile(path.join(dataDir, rows[0]!.stored_path)))).toBe(u.sha256);
  }
  expect((await fs.readdir(path.join(dataDir, 'spool'))).filter((n) => n.endsWith('.renaming'))).toEqual([]);
  a.end();
  b.end();
});

it('temporary files never renamed are bounded per tenant, and a size cannot be set on a file by path', async () => {
  const s = await connect('race-usd');
  const before = (await sftpP.readdir(s.sftp, '/')).filter((e) => e.filename !== 'users.csv').length;
  expect(before).toBe(0);
  for (let i = 0; i < 16; i++) await sftpP.writeFile(s.sftp, `users.csv.t${i}.tmp`, csvOf(1));
  const err = await rejection(sftpP.writeFile(s.sftp, 'users.csv.t16.tmp', csvOf(1)));
  expect(err.message).toMatch(/^this folder already holds 16 temporary files that were never renamed; rename them onto users\.csv/);
  // An existing temporary file may still be rewritten, and renaming one frees a place.
  await sftpP.writeFile(s.sftp, 'users.csv.t0.tmp', csvOf(2));
  await sftpP.rename(s.sftp, 'users.csv.t0.tmp', 'users.csv');
  await sftpP.writeFile(s.sftp, 'users.csv.t16.tmp', csvOf(1));

  const setstat = (p: string, attrs: Record<string, number>) =>
    new Promise<void>((res, rej) => s.sftp.setstat(p, attrs, (e) => (e ? rej(e) : res())));
  const size = (await sftpP.stat(s.sftp, 'users.csv')).size;
  expect((await rejection(setstat('users.csv', { size: 0 }))).message).toBe(
    'a file here changes only by uploading it again; its size cannot be set',
  );
  await setstat('users.csv', { size, mode: 0o644, atime: 1_700_000_000, mtime: 1_700_000_000 }); // `put -p`, WinSCP: fine
  expect((await sftpP.stat(s.sftp, 'users.csv')).size).toBe(size);
  s.end();
});

it('posix-rename@openssh.com (paramiko posix_rename) receives like a rename; another extension is refused by name', async () => {
  const s = await connect('ext-usd');
  const content = csvOf(7, 'px');
  await sftpP.writeFile(s.sftp, 'users.csv.px.tmp', content);
  const channel = await new Promise<Channel>((res, rej) => s.client.subsys('sftp', (e, ch) => (e ? rej(e) : res(ch))));
  const received: Buffer[] = [];
  channel.on('data', (d: Buffer) => received.push(d));
  const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  const str = (v: string) => Buffer.concat([u32(Buffer.byteLength(v)), Buffer.from(v)]);
  const packet = (type: number, ...fields: Buffer[]) => {
    const body = Buffer.concat(fields);
    return Buffer.concat([u32(body.length + 1), Buffer.from([type]), body]);
  };
  /** STATUS (101) reply to request `id`: its code and message. */
  const status = (id: number) => {
    const all = Buffer.concat(received);
    for (let p = 0; p + 4 <= all.length; p += 4 + all.readUInt32BE(p)) {
      const f = all.subarray(p + 4, p + 4 + all.readUInt32BE(p));
      if (f[0] === 101 && f.readUInt32BE(1) === id)
        return { code: f.readUInt32BE(5), message: f.toString('utf8', 13, 13 + f.readUInt32BE(9)) };
    }
    return null;
  };
  const before = (await uploads('ext-usd')).length;
  channel.write(packet(1, u32(3))); // INIT, version 3
  channel.write(packet(200, u32(7), str('posix-rename@openssh.com'), str('users.csv.px.tmp'), str('users.csv')));
  channel.write(packet(200, u32(8), str('statvfs@openssh.com'), str('/')));
  expect(await waitFor(() => status(7))).toEqual({ code: 0, message: expect.any(String) });
  expect(await waitFor(() => status(8))).toEqual({ code: 8, message: 'the SFTP extension statvfs@openssh.com is not supported here' });
  const list = await uploads('ext-usd');
  expect(list).toHaveLength(before + 1);
  expect(list[0]?.sha256).toBe(sha256(content));
  s.end();
});

it('a file received that cannot be shown under its name is still received once, and the client is told OK (not to send it again)', async () => {
  // What a full disk that cannot grow the folder does to the last step, made here by a folder in
  // the file's place: the row is committed by then, so a failure said to the client was a lie
  // that queued the file twice when it was sent again.
  const root = path.join(dataDir, 'sftp', 'shown-usd');
  const s = await connect('shown-usd');
  try {
    const content = csvOf(3, 'shown');
    const h = await sftpP.open(s.sftp, '/users.csv', 'w');
    await sftpP.write(s.sftp, h, content, 0);
    await fs.mkdir(path.join(root, 'users.csv', 'in-the-way'), { recursive: true });
    await sftpP.close(s.sftp, h);
    const received = await uploads('shown-usd');
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ status: 'pending', sha256: sha256(content), bytes: content.length });
    expect(sha256(await fs.readFile(path.join(dataDir, received[0]!.storedPath)))).toBe(sha256(content));
    expect(srv.logs.some((l) => String(l.msg).startsWith('upload received, but it cannot be shown'))).toBe(true);
    expect((await fs.readdir(path.join(dataDir, 'spool'))).filter((n) => n.startsWith('shown-usd'))).toEqual([]);
  } finally {
    s.end();
    await fs.rm(path.join(root, 'users.csv'), { recursive: true, force: true });
  }
});

it('a client that offers another key before the right one logs in night after night without the address being blocked', async () => {
  const other = await makeClientKey(tmp, 'ed25519', 'not-registered');
  // Last in this file: it ends with 127.0.0.1 blocked.
  // More logins than SFTP_MAX_AUTH_FAILURES (3), each offering the unregistered key first.
  for (let night = 0; night < 5; night++) {
    const r = await sftpBatch(srv.port, 'agent-usd', other, ['ls'], ['-i', keys['agent-usd'].privatePath]);
    expect(r.code, r.stderr).toBe(0);
  }
  // Key queries of connections that never log in still count, once per connection.
  for (let i = 0; i < 3; i++) await sftpBatch(srv.port, 'agent-usd', other, ['ls']);
  await waitFor(async () => srv.logs.some((l) => l.event === 'login.address_blocked'));
  const blocked = await sftpBatch(srv.port, 'agent-usd', keys['agent-usd'], ['ls']);
  expect(blocked.code).not.toBe(0);
});
