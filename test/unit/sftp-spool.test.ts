import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Backpressure } from '../../src/sftp/backpressure.js';
import { createRunWriter, type RunWriter } from '../../src/sftp/run-writer.js';
import { SpoolFile, sweepSpool, TooLargeError, touchOpenSpoolFiles } from '../../src/sftp/spool.js';
import { waitFor } from '../support/wait.js';

/**
 * The spool file on its own: what reaches the disk and when, the SHA-256 computed on the way, and
 * the connection-wide flush that keeps partly filled buffers from stalling a paused connection.
 */

const MiB = 1024 * 1024;
let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-spool-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const onDisk = async (file: string) => (await fs.stat(file)).size;
const nextTurns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
/** Waits for a condition that depends on a write finishing in the thread pool (5 s at most). */
const until = (condition: () => boolean) => waitFor(condition, 5000);

/** Which RunWriter the files of the block being run use (both must behave the same). */
let offLoop = true;

async function spool(options: { maxBytes?: number; released?: (n: number) => void; copyFrom?: string } = {}) {
  return SpoolFile.create({
    dir,
    label: 'test',
    writer: createRunWriter(offLoop),
    maxBytes: options.maxBytes ?? 64 * MiB,
    ...(options.released ? { released: options.released } : {}),
    ...(options.copyFrom ? { copyFrom: options.copyFrom } : {}),
  });
}

/** Writes `data` in pieces of `piece` bytes, in order, as a client would. */
function writeInPieces(file: SpoolFile, data: Buffer, piece: number, start = 0): void {
  for (let at = 0; at < data.length; at += piece) {
    expect(file.write(start + at, data.subarray(at, Math.min(at + piece, data.length)))).toBeNull();
  }
}

describe.each([
  { offLoop: true, how: 'written and hashed on the thread pool (the addon)' },
  { offLoop: false, how: 'written through fs and hashed on the event loop (no addon)' },
])('SpoolFile, $how', (mode) => {
  beforeEach(() => {
    offLoop = mode.offLoop;
  });

  // Else this block would quietly test the fallback twice.
  it.runIf(process.platform === 'linux' && mode.offLoop)('really uses the addon (npm install builds it here)', () => {
    expect(createRunWriter(true).offLoop).toBe(true);
  });

  it('keeps a partly filled buffer in memory, writes whole ones at once, and everything at finish', async () => {
    let released = 0;
    const file = await spool({ released: (n) => (released += n) });
    const data = randomBytes(MiB + 320 * 1024);
    writeInPieces(file, data.subarray(0, 320 * 1024), 32 * 1024);
    await new Promise((r) => setTimeout(r, 50)); // long enough for a write, had one been started
    // Nothing written for a third of a buffer: a client sending little at a time costs no write each.
    expect(await onDisk(file.path)).toBe(0);
    expect(released).toBe(0);
    writeInPieces(file, data.subarray(320 * 1024), 32 * 1024, 320 * 1024);
    await until(() => released === MiB); // the full buffer went by itself
    expect(await onDisk(file.path)).toBe(MiB);
    const { bytes, sha256: digest } = await file.finish();
    expect(bytes).toBe(data.length);
    expect(digest).toBe(sha256(data));
    expect(sha256(await fs.readFile(file.path))).toBe(sha256(data)); // (toEqual on a large Buffer is slow)
    expect(released).toBe(data.length);
  });

  it('flushPartial sends a partly filled buffer to the disk and releases its bytes', async () => {
    let released = 0;
    const file = await spool({ released: (n) => (released += n) });
    file.write(0, Buffer.from('username,password\n'));
    file.flushPartial();
    await until(() => released === 18);
    expect(await fs.readFile(file.path, 'utf8')).toBe('username,password\n');
    await file.discard();
    await expect(fs.stat(file.path)).rejects.toThrow(/ENOENT/);
  });

  it('honours offsets: out of order and overlapping writes give the bytes last written, and the right SHA-256', async () => {
    const file = await spool();
    const expected = Buffer.alloc(200_000);
    const write = (offset: number, chunk: Buffer) => {
      expect(file.write(offset, chunk)).toBeNull();
      chunk.copy(expected, offset);
    };
    write(100_000, randomBytes(100_000)); // second half first
    write(0, randomBytes(100_000));
    write(50_000, randomBytes(10_000)); // over bytes already written
    file.flushPartial();
    await nextTurns(5);
    write(150_000, Buffer.alloc(100, 7)); // over bytes already on disk
    const { bytes, sha256: digest } = await file.finish();
    expect(bytes).toBe(200_000);
    expect(sha256(await fs.readFile(file.path))).toBe(sha256(expected));
    expect(digest).toBe(sha256(expected));
  });

  it('reads back what was acknowledged, even while it is still in memory', async () => {
    const file = await spool();
    file.write(0, Buffer.from('hello, '));
    file.write(7, Buffer.from('world'));
    expect((await file.read(0, 100)).toString()).toBe('hello, world');
    await file.discard();
  });

  it('truncate and extend (SETSTAT size) are reflected in the size and the SHA-256', async () => {
    const file = await spool();
    file.write(0, Buffer.from('abcdefghij'));
    await file.truncate(4);
    file.write(4, Buffer.from('XY'));
    await file.truncate(8); // extends with zeros
    const { bytes, sha256: digest } = await file.finish();
    expect(bytes).toBe(8);
    const expected = Buffer.concat([Buffer.from('abcdXY'), Buffer.alloc(2)]);
    expect(sha256(await fs.readFile(file.path))).toBe(sha256(expected));
    expect(digest).toBe(sha256(expected));
  });

  it('a truncate takes its place among writes sent right after it (pipelined, not awaited)', async () => {
    const file = await spool();
    file.write(0, Buffer.from('abcdefghij'));
    const truncated = file.truncate(4);
    file.write(4, Buffer.from('WXYZ'));
    await truncated;
    const { bytes, sha256: digest } = await file.finish();
    expect(bytes).toBe(8);
    expect(await fs.readFile(file.path, 'utf8')).toBe('abcdWXYZ');
    expect(digest).toBe(sha256(Buffer.from('abcdWXYZ')));
  });

  it('a zero-length write changes nothing, not even the size', async () => {
    const file = await spool();
    file.write(0, Buffer.from('abc'));
    expect(file.write(1000, Buffer.alloc(0))).toBeNull();
    const { bytes } = await file.finish();
    expect(bytes).toBe(3);
    expect(await onDisk(file.path)).toBe(3);
  });

  it('discard drops what waits in memory instead of writing it, and releases its bytes', async () => {
    let released = 0;
    const file = await spool({ released: (n) => (released += n) });
    file.write(0, Buffer.alloc(300 * 1024, 1));
    // Not yet applied when the file is thrown away: it fails, and says why.
    const truncated = file.truncate(10).then(
      () => 'applied',
      (err: Error) => err.message,
    );
    file.write(10, Buffer.alloc(100, 2));
    await file.discard();
    expect(await truncated).toBe('the file was thrown away');
    expect(released).toBe(300 * 1024 + 100);
    await expect(fs.stat(file.path)).rejects.toThrow(/ENOENT/);
    await file.discard(); // twice is fine
  });

  it('a partly filled buffer older than 10 s goes to the disk with the next write (a trickling client)', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      let released = 0;
      const file = await spool({ released: (n) => (released += n) });
      file.write(0, Buffer.from('first,'));
      await new Promise((r) => setTimeout(r, 50));
      expect(released).toBe(0);
      vi.advanceTimersByTime(11_000);
      file.write(6, Buffer.from('second'));
      await until(() => released === 12);
      expect(await fs.readFile(file.path, 'utf8')).toBe('first,second');
      await file.discard();
    } finally {
      vi.useRealTimers();
    }
  });

  it('the sweep of abandoned spool files never takes one being written, however old', async () => {
    const sweepDir = await fs.mkdtemp(path.join(dir, 'sweep-'));
    const live = await SpoolFile.create({ dir: sweepDir, label: 'live', maxBytes: MiB, writer: createRunWriter(offLoop) });
    live.write(0, Buffer.from('slow upload'));
    live.flushPartial();
    await until(() => live.size === 11);
    const abandoned = path.join(sweepDir, 'crashed.0000.part');
    await fs.writeFile(abandoned, 'left by a process that died');
    const hourAgo = new Date(Date.now() - 3_600_000);
    await fs.utimes(live.path, hourAgo, hourAgo);
    await fs.utimes(abandoned, hourAgo, hourAgo);
    expect(await sweepSpool(sweepDir, 60_000, Date.now())).toBe(1);
    await expect(fs.stat(abandoned)).rejects.toThrow(/ENOENT/);
    live.write(11, Buffer.from(', done'));
    const { bytes } = await live.finish();
    expect(bytes).toBe(17);
    expect(await fs.readFile(live.path, 'utf8')).toBe('slow upload, done');
  });

  it("keeps the files it writes young while their client is quiet, so another replica's sweep spares them", async () => {
    const sweepDir = await fs.mkdtemp(path.join(dir, 'heartbeat-'));
    const quiet = await SpoolFile.create({ dir: sweepDir, label: 'quiet', maxBytes: MiB, writer: createRunWriter(offLoop) });
    quiet.write(0, Buffer.from('half an upload, then nothing for hours'));
    quiet.flushPartial();
    await until(() => quiet.size > 0);
    const abandoned = path.join(sweepDir, 'crashed.0000.part');
    await fs.writeFile(abandoned, 'left by a process that died');
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await fs.utimes(quiet.path, twoHoursAgo, twoHoursAgo);
    await fs.utimes(abandoned, twoHoursAgo, twoHoursAgo);

    await touchOpenSpoolFiles(); // what the heartbeat runs (test/unit/sftp-spool-heartbeat.test.ts: that it runs)
    // What another process goes by: the age alone (this one would spare its own file anyway).
    const age = async (file: string) => Date.now() - (await fs.stat(file)).mtimeMs;
    expect(await age(quiet.path)).toBeLessThan(60_000);
    expect(await age(abandoned)).toBeGreaterThan(3_600_000);

    const received = quiet.path;
    await quiet.discard();
    await touchOpenSpoolFiles(); // a file no longer open is neither touched nor an error
    await expect(fs.stat(received)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('starts from a copy of an existing file (a write without TRUNC) and hashes the whole result', async () => {
    const existing = path.join(dir, 'existing.csv');
    await fs.writeFile(existing, 'first line\n');
    const file = await spool({ copyFrom: existing });
    expect(file.size).toBe(11);
    file.write(11, Buffer.from('second line\n'));
    const { sha256: digest } = await file.finish();
    expect(digest).toBe(sha256(Buffer.from('first line\nsecond line\n')));
    expect(await fs.readFile(existing, 'utf8')).toBe('first line\n'); // the original is untouched
  });

  it('refuses a write past maxBytes, and the file stays broken', async () => {
    const file = await spool({ maxBytes: 1000 });
    expect(file.write(0, Buffer.alloc(1000))).toBeNull();
    const refused = file.write(1000, Buffer.alloc(1));
    expect(refused).toBeInstanceOf(TooLargeError);
    expect(refused?.message).toMatch(/larger than the limit of 1000 bytes \(MAX_UPLOAD_BYTES\)/);
    expect(file.write(0, Buffer.alloc(1))).toBe(refused);
    await expect(file.finish()).rejects.toThrow(/MAX_UPLOAD_BYTES/);
    await file.discard();
  });

  it('a write that fails on the disk breaks the file: later writes and finish report it, every byte is released', async () => {
    let released = 0;
    let writes = 0;
    const real = createRunWriter(offLoop);
    // The disk fills up at the second run.
    const filling: RunWriter = {
      offLoop: real.offLoop,
      digest: () => real.digest(),
      write: (fd, data, position, hash, done) => {
        if (++writes === 2)
          return void setImmediate(done, Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
        real.write(fd, data, position, hash, done);
      },
    };
    const file = await SpoolFile.create({ dir, label: 'test', maxBytes: 64 * MiB, writer: filling, released: (n) => (released += n) });
    writeInPieces(file, randomBytes(2 * MiB + 100), 32 * 1024);
    await until(() => file.error !== null);
    expect(file.write(3 * MiB, Buffer.alloc(10))).toMatchObject({ code: 'ENOSPC' });
    await expect(file.finish()).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(released).toBe(2 * MiB + 100);
    await file.discard();
    await expect(fs.stat(file.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('Backpressure with spool files', () => {
  it('pausing flushes the partly filled buffers of every upload, so reading resumes', async () => {
    const socket = { paused: false, pause: () => (socket.paused = true), resume: () => (socket.paused = false) };
    const bp = new Backpressure(socket, 256 * 1024);
    const files = await Promise.all([0, 1, 2, 3].map(() => spool({ released: (n) => bp.release(n) })));
    const stop = bp.addFlusher(() => files.forEach((f) => f.flushPartial()));
    // Four uploads with 100 KB each: no buffer is full, yet the connection holds more than its cap.
    for (const f of files) f.write(0, Buffer.alloc(100 * 1024, 1));
    for (let i = 0; i < files.length; i++) bp.add(100 * 1024);
    expect(socket.paused).toBe(true);
    await until(() => !socket.paused);
    await until(() => bp.inFlight === 0);
    for (const f of files) expect(await onDisk(f.path)).toBe(100 * 1024);
    stop();
    await Promise.all(files.map((f) => f.discard()));
  });

  it('a removed flusher is not called', () => {
    const socket = { pause: () => undefined, resume: () => undefined };
    const bp = new Backpressure(socket, 10);
    let calls = 0;
    const stop = bp.addFlusher(() => calls++);
    bp.flushPartial();
    stop();
    bp.add(11);
    expect(calls).toBe(1);
  });
});
