/**
 * DATA_DIR runs out of space during uploads (PRODUCT.md §2 "Receipt": a transfer that is cut off
 * is never imported): rosterd queues nothing partial, leaves no spool file behind, tells the
 * client why, keeps the files it already received, and goes on serving.
 *
 * DATA_DIR is a small tmpfs of its own (root or CAP_SYS_ADMIN to mount it; skipped otherwise);
 * the database is elsewhere. The immutable copy of a received file is a hard link to it
 * (receipt.ts), which takes no data space: a disk whose bytes are full still receives a complete
 * file. The link can still fail for want of space (ext4: a folder that must grow a block; tmpfs
 * counts each link against nr_inodes), which the test provokes by taking every inode: nr_inodes is
 * kept small for that. The tests run in order, each on what the ones before left.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  randomFile,
  registerTenants,
  rejection,
  run,
  sftpBatch,
  sftpP,
  ssh2Sftp,
  startSftpServer,
  waitFor,
  type ClientKey,
  type Ssh2Session,
  type TestSftpServer,
} from '../support/ssh.js';

const TENANTS = ['keeper-usd', 'sis-usd', 'ssh2-usd', 'winscp-usd', 'filler-usd', 'other-usd'] as const;
type Tenant = (typeof TENANTS)[number];

const MIB = 1024 * 1024;
/** The tmpfs: 8 MiB of data, and few inodes (see the top of this file). */
const MOUNT_OPTIONS = 'size=8m,nr_inodes=1024,mode=0700';
/** Larger than the whole file system. */
const TOO_LARGE = 12 * MIB;
/**
 * How far a client writing one request at a time goes before giving up on a refusal. WRITEs are
 * acknowledged before their data reaches the disk (up to 8 MiB of it, backpressure.ts), so the
 * refusal can come that much later than the disk filled up.
 */
const WRITE_LIMIT = 32 * MIB;
const NO_SPACE = 'the server has no space left for this file; try again later';
/** What may differ in free space after a failed upload is cleaned up (a folder's bookkeeping at most). */
const SLACK = 64 * 1024;

let skipReason: string | null = null;
let tmp: string;
/** The tmpfs mount point, DATA_DIR of the server. */
let dataDir: string;
let mounted = false;
let db: TestDatabase | undefined;
let srv: TestSftpServer | undefined;
let keys: Record<Tenant, ClientKey>;
/** keeper-usd's users.csv, received before the disk fills up. */
let kept: Buffer;
let tooLargeLocal: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const uploads = (tenant: Tenant) => listUploads(db!.pool, { tenant });
const connect = (tenant: Tenant) => ssh2Sftp({ port: srv!.port, username: tenant, privateKey: keys[tenant].privateKey });
const csvOf = (n: number, prefix: string) =>
  Buffer.from('username,email\n' + Array.from({ length: n }, (_, i) => `${prefix}${i + 1000},${prefix}${i}@x.org\n`).join(''));

async function freeBytes(): Promise<number> {
  const s = await fs.statfs(dataDir);
  return s.bavail * s.bsize;
}

/** Spool files (uploads in progress, temporary files being received) left in DATA_DIR/spool. */
async function spoolLeftovers(): Promise<string[]> {
  return (await fs.readdir(path.join(dataDir, 'spool'))).filter((n) => n.endsWith('.part') || n.endsWith('.renaming'));
}

/** Waits until a failed upload's data is gone from the disk: free space as before, no spool file. */
async function expectCleanedUp(freeBefore: number): Promise<void> {
  await waitFor(async () => Math.abs((await freeBytes()) - freeBefore) <= SLACK, 5_000, 'the free space to come back');
  expect(await spoolLeftovers()).toEqual([]);
}

/** The disk really filled up: the server hit ENOSPC (and logged it) since `fromLine`. */
function expectEnospcLogged(fromLine: number): void {
  const hits = srv!.logs.slice(fromLine).filter((l) => (l.err as { code?: string } | undefined)?.code === 'ENOSPC');
  expect(hits.length, 'an ENOSPC in the server log').toBeGreaterThan(0);
}

/** Writes in 32 KiB requests, each waiting for its answer, until one is refused or `total` is written. */
async function writeUntilRefused(
  sftp: SFTPWrapper,
  handle: Buffer,
  total: number,
): Promise<{ offset: number; err: (Error & { code?: number | string }) | null }> {
  const chunk = Buffer.alloc(32 * 1024, 'x');
  for (let offset = 0; offset < total; offset += chunk.length) {
    try {
      await sftpP.write(sftp, handle, chunk, offset);
    } catch (err) {
      return { offset, err: err as Error & { code?: number } };
    }
  }
  return { offset: total, err: null };
}

/**
 * The daemon still serves after a failure: the tenant that failed and another one each upload a
 * small users.csv, received once with its SHA-256 and stored intact, and keeper-usd's users.csv
 * (received before the disk filled up) is still there, byte for byte.
 */
async function expectStillServing(failed: Tenant, round: string): Promise<void> {
  for (const tenant of [failed, 'other-usd'] as const) {
    const content = csvOf(20, `${round}${tenant.slice(0, 3)}`);
    const before = await uploads(tenant);
    const s = await connect(tenant);
    try {
      await sftpP.writeFile(s.sftp, 'users.csv', content);
      expect(await sftpP.readFile(s.sftp, 'users.csv')).toEqual(content);
    } finally {
      s.end();
    }
    const after = await uploads(tenant);
    expect(after, `${tenant}: exactly one more upload`).toHaveLength(before.length + 1);
    expect(after[0]).toMatchObject({ bytes: content.length, sha256: sha256(content), status: 'pending' });
    expect(sha256(await fs.readFile(path.join(dataDir, after[0]!.storedPath)))).toBe(sha256(content));
  }
  const s = await connect('keeper-usd');
  try {
    expect((await sftpP.readFile(s.sftp, 'users.csv')).equals(kept), "keeper-usd's users.csv read back byte-identical").toBe(true);
  } finally {
    s.end();
  }
  const [keeperUpload, ...more] = await uploads('keeper-usd');
  expect(more).toEqual([]);
  expect(sha256(await fs.readFile(path.join(dataDir, keeperUpload!.storedPath)))).toBe(sha256(kept));
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-disk-full-'));
  dataDir = path.join(tmp, 'data');
  await fs.mkdir(dataDir);
  // Tried rather than guessed: being root is not enough in a container without CAP_SYS_ADMIN.
  const mount = await run('mount', ['-t', 'tmpfs', '-o', MOUNT_OPTIONS, 'tmpfs', dataDir]).catch((err: Error) => ({
    code: null,
    stdout: '',
    stderr: err.message,
  }));
  if (mount.code !== 0) {
    const why = mount.stderr.trim().split('\n')[0] || `exit ${mount.code}`;
    skipReason = `cannot mount a tmpfs as DATA_DIR (needs root or CAP_SYS_ADMIN): ${why}`;
    return;
  }
  mounted = true;
  db = await createTestDatabase();
  keys = await registerTenants(db.pool, tmp, TENANTS);
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_MAX_AUTH_FAILURES: '1000' } });
  tooLargeLocal = await randomFile(tmp, 'too-large.csv', TOO_LARGE);
});

beforeEach((ctx) => {
  if (skipReason !== null) ctx.skip(skipReason);
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  let unmountError: string | null = null;
  if (mounted) {
    const r = await run('umount', [dataDir]);
    if (r.code !== 0) {
      // Busy: something still holds a file in DATA_DIR open. Detach it anyway, then fail.
      unmountError = `umount ${dataDir} failed: ${r.stderr.trim()}`;
      await run('umount', ['-l', dataDir]);
    }
  }
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  if (unmountError !== null) throw new Error(unmountError);
});

it('a users.csv received before the disk fills up', async () => {
  kept = csvOf(20_000, 'kept'); // about 0.6 MB
  const local = path.join(tmp, 'kept.csv');
  await fs.writeFile(local, kept);
  const r = await sftpBatch(srv!.port, 'keeper-usd', keys['keeper-usd'], [`put ${local} /users.csv`]);
  expect(r.code, r.stderr).toBe(0);
  expect(await uploads('keeper-usd')).toMatchObject([{ bytes: kept.length, sha256: sha256(kept) }]);
  expect(await freeBytes()).toBeLessThan(TOO_LARGE);
});

it('OpenSSH sftp: an upload larger than the free space fails, nothing is queued, its data is removed', async () => {
  const freeBefore = await freeBytes();
  const logFrom = srv!.logs.length;
  const r = await sftpBatch(srv!.port, 'sis-usd', keys['sis-usd'], [`put ${tooLargeLocal} /users.csv`]);
  expect(r.code, r.stdout + r.stderr).not.toBe(0);
  // The WRITE that failed, or the CLOSE if every WRITE was acknowledged before the disk refused one.
  expect(r.stderr).toMatch(/(write|close) remote.*Failure/);
  expectEnospcLogged(logFrom);
  expect(await uploads('sis-usd')).toEqual([]);
  await expectCleanedUp(freeBefore);
  expect(await fs.readdir(path.join(dataDir, 'sftp', 'sis-usd'))).toEqual([]);
  await expectStillServing('sis-usd', 'a');
});

it('ssh2: the WRITE that finds the disk full is refused with a message saying so; CLOSE receives nothing', async () => {
  const freeBefore = await freeBytes();
  const s = await connect('ssh2-usd');
  try {
    const h = await sftpP.open(s.sftp, 'users.csv', 'w');
    const { offset, err } = await writeUntilRefused(s.sftp, h, WRITE_LIMIT);
    expect(err, 'a WRITE was refused').not.toBeNull();
    expect(offset).toBeGreaterThan(0);
    expect({ code: err?.code, message: err?.message }).toEqual({ code: 4, message: NO_SPACE }); // FAILURE
    const closed = await rejection(sftpP.close(s.sftp, h));
    expect({ code: closed.code, message: closed.message }).toEqual({ code: 4, message: NO_SPACE });
    // A later WRITE on the closed handle is not a way back in either.
    expect((await rejection(sftpP.write(s.sftp, h, Buffer.from('x'), 0))).message).toBe('invalid handle');
  } finally {
    s.end();
  }
  expect(await uploads('ssh2-usd')).toEqual([]);
  await expectCleanedUp(freeBefore);
  await expectStillServing('ssh2-usd', 'b');
});

it('WinSCP style: a users.csv.filepart that fills the disk is thrown away, and renaming it receives nothing', async () => {
  const freeBefore = await freeBytes();
  const s = await connect('winscp-usd');
  try {
    const h = await sftpP.open(s.sftp, 'users.csv.filepart', 'w');
    const { err } = await writeUntilRefused(s.sftp, h, WRITE_LIMIT);
    expect(err?.message).toBe(NO_SPACE);
    expect((await rejection(sftpP.close(s.sftp, h))).message).toBe(NO_SPACE);
    // A script that renames whatever happened: there is nothing to rename.
    const renamed = await rejection(sftpP.rename(s.sftp, 'users.csv.filepart', 'users.csv'));
    expect(renamed.code).toBe(2); // NO_SUCH_FILE
    expect((await sftpP.readdir(s.sftp, '/')).map((e) => e.filename)).toEqual([]);
  } finally {
    s.end();
  }
  expect(await uploads('winscp-usd')).toEqual([]);
  await expectCleanedUp(freeBefore);
  await expectStillServing('winscp-usd', 'c');
});

it('on a disk whose bytes are full, a complete temporary file is still received by its rename (the copy is a hard link)', async () => {
  const content = csvOf(50, 'full');
  const winscp = await connect('winscp-usd');
  let filler: Ssh2Session | null = await connect('filler-usd');
  try {
    await sftpP.writeFile(winscp.sftp, 'users.csv.filepart', content);
    // Another district's upload takes every byte left, and holds them while its handle is open.
    const h = await sftpP.open(filler.sftp, 'users.csv', 'w');
    const freeBefore = await freeBytes();
    const { err } = await writeUntilRefused(filler.sftp, h, WRITE_LIMIT);
    expect(err?.message).toBe(NO_SPACE);
    expect(await freeBytes()).toBeLessThan(4096); // not one more page

    // A small upload cannot be stored now, and says why.
    const small = await rejection(sftpP.writeFile(winscp.sftp, 'groups.csv', csvOf(3, 'grp')));
    expect(small.message).toBe(NO_SPACE);
    // Nor can a resume of users.csv, which starts from a copy of it: refused at OPEN, no copy left.
    const resume = await rejection(sftpP.open(winscp.sftp, 'users.csv', 'r+'));
    expect(resume.message).toBe(NO_SPACE);
    expect((await spoolLeftovers()).filter((n) => !n.startsWith('filler-usd.'))).toEqual([]);

    const before = await uploads('winscp-usd');
    await sftpP.rename(winscp.sftp, 'users.csv.filepart', 'users.csv');
    const after = await uploads('winscp-usd');
    expect(after).toHaveLength(before.length + 1);
    expect(after[0]).toMatchObject({ fileName: 'users.csv', bytes: content.length, sha256: sha256(content) });
    expect(await fs.readFile(path.join(dataDir, after[0]!.storedPath))).toEqual(content);
    expect(await sftpP.readFile(winscp.sftp, 'users.csv')).toEqual(content);

    // The filling upload is cut off (its client goes away without CLOSE): thrown away whole.
    filler.end();
    filler = null;
    expect(await uploads('filler-usd')).toEqual([]);
    expect(await uploads('winscp-usd')).toHaveLength(after.length); // nothing of groups.csv
    await expectCleanedUp(freeBefore);
  } finally {
    winscp.end();
    filler?.end();
  }
  await expectStillServing('filler-usd', 'd');
});

it('when the copy cannot be stored (no inode left for the link), RENAME and CLOSE fail with a message, nothing is queued, the files stay', async () => {
  const content = csvOf(40, 'inode');
  const direct = csvOf(10, 'late');
  const winscp = await connect('winscp-usd');
  const sis = await connect('ssh2-usd');
  const inodeFiller = path.join(dataDir, 'inode-filler');
  try {
    await sftpP.writeFile(winscp.sftp, 'users.csv.filepart', content);
    const previous = await sftpP.readFile(sis.sftp, 'users.csv');
    // An upload written to the end, whose CLOSE (and so its receipt) comes after the inodes run out.
    const h = await sftpP.open(sis.sftp, 'users.csv', 'w');
    await sftpP.write(sis.sftp, h, direct, 0);
    const stored = async () => [
      ...(await fs.readdir(path.join(dataDir, 'uploads', 'winscp-usd'))),
      ...(await fs.readdir(path.join(dataDir, 'uploads', 'ssh2-usd'))),
    ];
    const storedBefore = await stored();
    const before = { winscp: await uploads('winscp-usd'), sis: await uploads('ssh2-usd') };
    // Something else on the volume takes every inode left.
    await fs.mkdir(inodeFiller);
    for (let i = 0; ; i++) {
      const made = await fs.writeFile(path.join(inodeFiller, String(i)), '').then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOSPC') throw err;
          return false;
        },
      );
      if (!made) break;
    }
    expect((await fs.statfs(dataDir)).ffree).toBe(0);

    const logFrom = srv!.logs.length;
    const renamed = await rejection(sftpP.rename(winscp.sftp, 'users.csv.filepart', 'users.csv'));
    expect({ code: renamed.code, message: renamed.message }).toEqual({ code: 4, message: NO_SPACE });
    const closed = await rejection(sftpP.close(sis.sftp, h));
    expect({ code: closed.code, message: closed.message }).toEqual({ code: 4, message: NO_SPACE });
    expectEnospcLogged(logFrom);
    expect(await uploads('winscp-usd')).toEqual(before.winscp);
    expect(await uploads('ssh2-usd')).toEqual(before.sis);
    expect(await stored()).toEqual(storedBefore);
    expect(await spoolLeftovers()).toEqual([]);
    // The temporary file is back where it was, whole, for the client to try again; the users.csv
    // the failed upload would have replaced is still the previous one.
    expect(await sftpP.readFile(winscp.sftp, 'users.csv.filepart')).toEqual(content);
    expect(await sftpP.readFile(sis.sftp, 'users.csv')).toEqual(previous);

    // Once there is room, the same rename receives it.
    await fs.rm(inodeFiller, { recursive: true });
    await sftpP.rename(winscp.sftp, 'users.csv.filepart', 'users.csv');
    const after = await uploads('winscp-usd');
    expect(after).toHaveLength(before.winscp.length + 1);
    expect(after[0]).toMatchObject({ bytes: content.length, sha256: sha256(content) });
  } finally {
    winscp.end();
    sis.end();
    await fs.rm(inodeFiller, { recursive: true, force: true });
  }
  await expectStillServing('winscp-usd', 'e');
  await expectStillServing('ssh2-usd', 'f');
});

it('the server logged no error but the full disk, and no upload of all of the above is partial', async () => {
  // Every error the server logged is the full disk: nothing it did not foresee, nothing fatal.
  const unforeseen = srv!.logs.filter(
    (l) => (l.level === 'error' || l.level === 'fatal') && (l.err as { code?: string } | undefined)?.code !== 'ENOSPC',
  );
  expect(unforeseen).toEqual([]);
  for (const tenant of TENANTS) {
    for (const u of await uploads(tenant)) {
      expect(sha256(await fs.readFile(path.join(dataDir, u.storedPath))), `${tenant} ${u.storedPath}`).toBe(u.sha256);
    }
  }
});
