import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRunWriter, type RunWriter } from './run-writer.js';

/** A write that would make the file larger than MAX_UPLOAD_BYTES. */
export class TooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`the file is larger than the limit of ${maxBytes} bytes (MAX_UPLOAD_BYTES); nothing was received`);
    this.name = 'TooLargeError';
  }
}

export function spoolDir(dataDir: string): string {
  return path.join(dataDir, 'spool');
}

export interface SpoolOptions {
  dir: string;
  /** Prefix of the spool file's name, for operators reading the folder (the tenant). */
  label: string;
  maxBytes: number;
  /** Start from a copy of this file (a write without TRUNC onto an existing file: resume, append). */
  copyFrom?: string;
  /** Called with a number of accepted bytes once they are on disk (or failed). */
  released?: (bytes: number) => void;
  /** What writes and hashes the file's data (default: createRunWriter(), the addon where built). */
  writer?: RunWriter;
}

/** Contiguous writes are gathered into buffers of this size and written with one write each. */
const RUN_BYTES = 1024 * 1024;
/**
 * Free run buffers one file keeps for reuse: enough for what Backpressure lets a connection have
 * waiting for the disk (8 MiB), so a steady upload allocates none.
 */
const POOL_SIZE = 10;

/**
 * A partly filled run older than this goes to the disk at the next write: a client sending a
 * trickle holds no memory for long, and what it sent is on disk.
 */
const PARTIAL_RUN_MAX_AGE_MS = 10_000;

/** Contiguous data gathered for one write to disk. */
interface Run {
  kind: 'run';
  position: number;
  buf: Buffer;
  used: number;
  startedAt: number;
}

/** A change of size (SETSTAT), applied in order with the runs around it. */
interface Truncation {
  kind: 'truncate';
  size: number;
  done: (err: Error | null) => void;
}

/**
 * Spool files open in this process: the sweep of abandoned spool files must never take one of
 * them, however old (a client may be slow, or the idle timeout off).
 */
const openSpoolPaths = new Set<string>();

/**
 * How often the spool files open in this process get their modification time refreshed. Another
 * process on the same data directory (a replica) can tell a live spool file from an abandoned one
 * only by its age, and a client that goes quiet mid-upload (the idle timeout off) changes nothing
 * for hours: this keeps its file young. Far below the least age the sweep takes (an hour).
 */
export const SPOOL_HEARTBEAT_MS = 10 * 60_000;
let heartbeat: NodeJS.Timeout | null = null;

function track(file: string): void {
  openSpoolPaths.add(file);
  heartbeat ??= setInterval(() => void touchOpenSpoolFiles(), SPOOL_HEARTBEAT_MS).unref();
}

function untrack(file: string): void {
  openSpoolPaths.delete(file);
  if (openSpoolPaths.size === 0 && heartbeat !== null) {
    clearInterval(heartbeat);
    heartbeat = null;
  }
}

/** Refreshes the modification time of every spool file open in this process (SPOOL_HEARTBEAT_MS). */
export async function touchOpenSpoolFiles(now = new Date()): Promise<void> {
  // A file that has just been received or thrown away is gone: nothing to keep young.
  await Promise.all([...openSpoolPaths].map((file) => fs.promises.lutimes(file, now, now).catch(() => undefined)));
}

/**
 * One file being written by a client, in a private spool file outside the jail: nothing the
 * client writes is visible, or recorded, before it closes the file (PRODUCT.md §2 "Receipt").
 * Writes are positional (offsets honoured, any order, never O_APPEND).
 *
 * For speed, an accepted write is copied into a run buffer and acknowledged at once. A run goes
 * to the disk when it is full, when the file must settle (close, read-back, truncate) or when the
 * connection stops reading (`flushPartial`), never half full just because the disk is idle: a
 * client that keeps few writes in flight (curl) would then cause a thread-pool round trip, which
 * wakes two threads, for every batch it sends. Runs go one after another (so a later write over
 * the same bytes always wins), and the SHA-256 is computed from them as they go, while the data
 * arrives in order (otherwise by re-reading at close), by the same RunWriter that writes them: on
 * the thread pool where the addon is built (run-writer.ts). Copying lets the socket's buffers die
 * young (they would otherwise be kept alive until their bytes reach the disk, and the garbage
 * collector would pay for it); the run buffers are reused. The caller bounds what is accepted
 * but not yet written (Backpressure, via `released`).
 */
export class SpoolFile {
  readonly path: string;
  /** Bytes in the file: the highest offset written (or the copied file's size). */
  size: number;
  /** Whether the writer's SHA-256 can still be the file's (it gets the data in order). */
  private hashing: boolean;
  /** Bytes of the file hashed so far (from 0, in order). */
  private hashedBytes = 0;
  /** The run being filled, what waits for the disk (in order), and whether one is being written. */
  private run: Run | null = null;
  private readonly queue: Array<Run | Truncation> = [];
  private writing = false;
  private readonly pool: Buffer[] = [];
  private tickScheduled = false;
  private waiters: Array<() => void> = [];
  private failure: Error | null = null;
  private closed = false;
  private fdOpen = true;
  /** Bytes at the start of the file that may still be the copied file's (see keepsCopiedBytes). */
  private copied: number;
  /** What this handle's writes have covered, while `copied` > 0. */
  private readonly written = new Coverage();

  private constructor(
    private readonly fd: number,
    spoolPath: string,
    initialSize: number,
    private readonly maxBytes: number,
    private readonly released: (bytes: number) => void,
    private readonly writer: RunWriter,
  ) {
    this.path = spoolPath;
    this.size = initialSize;
    this.hashing = initialSize === 0;
    this.copied = initialSize;
  }

  /**
   * Whether the file still holds bytes of the file it was copied from (copyFrom) that no write
   * replaced: a resume (`reput`, `curl -C -`) or an append onto a received users.csv, or a
   * shorter file written over it without TRUNC. Such a file joins two uploads.
   */
  keepsCopiedBytes(): boolean {
    return this.copied > 0 && !this.written.coversFromZero(Math.min(this.copied, this.size));
  }

  static async create(options: SpoolOptions): Promise<SpoolFile> {
    const writer = options.writer ?? createRunWriter();
    await fs.promises.mkdir(options.dir, { recursive: true, mode: 0o700 });
    const spoolPath = path.join(options.dir, `${options.label}.${randomUUID()}.part`);
    let initialSize = 0;
    if (options.copyFrom !== undefined) {
      await fs.promises.copyFile(options.copyFrom, spoolPath, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
      await fs.promises.chmod(spoolPath, 0o600);
      initialSize = (await fs.promises.stat(spoolPath)).size;
    }
    const flags =
      fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | (options.copyFrom === undefined ? fs.constants.O_EXCL : 0);
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(spoolPath, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
    );
    track(spoolPath);
    return new SpoolFile(fd, spoolPath, initialSize, options.maxBytes, options.released ?? (() => undefined), writer);
  }

  /** The error that broke this file, if any (every later write and the close report it). */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Accepts a positional write, or returns why not (over MAX_UPLOAD_BYTES, the file already
   * broken or closed). The data is copied: the caller may reuse `data` at once. `released(bytes)`
   * is called as accepted bytes reach the disk. A failure on disk breaks the file: later writes
   * and finish() report it, so a file with a failed write is never received.
   */
  write(offset: number, data: Buffer): Error | null {
    if (this.failure) return this.failure;
    if (this.closed) return new Error('the file is already closed');
    const end = offset + data.length;
    if (end > this.maxBytes) {
      this.failure = new TooLargeError(this.maxBytes);
      return this.failure;
    }
    if (data.length === 0) return null; // changes nothing, not even the size
    if (end > this.size) this.size = end;
    if (this.copied > 0) this.written.add(offset, end);
    let run = this.run;
    if (run === null || run.position + run.used !== offset || run.used + data.length > run.buf.length) {
      if (run !== null) this.queue.push(run);
      run = { kind: 'run', position: offset, buf: this.takeBuffer(data.length), used: 0, startedAt: performance.now() };
      this.run = run;
    }
    data.copy(run.buf, run.used);
    run.used += data.length;
    // Hashing and handing data to the disk wait until the acknowledgement has gone out: the
    // client's next data is then already on its way while this process works.
    if (!this.tickScheduled) {
      this.tickScheduled = true;
      setImmediate(this.tick);
    }
    return null;
  }

  private takeBuffer(atLeast: number): Buffer {
    if (atLeast > RUN_BYTES) return Buffer.allocUnsafeSlow(atLeast);
    return this.pool.pop() ?? Buffer.allocUnsafeSlow(RUN_BYTES);
  }

  private readonly tick = (): void => {
    this.tickScheduled = false;
    const run = this.run;
    if (run !== null && (run.used === run.buf.length || performance.now() - run.startedAt > PARTIAL_RUN_MAX_AGE_MS)) this.flush();
    else this.writeNext();
  };

  /**
   * Sends the run being filled to the disk now, full or not. For a connection that has stopped
   * reading: bytes in partly filled runs would otherwise never be released, and reading would
   * never resume.
   */
  flushPartial(): void {
    this.flush();
  }

  /** Queues the run being filled for the disk. */
  private flush(): void {
    if (this.run === null) return;
    this.queue.push(this.run);
    this.run = null;
    this.writeNext();
  }

  private writeNext(): void {
    if (this.writing) return;
    const run = this.queue.shift();
    if (run === undefined) return this.wake();
    if (run.kind === 'truncate') return this.applyTruncation(run);
    let hash = false;
    if (this.hashing) {
      if (run.position === this.hashedBytes) {
        hash = true;
        this.hashedBytes += run.used;
      } else {
        this.hashing = false; // out of order or overlapping: re-read at close
      }
    }
    this.writing = true;
    this.writer.write(this.fd, run.buf.subarray(0, run.used), run.position, hash, (err) => {
      this.writing = false;
      if (err && !this.failure) this.failure = err;
      if (run.buf.length === RUN_BYTES && this.pool.length < POOL_SIZE) this.pool.push(run.buf);
      this.released(run.used);
      this.writeNext();
    });
  }

  /**
   * SETSTAT size on an open upload: shorten or extend the file. It takes its place among the
   * writes: those accepted before it are cut or extended by it, those after it apply on top.
   */
  truncate(size: number): Promise<void> {
    if (size > this.maxBytes) return Promise.reject(new TooLargeError(this.maxBytes));
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('the file is already closed'));
    this.size = size;
    // Cut bytes are gone; bytes added by extending are zeros, not the copy's.
    this.copied = Math.min(this.copied, size);
    if (this.run !== null) this.queue.push(this.run);
    this.run = null;
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: 'truncate', size, done: (err) => (err ? reject(err) : resolve()) });
      this.writeNext();
    });
  }

  private applyTruncation(t: Truncation): void {
    // The hash so far stays right only if the file ends exactly where it ends.
    if (this.hashing && t.size !== this.hashedBytes) this.hashing = false;
    this.writing = true;
    fs.ftruncate(this.fd, t.size, (err) => {
      this.writing = false;
      if (err && !this.failure) this.failure = err;
      t.done(err);
      this.writeNext();
    });
  }

  /** Reads back part of the file (a client that opened it for reading and writing). */
  async read(offset: number, length: number): Promise<Buffer> {
    await this.settled(); // writes already acknowledged are read back
    const buffer = Buffer.allocUnsafe(length);
    return new Promise((resolve, reject) =>
      fs.read(this.fd, buffer, 0, length, offset, (err, n) => (err ? reject(err) : resolve(buffer.subarray(0, n)))),
    );
  }

  /** Writes what is still in memory and closes the file; its size and SHA-256. */
  async finish(): Promise<{ bytes: number; sha256: string }> {
    await this.settled();
    if (this.failure) throw this.failure;
    this.closed = true;
    // On disk before the client hears the file arrived: a district's SIS deletes or overwrites its
    // export once told, so a power loss after that must not take the roster with it (OpenSSH's
    // sftp-server does not sync). The addon starts the write-back as runs are written, so little
    // is left by now; without it this wrote the whole file, about 0.1 s per 200 MB here. It also
    // leaves the pages clean, so that the next upload can release them (page-cache.ts).
    await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
    await this.closeFd();
    const sha256 = this.hashing && this.hashedBytes === this.size ? this.writer.digest() : await sha256OfFile(this.path);
    return { bytes: this.size, sha256 };
  }

  /** The finished file has left the spool folder (moved by the caller): the sweep need not spare it. */
  moved(): void {
    untrack(this.path);
  }

  /**
   * Throws the file away (a transfer cut off, refused or failed): what still waits in memory is
   * dropped, not written. Safe to call more than once.
   */
  async discard(): Promise<void> {
    this.closed = true;
    const dropped = this.queue.splice(0);
    if (this.run !== null) dropped.push(this.run);
    this.run = null;
    for (const item of dropped) {
      if (item.kind === 'run') this.released(item.used);
      else item.done(new Error('the file was thrown away'));
    }
    await this.settled(); // the write in progress, if any
    await this.closeFd().catch(() => undefined);
    await fs.promises.rm(this.path, { force: true });
    untrack(this.path);
  }

  private closeFd(): Promise<void> {
    if (!this.fdOpen) return Promise.resolve();
    this.fdOpen = false;
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves once everything accepted so far is on disk (or failed). */
  private settled(): Promise<void> {
    this.flush();
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    if (this.waiters.length === 0) return; // the usual case, once per tick of a steady upload
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A client's temporary file claimed for receipt by a rename (session.ts); left only by a crash. */
export const RENAMING_SUFFIX = '.renaming';

/**
 * Removes spool files left by sessions of a process that died (their transfers were cut off).
 * Only files older than `olderThanMs` go: another process on the same data directory may be
 * writing the younger ones right now (and keeps the ones it writes young, SPOOL_HEARTBEAT_MS).
 */
export async function sweepSpool(dir: string, olderThanMs: number, nowMs: number): Promise<number> {
  let removed = 0;
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  for (const name of names) {
    const renaming = name.endsWith(RENAMING_SUFFIX);
    if (!name.endsWith('.part') && !renaming) continue;
    const file = path.join(dir, name);
    if (openSpoolPaths.has(file)) continue; // being written here, however slowly
    try {
      const stats = await fs.promises.lstat(file);
      // A claimed temporary file keeps the client's mtime; its claim (the rename) set its ctime.
      if (nowMs - (renaming ? stats.ctimeMs : stats.mtimeMs) > olderThanMs) {
        await fs.promises.rm(file, { force: true });
        removed++;
      }
    } catch {
      // gone already
    }
  }
  return removed;
}

/** Byte ranges written, merged; a file written in order stays one range. */
class Coverage {
  private readonly ranges: Array<[number, number]> = [];

  add(start: number, end: number): void {
    const last = this.ranges[this.ranges.length - 1];
    if (last !== undefined && start >= last[0] && start <= last[1]) {
      // Sorted by start, so the last range can grow without reaching another.
      if (end > last[1]) last[1] = end;
      return;
    }
    this.ranges.push([start, end]);
    this.ranges.sort((a, b) => a[0] - b[0]);
    const merged: Array<[number, number]> = [];
    for (const r of this.ranges) {
      const top = merged[merged.length - 1];
      if (top !== undefined && r[0] <= top[1]) top[1] = Math.max(top[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.ranges.splice(0, this.ranges.length, ...merged);
  }

  /** Whether [0, end) was written. */
  coversFromZero(end: number): boolean {
    if (end <= 0) return true;
    const first = this.ranges[0];
    return first !== undefined && first[0] === 0 && first[1] >= end;
  }
}
