import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { InputAttributes, SFTPWrapper, Stats } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePublicKey } from '../../src/sftp/public-key.js';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  makeClientKey,
  rejection,
  sftpP,
  ssh2Sftp,
  startSftpServer,
  type ClientKey,
  type Ssh2Session,
  type TestSftpServer,
} from '../support/ssh.js';

/**
 * The jail (PRODUCT.md §2: "No path reaches anything outside it; other tenants are invisible")
 * for the requests that change or describe files: RENAME, REMOVE, STAT/LSTAT, SETSTAT, OPENDIR.
 * The other tenant really has a users.csv (received: a pending upload row and its immutable copy)
 * and a users.csv.filepart; after every refused request nothing on disk under the test's folder
 * and no upload row has changed, and the session still answers.
 */

const TENANT = 'lincoln-usd';
const OTHER = 'other-usd';
/** A tenant that does not exist: a refusal must read the same for it as for OTHER (no oracle). */
const NOBODY = 'nobody-usd';

const STATUS = { NO_SUCH_FILE: 2, PERMISSION_DENIED: 3 } as const;
const OUTSIDE = /^the path leads outside your folder; use names in \/ such as \/users\.csv$/;
const NOT_ACCEPTED = /is not accepted here\. Upload users\.csv or groups\.csv to the root folder/;
const NO_SUCH = /^no such file$/;

let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
let key: ClientKey;
let otherKey: ClientKey;
/** TENANT's session, shared by the refusal cases (a refusal must leave it usable). */
let a: Ssh2Session;

const OTHER_USERS = Buffer.from('username,password\nother01,secret-of-other\n');
const OTHER_PART = Buffer.from('username\nhalf-written-by-other\n');
const OWN_PART = Buffer.from('username\nlincoln-part\n');
const CANARY = Buffer.from('canary next to the jails\n');

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const jail = (tenant: string) => path.join(dataDir, 'sftp', tenant);

// Requests sftpP does not wrap.
const lstat = (s: SFTPWrapper, p: string) => new Promise<Stats>((res, rej) => s.lstat(p, (e, st) => (e ? rej(e) : res(st))));
const setstat = (s: SFTPWrapper, p: string, attrs: InputAttributes) =>
  new Promise<void>((res, rej) => s.setstat(p, attrs, (e) => (e ? rej(e) : res())));
const opendir = (s: SFTPWrapper, p: string) => new Promise<Buffer>((res, rej) => s.opendir(p, (e, h) => (e ? rej(e) : res(h))));

/**
 * Everything a refused request could have touched: every file, folder and link under the test's
 * temporary folder (DATA_DIR and what is next to it: jails, received copies, spool, host keys),
 * with its mode, size, mtime and SHA-256; and every upload row.
 */
async function snapshot(): Promise<{ files: Record<string, string>; uploads: unknown[] }> {
  const files: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const abs = path.join(dir, name);
      const rel = path.relative(tmp, abs);
      const st = await fs.lstat(abs);
      if (st.isSymbolicLink()) files[rel] = `link -> ${await fs.readlink(abs)}`;
      else if (st.isDirectory()) {
        files[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        await walk(abs);
      } else {
        files[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${st.mtimeMs} ${sha256(await fs.readFile(abs))}`;
      }
    }
  };
  await walk(tmp);
  const { rows } = await db.pool.query('SELECT * FROM uploads ORDER BY id');
  return { files, uploads: rows };
}

/** Runs a request that must be refused; checks the refusal and that nothing changed anywhere. */
async function expectRefused(request: (s: SFTPWrapper) => Promise<unknown>, code: number, message: RegExp) {
  const before = await snapshot();
  const err = await rejection(request(a.sftp));
  expect(err.code, err.message).toBe(code);
  expect(err.message).toMatch(message);
  expect(await snapshot()).toEqual(before);
  // A refusal is an answer, not a broken session.
  expect(await sftpP.realpath(a.sftp, '.')).toBe('/');
  return { code: err.code, message: err.message };
}

/**
 * Runs a request that must be refused naming the other tenant, then naming a tenant that does not
 * exist: both must be refused alike (a message may echo the path given), so a client learns
 * nothing about who else is here.
 */
async function expectRefusedAlike(request: (s: SFTPWrapper, tenant: string) => Promise<unknown>, code: number, message: RegExp) {
  const other = await expectRefused((s) => request(s, OTHER), code, message);
  const nobody = await expectRefused((s) => request(s, NOBODY), code, message);
  expect({ ...nobody, message: nobody.message.replaceAll(NOBODY, '{T}') }).toEqual({
    ...other,
    message: other.message.replaceAll(OTHER, '{T}'),
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-jail-ops-'));
  dataDir = path.join(tmp, 'data');
  [key, otherKey] = await Promise.all([makeClientKey(tmp, 'ed25519', 'lincoln'), makeClientKey(tmp, 'ed25519', 'other')]);
  await createTenant(db.pool, TENANT, { adminEmails: ['it@lincoln.example'] });
  await createTenant(db.pool, OTHER, { adminEmails: ['it@other.example'] });
  await addKey(db.pool, TENANT, key.publicLine);
  await addKey(db.pool, OTHER, otherKey.publicLine);
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_MAX_AUTH_FAILURES: '1000' } });

  // The other tenant uploads for real: a received users.csv (pending row, immutable copy) and a
  // temporary file it has not renamed yet.
  const o = await ssh2Sftp({ port: srv.port, username: OTHER, privateKey: otherKey.privateKey });
  try {
    await sftpP.writeFile(o.sftp, '/users.csv', OTHER_USERS);
    await sftpP.writeFile(o.sftp, '/users.csv.filepart', OTHER_PART);
  } finally {
    o.end();
  }
  a = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: key.privateKey });
  await sftpP.writeFile(a.sftp, '/users.csv.filepart', OWN_PART);
  // Planted by someone else (never by a client: SYMLINK is refused): links in the jail that point
  // at the other tenant's files, and a file next to the jails that `/../../x` would name.
  await fs.symlink(`../${OTHER}/users.csv`, path.join(jail(TENANT), 'users.csv.part'));
  await fs.symlink(path.join(jail(OTHER), 'users.csv'), path.join(jail(TENANT), 'groups.csv.tmp'));
  await fs.writeFile(path.join(dataDir, 'x'), CANARY);
});

afterAll(async () => {
  a?.end();
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('setup', () => {
  it('the other tenant has a received users.csv (pending row, immutable copy) and a users.csv.filepart', async () => {
    const uploads = await listUploads(db.pool, { tenant: OTHER });
    expect(uploads).toHaveLength(1);
    expect(uploads[0]).toMatchObject({ fileName: 'users.csv', status: 'pending', sha256: sha256(OTHER_USERS) });
    expect(await fs.readFile(path.join(dataDir, uploads[0]?.storedPath ?? ''))).toEqual(OTHER_USERS);
    expect(await fs.readFile(path.join(jail(OTHER), 'users.csv'))).toEqual(OTHER_USERS);
    expect(await fs.readFile(path.join(jail(OTHER), 'users.csv.filepart'))).toEqual(OTHER_PART);
    expect(await listUploads(db.pool, { tenant: TENANT })).toEqual([]);
  });
});

describe('RENAME', () => {
  const out = (to: string) => (s: SFTPWrapper) => sftpP.rename(s, '/users.csv.filepart', to);

  it('onto ../TENANT/users.csv and /../TENANT/users.csv: permission denied, outside your folder', async () => {
    await expectRefusedAlike((s, t) => sftpP.rename(s, '/users.csv.filepart', `../${t}/users.csv`), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefusedAlike((s, t) => sftpP.rename(s, '/users.csv.filepart', `/../${t}/users.csv`), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefusedAlike(
      (s, t) => sftpP.rename(s, 'users.csv.filepart', `../../sftp/${t}/users.csv`),
      STATUS.PERMISSION_DENIED,
      OUTSIDE,
    );
  });

  it('onto an absolute path into the other tenant’s folder or DATA_DIR: permission denied, says what is accepted', async () => {
    await expectRefusedAlike((s, t) => sftpP.rename(s, '/users.csv.filepart', `/${t}/users.csv`), STATUS.PERMISSION_DENIED, NOT_ACCEPTED);
    await expectRefusedAlike(
      (s, t) => sftpP.rename(s, '/users.csv.filepart', path.join(jail(t), 'users.csv')),
      STATUS.PERMISSION_DENIED,
      NOT_ACCEPTED,
    );
    for (const to of [path.join(dataDir, 'users.csv'), path.join(dataDir, 'x'), path.join(dataDir, 'uploads', OTHER, 'users.csv')]) {
      await expectRefused(out(to), STATUS.PERMISSION_DENIED, NOT_ACCEPTED);
    }
    const escape = path.join(os.tmpdir(), `rosterd-jail-escape-${process.pid}.csv`);
    await expectRefused(out(escape), STATUS.PERMISSION_DENIED, NOT_ACCEPTED);
    await expect(fs.stat(escape)).rejects.toThrow(/ENOENT/);
  });

  it('onto ../ names and encoded climbs: refused', async () => {
    await expectRefused(out('../users.csv'), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefused(out('/../../users.csv'), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefused(out('/../../x'), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefused(out(`%2e%2e/${OTHER}/users.csv`), STATUS.PERMISSION_DENIED, NOT_ACCEPTED);
    await expectRefused(out(`..%2f${OTHER}%2fusers.csv`), STATUS.PERMISSION_DENIED, NOT_ACCEPTED);
    await expectRefused(out(`..\\${OTHER}\\users.csv`), STATUS.PERMISSION_DENIED, NOT_ACCEPTED);
  });

  it('from the other tenant’s users.csv.filepart onto /users.csv: refused, nothing received', async () => {
    for (const to of ['/users.csv', '/groups.csv', '/.users.csv.tmp']) {
      await expectRefusedAlike((s, t) => sftpP.rename(s, `../${t}/users.csv.filepart`, to), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => sftpP.rename(s, `/../${t}/users.csv.filepart`, to), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => sftpP.rename(s, `/${t}/users.csv.filepart`, to), STATUS.NO_SUCH_FILE, NO_SUCH);
      await expectRefusedAlike((s, t) => sftpP.rename(s, path.join(jail(t), 'users.csv.filepart'), to), STATUS.NO_SUCH_FILE, NO_SUCH);
    }
    await expectRefusedAlike((s, t) => sftpP.rename(s, `../${t}/users.csv`, '/users.csv'), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefused((s) => sftpP.rename(s, '/../../x', '/users.csv'), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefused((s) => sftpP.rename(s, path.join(dataDir, 'x'), '/users.csv'), STATUS.NO_SUCH_FILE, NO_SUCH);
  });

  it('from a link planted in the jail that points at the other tenant’s file: no such file (links are invisible)', async () => {
    await expectRefused((s) => sftpP.rename(s, '/users.csv.part', '/users.csv'), STATUS.NO_SUCH_FILE, NO_SUCH);
    await expectRefused((s) => sftpP.rename(s, '/groups.csv.tmp', '/groups.csv'), STATUS.NO_SUCH_FILE, NO_SUCH);
  });

  it('onto a name taken by a planted link: refused, the link’s target untouched', async () => {
    await expectRefused(out('/users.csv.part'), STATUS.PERMISSION_DENIED, /taken by something that is not a file/);
    await expectRefused(out('/groups.csv.tmp'), STATUS.PERMISSION_DENIED, /taken by something that is not a file/);
  });
});

describe('REMOVE', () => {
  it('of ../TENANT/users.csv, /../TENANT/…, ../.. and .. : permission denied, outside your folder', async () => {
    for (const file of ['users.csv', 'users.csv.filepart']) {
      await expectRefusedAlike((s, t) => sftpP.unlink(s, `../${t}/${file}`), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => sftpP.unlink(s, `/../${t}/${file}`), STATUS.PERMISSION_DENIED, OUTSIDE);
    }
    for (const p of ['/../../x', '../../x', '..', '/..', `../${OTHER}`, '/../../uploads']) {
      await expectRefused((s) => sftpP.unlink(s, p), STATUS.PERMISSION_DENIED, OUTSIDE);
    }
  });

  it('of absolute paths (the other tenant’s folder, DATA_DIR, its received copy): no such file', async () => {
    await expectRefusedAlike((s, t) => sftpP.unlink(s, `/${t}/users.csv`), STATUS.NO_SUCH_FILE, NO_SUCH);
    await expectRefusedAlike((s, t) => sftpP.unlink(s, path.join(jail(t), 'users.csv')), STATUS.NO_SUCH_FILE, NO_SUCH);
    const [received] = await listUploads(db.pool, { tenant: OTHER });
    for (const p of [path.join(dataDir, 'x'), path.join(dataDir, received?.storedPath ?? 'missing'), `/%2e%2e/${OTHER}/users.csv`]) {
      await expectRefused((s) => sftpP.unlink(s, p), STATUS.NO_SUCH_FILE, NO_SUCH);
    }
  });

  it('of a link planted in the jail: no such file, and its target stays', async () => {
    await expectRefused((s) => sftpP.unlink(s, '/users.csv.part'), STATUS.NO_SUCH_FILE, NO_SUCH);
    await expectRefused((s) => sftpP.unlink(s, '/groups.csv.tmp'), STATUS.NO_SUCH_FILE, NO_SUCH);
  });
});

describe('STAT and LSTAT', () => {
  for (const [name, stat] of [
    ['STAT', sftpP.stat],
    ['LSTAT', lstat],
  ] as const) {
    it(`${name} of /.., .. and ../TENANT/users.csv: permission denied, the same for a tenant that does not exist`, async () => {
      await expectRefused((s) => stat(s, '/..'), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefused((s) => stat(s, '..'), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefused((s) => stat(s, '/../..'), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefused((s) => stat(s, '../../x'), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => stat(s, `../${t}/users.csv`), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => stat(s, `../${t}`), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => stat(s, `/../${t}/users.csv.filepart`), STATUS.PERMISSION_DENIED, OUTSIDE);
    });

    it(`${name} of absolute paths and planted links: no such file, the same for a tenant that does not exist`, async () => {
      await expectRefusedAlike((s, t) => stat(s, `/${t}/users.csv`), STATUS.NO_SUCH_FILE, NO_SUCH);
      await expectRefusedAlike((s, t) => stat(s, `/${t}`), STATUS.NO_SUCH_FILE, NO_SUCH);
      await expectRefusedAlike((s, t) => stat(s, path.join(jail(t), 'users.csv')), STATUS.NO_SUCH_FILE, NO_SUCH);
      await expectRefused((s) => stat(s, path.join(dataDir, 'x')), STATUS.NO_SUCH_FILE, NO_SUCH);
      await expectRefused((s) => stat(s, '/users.csv.part'), STATUS.NO_SUCH_FILE, NO_SUCH);
      await expectRefused((s) => stat(s, '/groups.csv.tmp'), STATUS.NO_SUCH_FILE, NO_SUCH);
    });
  }

  it('of the tenant’s own file works (the refusals above are not all there is)', async () => {
    const st = await lstat(a.sftp, '/users.csv.filepart');
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(OWN_PART.length);
    expect((await sftpP.stat(a.sftp, '/')).isDirectory()).toBe(true);
  });
});

describe('SETSTAT', () => {
  const attrs: InputAttributes = { mode: 0o777, atime: 0, mtime: 0 };

  it('of /.., ../TENANT/users.csv and the like: permission denied, modes and times unchanged', async () => {
    for (const p of ['/..', '..', '/../..', '../../x']) {
      await expectRefused((s) => setstat(s, p, attrs), STATUS.PERMISSION_DENIED, OUTSIDE);
    }
    for (const file of ['users.csv', 'users.csv.filepart', '']) {
      await expectRefusedAlike((s, t) => setstat(s, `../${t}/${file}`, attrs), STATUS.PERMISSION_DENIED, OUTSIDE);
      await expectRefusedAlike((s, t) => setstat(s, `/../${t}/${file}`, attrs), STATUS.PERMISSION_DENIED, OUTSIDE);
    }
  });

  it('of absolute paths and planted links: no such file, modes and times unchanged', async () => {
    await expectRefusedAlike((s, t) => setstat(s, `/${t}/users.csv`, attrs), STATUS.NO_SUCH_FILE, NO_SUCH);
    await expectRefusedAlike((s, t) => setstat(s, path.join(jail(t), 'users.csv'), attrs), STATUS.NO_SUCH_FILE, NO_SUCH);
    for (const p of [path.join(dataDir, 'x'), '/users.csv.part', '/groups.csv.tmp']) {
      await expectRefused((s) => setstat(s, p, attrs), STATUS.NO_SUCH_FILE, NO_SUCH);
    }
  });
});

describe('OPENDIR', () => {
  it('of .., /.. and ../TENANT: permission denied', async () => {
    for (const p of ['..', '/..', '../..', '/../../uploads']) {
      await expectRefused((s) => opendir(s, p), STATUS.PERMISSION_DENIED, OUTSIDE);
    }
    await expectRefusedAlike((s, t) => opendir(s, `../${t}`), STATUS.PERMISSION_DENIED, OUTSIDE);
    await expectRefusedAlike((s, t) => opendir(s, `/../${t}/`), STATUS.PERMISSION_DENIED, OUTSIDE);
  });

  it('of the other tenant by name or by absolute path, and of DATA_DIR: no such file', async () => {
    await expectRefusedAlike((s, t) => opendir(s, `/${t}`), STATUS.NO_SUCH_FILE, NO_SUCH);
    await expectRefusedAlike((s, t) => opendir(s, t), STATUS.NO_SUCH_FILE, NO_SUCH);
    await expectRefusedAlike((s, t) => opendir(s, jail(t)), STATUS.NO_SUCH_FILE, NO_SUCH);
    for (const p of [dataDir, path.join(dataDir, 'uploads'), path.join(dataDir, 'sftp'), '/users.csv.part']) {
      await expectRefused((s) => opendir(s, p), STATUS.NO_SUCH_FILE, NO_SUCH);
    }
  });

  it('of / lists only the tenant’s own files', async () => {
    const names = (await sftpP.readdir(a.sftp, '/')).map((e) => e.filename);
    expect(names).toEqual(['users.csv.filepart']);
  });
});

describe('after all of the above', () => {
  it('the other tenant still has its files and its pending upload, and reads them back', async () => {
    const [received, ...more] = await listUploads(db.pool, { tenant: OTHER });
    expect(more).toEqual([]);
    expect(received).toMatchObject({ fileName: 'users.csv', status: 'pending', bytes: OTHER_USERS.length, sha256: sha256(OTHER_USERS) });
    expect(await fs.readFile(path.join(dataDir, received?.storedPath ?? ''))).toEqual(OTHER_USERS);
    const o = await ssh2Sftp({ port: srv.port, username: OTHER, privateKey: otherKey.privateKey });
    try {
      expect((await sftpP.readdir(o.sftp, '/')).map((e) => e.filename)).toEqual(['users.csv', 'users.csv.filepart']);
      expect(await sftpP.readFile(o.sftp, '/users.csv')).toEqual(OTHER_USERS);
      expect(await sftpP.readFile(o.sftp, '/users.csv.filepart')).toEqual(OTHER_PART);
    } finally {
      o.end();
    }
    expect(await listUploads(db.pool, { tenant: TENANT })).toEqual([]);
    expect(await fs.readFile(path.join(dataDir, 'x'))).toEqual(CANARY);
  });

  it('no request was an unforeseen error (each was answered as a refusal)', () => {
    expect(srv.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
  });
});

describe('a legitimate WinSCP-style overwrite', () => {
  it('REMOVE /users.csv, upload users.csv.filepart, RENAME it onto users.csv: exactly one new pending upload', async () => {
    const first = Buffer.from('username,password\nlinc0001,first-pass\n');
    const second = Buffer.from('username,password\nlinc0001,first-pass\nlinc0002,second-pass\n');
    // The previous nightly file, received.
    await sftpP.writeFile(a.sftp, '/users.csv', first);
    const [previous, ...none] = await listUploads(db.pool, { tenant: TENANT });
    expect(none).toEqual([]);
    expect(previous).toMatchObject({ fileName: 'users.csv', status: 'pending', sha256: sha256(first) });
    const otherBefore = await listUploads(db.pool, { tenant: OTHER });

    await sftpP.unlink(a.sftp, '/users.csv');
    await expect(fs.stat(path.join(jail(TENANT), 'users.csv'))).rejects.toThrow(/ENOENT/);
    // Removing the visible file neither dequeues nor damages what was received.
    expect(await listUploads(db.pool, { tenant: TENANT })).toEqual([previous]);
    expect(await fs.readFile(path.join(dataDir, previous?.storedPath ?? ''))).toEqual(first);

    await sftpP.writeFile(a.sftp, '/users.csv.filepart', second);
    expect(await listUploads(db.pool, { tenant: TENANT }), 'a temporary name is not received on close').toHaveLength(1);
    await sftpP.rename(a.sftp, '/users.csv.filepart', '/users.csv');

    const uploads = await listUploads(db.pool, { tenant: TENANT });
    expect(uploads).toHaveLength(2);
    const received = uploads.find((u) => u.id !== previous?.id);
    expect(received).toMatchObject({
      tenant: TENANT,
      fileName: 'users.csv',
      status: 'pending',
      bytes: second.length,
      sha256: sha256(second),
      keyFingerprint: parsePublicKey(key.publicLine).fingerprint,
      remoteAddress: '127.0.0.1',
      source: 'sftp',
    });
    expect(await fs.readFile(path.join(dataDir, received?.storedPath ?? ''))).toEqual(second);
    expect(await fs.readFile(path.join(dataDir, previous?.storedPath ?? ''))).toEqual(first);
    expect(await sftpP.readFile(a.sftp, '/users.csv')).toEqual(second);
    expect((await sftpP.readdir(a.sftp, '/')).map((e) => e.filename)).toEqual(['users.csv']);
    // The other tenant's row, copy and files are as they were.
    expect(await listUploads(db.pool, { tenant: OTHER })).toEqual(otherBefore);
    expect(await fs.readFile(path.join(jail(OTHER), 'users.csv'))).toEqual(OTHER_USERS);
    expect(await fs.readFile(path.join(jail(OTHER), 'users.csv.filepart'))).toEqual(OTHER_PART);
  });
});
