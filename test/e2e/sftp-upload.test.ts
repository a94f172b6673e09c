import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { listUploads, type Upload } from '../../src/store/uploads.js';
import { fingerprintOfBlob, parsePublicKey } from '../../src/sftp/public-key.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { cachedBytes } from '../support/page-cache.js';
import {
  curlSftp,
  makeClientKey,
  randomFile,
  rejection,
  scpDownload,
  scpUpload,
  sftpBatch,
  sftpP,
  ssh2Sftp,
  repeatedKeys,
  run,
  sshCommand,
  sshOptions,
  startSftpServer,
  type ClientKey,
  type ClientKeyType,
  type TestSftpServer,
} from '../support/ssh.js';

/**
 * Uploads with the real clients SIS systems use (OpenSSH sftp and scp, curl/libssh2), the jail,
 * and the names a tenant may write (PRODUCT.md §2).
 */

const TENANT = 'lincoln-usd';
const OTHER = 'other-usd';
const KEY_TYPES: ClientKeyType[] = ['ed25519', 'ecdsa', 'rsa'];

let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
const keys = {} as Record<ClientKeyType, ClientKey>;
let otherKey: ClientKey;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const fingerprint = (k: ClientKey) => parsePublicKey(k.publicLine).fingerprint;

async function latestUpload(tenant = TENANT): Promise<Upload | undefined> {
  return (await listUploads(db.pool, { tenant, limit: 1 }))[0];
}

/** The upload row of a file just sent, with its immutable copy checked against the file. */
async function expectReceived(local: string, key: ClientKey, fileName = 'users.csv'): Promise<Upload> {
  const content = await fs.readFile(local);
  const upload = await latestUpload();
  expect(upload, 'an upload row').toBeDefined();
  expect(upload).toMatchObject({
    tenant: TENANT,
    fileName,
    status: 'pending',
    bytes: content.length,
    sha256: sha256(content),
    keyFingerprint: fingerprint(key),
    remoteAddress: '127.0.0.1',
    source: 'sftp',
  });
  const stored = path.join(dataDir, upload?.storedPath ?? '');
  expect(stored.startsWith(path.join(dataDir, 'uploads', TENANT) + path.sep)).toBe(true);
  expect((await fs.stat(stored)).mode & 0o777).toBe(0o400);
  expect(sha256(await fs.readFile(stored))).toBe(sha256(content));
  return upload as Upload;
}

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-upload-'));
  dataDir = path.join(tmp, 'data');
  const made = await Promise.all([...KEY_TYPES.map((t) => makeClientKey(tmp, t)), makeClientKey(tmp, 'ed25519', 'other')]);
  KEY_TYPES.forEach((t, i) => (keys[t] = made[i] as ClientKey));
  otherKey = made[3] as ClientKey;
  await createTenant(db.pool, TENANT, { adminEmails: ['it@lincoln.example'] });
  await createTenant(db.pool, OTHER, { adminEmails: ['it@other.example'] });
  for (const k of KEY_TYPES) await addKey(db.pool, TENANT, keys[k].publicLine);
  await addKey(db.pool, OTHER, otherKey.publicLine);
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_MAX_AUTH_FAILURES: '1000' } });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('OpenSSH sftp', () => {
  it.each(KEY_TYPES)('uploads users.csv with an %s key, reads it back byte-identical, queues it pending', async (type) => {
    const key = keys[type];
    const local = await randomFile(tmp, `sftp-${type}.csv`, 300_000 + Math.floor(Math.random() * 1000));
    const back = path.join(tmp, `sftp-${type}.back`);
    const r = await sftpBatch(srv.port, TENANT, key, [`put ${local} /users.csv`, `get /users.csv ${back}`, 'ls -l /']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(sha256(await fs.readFile(back))).toBe(sha256(await fs.readFile(local)));
    expect(r.stdout).toMatch(/-r-------- +1 lincoln-usd +lincoln-usd +\d+ \w{3} +\d+ \d\d:\d\d users\.csv/);
    await expectReceived(local, key);
  });

  it('uploads groups.csv, an empty file, and with a relative path', async () => {
    const local = await randomFile(tmp, 'groups-src.csv', 1234);
    const empty = path.join(tmp, 'empty.csv');
    await fs.writeFile(empty, '');
    let r = await sftpBatch(srv.port, TENANT, keys.ed25519, [`put ${local} groups.csv`]);
    expect(r.code).toBe(0);
    await expectReceived(local, keys.ed25519, 'groups.csv');
    r = await sftpBatch(srv.port, TENANT, keys.ed25519, [`put ${empty} users.csv`]);
    expect(r.code).toBe(0);
    await expectReceived(empty, keys.ed25519);
  });

  it('a script that does `cd ..` at / stays at / and its upload goes through', async () => {
    const local = await randomFile(tmp, 'cd-up-src.csv', 2000);
    const r = await sftpBatch(srv.port, TENANT, keys.ed25519, ['cd ..', 'pwd', `put ${local} users.csv`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Remote working directory: \/$/m);
    await expectReceived(local, keys.ed25519);
  });

  it('renames an uploaded users.csv.filepart onto users.csv (WinSCP style), replacing the old one', async () => {
    const local = await randomFile(tmp, 'filepart-src.csv', 100_000);
    const before = (await listUploads(db.pool, { tenant: TENANT })).length;
    const r = await sftpBatch(srv.port, TENANT, keys.ed25519, [
      `put ${local} /users.csv.filepart`,
      'rename /users.csv.filepart /users.csv',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect((await listUploads(db.pool, { tenant: TENANT })).length).toBe(before + 1);
    await expectReceived(local, keys.ed25519);
    const visible = await fs.readdir(path.join(dataDir, 'sftp', TENANT));
    expect(visible).not.toContain('users.csv.filepart');
    expect(sha256(await fs.readFile(path.join(dataDir, 'sftp', TENANT, 'users.csv')))).toBe(sha256(await fs.readFile(local)));
  });

  it('refuses to write any other name, and the upload is not queued', async () => {
    const local = await randomFile(tmp, 'notes.txt', 100);
    const before = (await listUploads(db.pool, { tenant: TENANT })).length;
    const r = await sftpBatch(srv.port, TENANT, keys.ed25519, [`put ${local} /notes.txt`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    expect((await listUploads(db.pool, { tenant: TENANT })).length).toBe(before);
    expect(await fs.readdir(path.join(dataDir, 'sftp', TENANT))).not.toContain('notes.txt');
  });

  it('no log line of all of the above names a field twice', () => {
    expect(srv.logs.some((l) => l.msg === 'upload refused: name not accepted' && l.tenant === TENANT)).toBe(true);
    expect(repeatedKeys('{"a":1,"b":{"a":2},"s":"\\"a\\":","a":3}')).toEqual(['a']); // the check itself
    expect(srv.repeatedFields).toEqual([]);
  });
});

describe('memory', () => {
  // page-cache.ts: the superseded file's pages are handed back as the next upload starts, so that
  // the new one can reuse them (on VMs that return free memory to their host, ten times cheaper).
  it.runIf(process.platform === 'linux')(
    'a new upload of users.csv releases the page cache the previous one held, and the previous copy stays whole',
    async () => {
      const first = await randomFile(tmp, 'cache-first.csv', 2_000_000);
      let r = await sftpBatch(srv.port, TENANT, keys.ed25519, [`put ${first} /users.csv`]);
      expect(r.code, r.stderr).toBe(0);
      const firstCopy = path.join(dataDir, (await expectReceived(first, keys.ed25519)).storedPath);
      expect(await cachedBytes(firstCopy), 'the fresh upload is in the page cache').toBeGreaterThan(0);

      const second = await randomFile(tmp, 'cache-second.csv', 2_000_000);
      r = await sftpBatch(srv.port, TENANT, keys.ed25519, [`put ${second} /users.csv`]);
      expect(r.code, r.stderr).toBe(0);
      await expectReceived(second, keys.ed25519);
      expect(await cachedBytes(firstCopy), 'the superseded upload no longer holds page cache').toBe(0);
      expect(sha256(await fs.readFile(firstCopy))).toBe(sha256(await fs.readFile(first)));
    },
  );
});

describe('OpenSSH scp (SFTP protocol)', () => {
  it.each(KEY_TYPES)('uploads and downloads users.csv with an %s key', async (type) => {
    const key = keys[type];
    const local = await randomFile(tmp, `scp-${type}.csv`, 200_000);
    const back = path.join(tmp, `scp-${type}.back`);
    const up = await scpUpload(srv.port, TENANT, key, local, 'users.csv');
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    await expectReceived(local, key);
    const down = await scpDownload(srv.port, TENANT, key, '/users.csv', back);
    expect(down.code, down.stderr).toBe(0);
    expect(sha256(await fs.readFile(back))).toBe(sha256(await fs.readFile(local)));
  });
});

describe('a shell or a command instead of SFTP', () => {
  const SAYS_LOGGED_IN =
    /^rosterd: you are logged in as lincoln-usd \(key SHA256:[A-Za-z0-9+/]{43}\), but this server takes files over SFTP only/m;

  it('ssh with a command, or with none (a shell), is told the login works and how to upload, and exits 1', async () => {
    const key = keys.ed25519;
    const command = await sshCommand(srv.port, TENANT, key, ['ls']);
    expect(command.code).toBe(1);
    expect(command.stderr).toMatch(SAYS_LOGGED_IN);
    expect(command.stderr).toContain(fingerprint(key));
    expect(command.stderr).toMatch(/runs no commands\. Upload users\.csv \(and groups\.csv\) to \/ with sftp/);
    const shell = await sshCommand(srv.port, TENANT, key, [], ['-T']);
    expect(shell.code).toBe(1);
    expect(shell.stderr).toMatch(SAYS_LOGGED_IN);
    expect(shell.stderr).toMatch(/runs no shell\./);
    expect(srv.logs).toContainEqual(expect.objectContaining({ event: 'ssh.not_sftp', tenant: TENANT, command: 'ls' }));
  });

  it('scp -O (the old SCP protocol, the default of OpenSSH 8 and older) is told to use scp without -O, and nothing is received', async () => {
    const key = keys.ed25519;
    const local = await randomFile(tmp, 'scp-legacy.csv', 1000);
    const before = await latestUpload();
    const up = await run('scp', [...sshOptions(srv.port, key), '-O', local, `${TENANT}@127.0.0.1:users.csv`]);
    expect(up.code).not.toBe(0);
    expect(up.stderr).toMatch(SAYS_LOGGED_IN);
    expect(up.stderr).toMatch(/This scp speaks the old SCP protocol: use scp without -O/);
    expect(await latestUpload()).toEqual(before);
    // The same scp without -O (SFTP) delivers it.
    expect((await scpUpload(srv.port, TENANT, key, local, 'users.csv')).code).toBe(0);
    await expectReceived(local, key);
  });
});

describe('curl (libssh2)', () => {
  it.each(KEY_TYPES)('uploads and downloads users.csv with an %s key', async (type) => {
    const key = keys[type];
    const local = await randomFile(tmp, `curl-${type}.csv`, 500_000);
    const back = path.join(tmp, `curl-${type}.back`);
    const up = await curlSftp(srv.port, TENANT, key, '/users.csv', { upload: local });
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    await expectReceived(local, key);
    const down = await curlSftp(srv.port, TENANT, key, '/users.csv', { download: back });
    expect(down.code, down.stderr).toBe(0);
    expect(sha256(await fs.readFile(back))).toBe(sha256(await fs.readFile(local)));
  });

  // curl opens with APPEND for both, and does not report a failed CLOSE: refused at CLOSE, as a
  // resume once was, it exited 0 having delivered nothing.
  it.each([
    ['-C -', ['-C', '-']],
    ['--append', ['--append']],
  ])('curl %s onto the received users.csv fails, saying so, and nothing is queued', async (_what, extra) => {
    const key = keys.ed25519;
    const previous = Buffer.from('username,email\nlinc0001,a@x.org\n');
    const tonight = path.join(tmp, 'curl-resume.csv');
    await fs.writeFile(tonight, Buffer.concat([previous, Buffer.from('linc0002,b@x.org\n')]));
    const first = path.join(tmp, 'curl-previous.csv');
    await fs.writeFile(first, previous);
    expect((await curlSftp(srv.port, TENANT, key, '/users.csv', { upload: first })).code).toBe(0);
    const before = await latestUpload();

    const up = await curlSftp(srv.port, TENANT, key, '/users.csv', { upload: tonight }, extra);
    expect(up.code, 'curl exits non-zero').not.toBe(0);
    expect(up.stderr).toMatch(/Upload failed: Operation not supported by SFTP server/);
    expect(await latestUpload()).toEqual(before);
    const s = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: key.privateKey });
    try {
      expect(await sftpP.readFile(s.sftp, '/users.csv')).toEqual(previous);
      // What a client that shows the server's message (WinSCP, paramiko, lftp) shows.
      const err = await rejection(sftpP.open(s.sftp, '/users.csv', 'a'));
      expect(err.code).toBe(8); // OP_UNSUPPORTED
      expect(err.message).toMatch(/^rosterd does not resume or append to an upload: .*upload the whole file again/);
    } finally {
      s.end();
    }

    // Without -C - the same curl delivers the file.
    expect((await curlSftp(srv.port, TENANT, key, '/users.csv', { upload: tonight })).code).toBe(0);
    await expectReceived(tonight, key);
  });
});

describe('the jail', () => {
  it('shows the tenant its own folder as / and nothing outside it', async () => {
    await fs.mkdir(path.join(dataDir, 'sftp', OTHER), { recursive: true });
    await fs.writeFile(path.join(dataDir, 'sftp', OTHER, 'users.csv'), 'secret of another tenant');
    // A symlink planted in the jail (by anyone) is neither listed nor followed.
    await fs.symlink('/etc/passwd', path.join(dataDir, 'sftp', TENANT, 'groups.csv.tmp')).catch(() => undefined);
    const s = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: keys.ed25519.privateKey });
    try {
      expect(await sftpP.realpath(s.sftp, '.')).toBe('/');
      expect(await sftpP.realpath(s.sftp, '/a/../users.csv')).toBe('/users.csv');
      // `cd ..` at the root stays there, as in a chrooted OpenSSH; nothing outside is named.
      expect(await sftpP.realpath(s.sftp, '..')).toBe('/');
      expect(await sftpP.realpath(s.sftp, '/../../other-usd/users.csv')).toBe('/other-usd/users.csv');
      expect((await rejection(sftpP.realpath(s.sftp, 'users.csv\0.txt'))).code).toBe(3);
      const names = (await sftpP.readdir(s.sftp, '/')).map((e) => e.filename);
      expect(names).toContain('users.csv');
      expect(names).not.toContain('groups.csv.tmp');
      for (const p of ['..', '/..', '../other-usd/users.csv', '/../other-usd/users.csv', '../../../etc/passwd']) {
        const err = await rejection(sftpP.readFile(s.sftp, p));
        expect(err.code, p).toBe(3); // PERMISSION_DENIED
        expect(err.message).toMatch(/outside your folder/);
      }
      for (const p of ['/etc/passwd', '/other-usd/users.csv', 'other-usd/users.csv', '/groups.csv.tmp', '/%2e%2e/other-usd/users.csv']) {
        expect((await rejection(sftpP.readFile(s.sftp, p))).code, p).toBe(2); // NO_SUCH_FILE
      }
      expect((await rejection(sftpP.readdir(s.sftp, '/..'))).code).toBe(3);
      expect((await rejection(sftpP.readdir(s.sftp, '/etc'))).code).toBe(2);
      const link = await rejection(sftpP.symlink(s.sftp, '/etc/passwd', '/users.csv.tmp'));
      expect(link.code).toBe(3);
      const dir = await rejection(sftpP.mkdir(s.sftp, '/sub'));
      expect(dir.code).toBe(3);
      expect(dir.message).toMatch(/files only/);
      const write = await rejection(sftpP.writeFile(s.sftp, '../other-usd/users.csv', Buffer.from('x')));
      expect(write.code).toBe(3);
      expect(await fs.readFile(path.join(dataDir, 'sftp', OTHER, 'users.csv'), 'utf8')).toBe('secret of another tenant');
    } finally {
      s.end();
    }
  });

  it('another tenant sees only its own folder', async () => {
    const s = await ssh2Sftp({ port: srv.port, username: OTHER, privateKey: otherKey.privateKey });
    try {
      expect((await sftpP.readdir(s.sftp, '/')).map((e) => e.filename)).toEqual(['users.csv']);
      expect((await sftpP.readFile(s.sftp, '/users.csv')).toString()).toBe('secret of another tenant');
      expect((await rejection(sftpP.readFile(s.sftp, '/../lincoln-usd/users.csv'))).code).toBe(3);
    } finally {
      s.end();
    }
  });

  it('refuses other names with a message that says what is accepted', async () => {
    const s = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: keys.ed25519.privateKey });
    try {
      for (const name of ['/notes.txt', '/users.csv.bak', '/Users.csv', '/sub/users.csv']) {
        const err = await rejection(sftpP.open(s.sftp, name, 'w'));
        expect(err.code, name).toBe(3);
        expect(err.message).toMatch(/users\.csv or groups\.csv/);
      }
      const err = await rejection(sftpP.rename(s.sftp, '/users.csv', '/users-old.csv'));
      expect(err.code).toBe(3);
      expect(err.message).toMatch(/users\.csv or groups\.csv/);
    } finally {
      s.end();
    }
  });

  it('writes out of order and at offsets land where the client put them', async () => {
    const s = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: keys.ecdsa.privateKey });
    try {
      const content = Buffer.from('username,password\nabcd,secret1\nefgh,secret2\n');
      const h = await sftpP.open(s.sftp, '/.users.csv.tmp', 'w');
      await sftpP.write(s.sftp, h, content.subarray(20), 20);
      await sftpP.write(s.sftp, h, content.subarray(0, 20), 0);
      await sftpP.close(s.sftp, h);
      await sftpP.rename(s.sftp, '/.users.csv.tmp', '/users.csv');
      const upload = await latestUpload();
      expect(upload).toMatchObject({
        bytes: content.length,
        sha256: sha256(content),
        keyFingerprint: fingerprintOfBlob(parsePublicKey(keys.ecdsa.publicLine).blob),
      });
      expect(await sftpP.readFile(s.sftp, '/users.csv')).toEqual(content);
    } finally {
      s.end();
    }
  });
});

describe('listening', () => {
  it('an SFTP_PORT in use or an SFTP_HOST that is not this machine stops the start with a message naming the variable', async () => {
    const clash = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_PORT: String(srv.port) } }).catch((e: Error) => e);
    expect((clash as Error).message).toBe(
      `SFTP_PORT 127.0.0.1:${srv.port} is already in use (another rosterd, or an sshd?); stop what uses it or set SFTP_PORT to a free port`,
    );
    const elsewhere = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_HOST: '192.0.2.1' } }).catch((e: Error) => e);
    expect((elsewhere as Error).message).toMatch(/^SFTP_HOST 192\.0\.2\.1 is not an address of this machine \(EADDRNOTAVAIL\)/);
  });
});
