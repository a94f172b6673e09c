import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAddon } from '../../src/sftp/native.js';
import { createRunWriter, type RunWriter } from '../../src/sftp/run-writer.js';
import { statusFor } from '../../src/sftp/status.js';

/**
 * How an upload's runs reach the disk and its SHA-256: through the addon (native/spool_write.c,
 * on the thread pool) and through fs with the hash on the event loop. Both must give the same
 * file, the same hash and the same errors.
 */

const linux = process.platform === 'linux';
let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-run-writer-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const write = (writer: RunWriter, fd: number, data: Buffer, position: number, hash: boolean) =>
  new Promise<void>((resolve, reject) => writer.write(fd, data, position, hash, (err) => (err ? reject(err) : resolve())));

describe.each([
  { offLoop: true, how: 'the addon, on the thread pool' },
  { offLoop: false, how: 'fs, hashing on the event loop' },
])('RunWriter: $how', ({ offLoop }) => {
  it('refuses a digest once a write has failed (the hash took bytes the file did not)', async () => {
    const file = path.join(dir, `failed-${offLoop}.bin`);
    await fs.writeFile(file, 'x');
    const handle = await fs.open(file, 'r');
    const writer = createRunWriter(offLoop);
    try {
      await expect(write(writer, handle.fd, Buffer.from('data'), 0, true)).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      await handle.close();
    }
    expect(() => writer.digest()).toThrow(/failed: it no longer matches any file/);
  });

  it('writes every run at its position and hashes exactly the runs it is told to, in order', async () => {
    const file = path.join(dir, `runs-${offLoop}.bin`);
    const handle = await fs.open(file, 'w+');
    const writer = createRunWriter(offLoop);
    const a = randomBytes(1024 * 1024);
    const b = randomBytes(300_000);
    const c = randomBytes(5);
    await write(writer, handle.fd, a, 0, true);
    await write(writer, handle.fd, b, a.length, true);
    await write(writer, handle.fd, c, 10, false); // overwrites part of `a`: not hashed
    await handle.close();
    const expected = Buffer.concat([a, b]);
    c.copy(expected, 10);
    expect((await fs.readFile(file)).equals(expected)).toBe(true);
    expect(writer.digest()).toBe(createHash('sha256').update(a).update(b).digest('hex'));
  });

  it('an empty SHA-256 when nothing was hashed', () => {
    expect(createRunWriter(offLoop).digest()).toBe(createHash('sha256').digest('hex'));
  });

  it.runIf(linux)('a full disk is reported as fs reports it (ENOSPC), and the client is told so', async () => {
    const handle = await fs.open('/dev/full', 'w');
    try {
      const err = await write(createRunWriter(offLoop), handle.fd, randomBytes(4096), 0, true).then(
        () => null,
        (e: unknown) => e as NodeJS.ErrnoException,
      );
      expect(err).toMatchObject({ code: 'ENOSPC' });
      expect(statusFor(err).message).toBe('the server has no space left for this file; try again later');
    } finally {
      await handle.close();
    }
  });

  it('a descriptor that is not open for writing gives EBADF', async () => {
    const file = path.join(dir, `readonly-${offLoop}.bin`);
    await fs.writeFile(file, 'x');
    const handle = await fs.open(file, 'r');
    try {
      await expect(write(createRunWriter(offLoop), handle.fd, Buffer.from('data'), 0, false)).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      await handle.close();
    }
  });
});

describe.runIf(linux)('the addon itself (misuse is refused, never a crash or a mixed-up hash)', () => {
  const addon = () => {
    const found = nativeAddon();
    if (found === null) throw new Error('the addon is not built: run npm install');
    return found;
  };

  /** A descriptor of a scratch file, so that a check that let a call through writes nowhere that matters. */
  let scratch: fs.FileHandle;
  beforeAll(async () => {
    scratch = await fs.open(path.join(dir, 'scratch.bin'), 'w');
  });
  afterAll(async () => {
    await scratch.close();
  });

  it('a second write on one SHA-256 while the first runs is refused, and the first completes', async () => {
    const writer = createRunWriter(true);
    const first = write(writer, scratch.fd, randomBytes(4 * 1024 * 1024), 0, true);
    await expect(write(writer, scratch.fd, Buffer.from('x'), 0, true)).rejects.toThrow(/a write is still adding to this SHA-256/);
    await first;
    expect(writer.digest()).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a finished SHA-256 takes nothing more, and a digest is given once', () => {
    const state = addon().sha256();
    expect(addon().digest(state)).toBe(createHash('sha256').digest('hex'));
    expect(() => addon().digest(state)).toThrow(/already finished/);
    expect(() => addon().writeRun(scratch.fd, Buffer.alloc(1), 0, state)).toThrow(/already finished/);
  });

  it('refuses arguments of the wrong kind with a TypeError', () => {
    const bad = addon().writeRun as unknown as (...args: unknown[]) => Promise<number>;
    const fd = scratch.fd;
    expect(() => bad(-1, Buffer.alloc(1), 0, null)).toThrow(TypeError);
    expect(() => bad(fd, 'not a buffer', 0, null)).toThrow(TypeError);
    expect(() => bad(fd, Buffer.alloc(1), -5, null)).toThrow(TypeError);
    expect(() => bad(fd, Buffer.alloc(1), 1.5, null)).toThrow(TypeError);
    expect(() => bad(fd, Buffer.alloc(1), 0, {})).toThrow(TypeError);
    expect(() => (addon().digest as unknown as (v: unknown) => string)('x')).toThrow(TypeError);
  });
});
