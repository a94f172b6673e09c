import { createHash } from 'node:crypto';
import fs from 'node:fs';
import util from 'node:util';
import { nativeAddon, type NativeAddon, type NativeSha256 } from './native.js';

/**
 * Writes an upload's runs to its spool file and keeps the SHA-256 of the bytes it is told to add,
 * in the order written. With the addon (native/spool_write.c) both happen on the thread pool, in
 * one pass, and the data's write-back to the disk starts at once (Linux); without it, the hash is
 * computed on the event loop, the write goes through fs and the disk gets it all at the final sync.
 * The caller writes one run at a time, and reuses a run's buffer only once its write is done.
 */
export interface RunWriter {
  /** Whether hashing happens off the event loop (the addon is in use). */
  readonly offLoop: boolean;
  /** Writes all of `data` at `position`, after adding it to the SHA-256 when `hash` is true. */
  write(fd: number, data: Buffer, position: number, hash: boolean, done: (err: Error | null) => void): void;
  /** The SHA-256 (hex) of everything added. Once, after the last write is done; throws if a write failed. */
  digest(): string;
}

/** A writer for one file: through the addon where it is built and `offLoop` is not false. */
export function createRunWriter(offLoop = true): RunWriter {
  const addon = offLoop ? nativeAddon() : null;
  return addon === null ? new LoopRunWriter() : new PoolRunWriter(addon);
}

class PoolRunWriter implements RunWriter {
  readonly offLoop = true;
  /** Made by the first write that hashes: an upload that starts from a copy never hashes. */
  private state: NativeSha256 | null = null;

  constructor(private readonly addon: NativeAddon) {}

  write(fd: number, data: Buffer, position: number, hash: boolean, done: (err: Error | null) => void): void {
    let result: Promise<number>;
    try {
      result = this.addon.writeRun(fd, data, position, hash ? (this.state ??= this.addon.sha256()) : null);
    } catch (err) {
      // Misuse (two writes at once on one state): reported like a failed write, never thrown at the loop.
      process.nextTick(done, err as Error);
      return;
    }
    result.then(
      (code) => done(code === 0 ? null : writeError(code)),
      (err: Error) => done(err),
    );
  }

  digest(): string {
    this.state ??= this.addon.sha256(); // nothing was hashed: the SHA-256 of nothing
    return this.addon.digest(this.state);
  }
}

class LoopRunWriter implements RunWriter {
  readonly offLoop = false;
  private readonly hash = createHash('sha256');
  private failed = false;

  write(fd: number, data: Buffer, position: number, hash: boolean, done: (err: Error | null) => void): void {
    if (hash) this.hash.update(data);
    writeAll(fd, data, position, (err) => {
      if (err) this.failed = true;
      done(err);
    });
  }

  digest(): string {
    // As the addon does: the hash took bytes that never reached the file.
    if (this.failed) throw new Error('a write that added to this SHA-256 failed: it no longer matches any file');
    return this.hash.digest('hex');
  }
}

/** pwrite that finishes a partial write. */
function writeAll(fd: number, data: Buffer, position: number, done: (err: Error | null) => void): void {
  fs.write(fd, data, 0, data.length, position, (err, written) => {
    if (err) return done(err);
    if (written < data.length) return writeAll(fd, data.subarray(written), position + written, done);
    done(null);
  });
}

/** The addon's result as the error fs would have given (its `code` decides what the client is told). */
function writeError(code: number): Error {
  if (code < 0) return new Error('OpenSSL could not add the data to the SHA-256 of the upload');
  const name = util.getSystemErrorName(-code);
  return Object.assign(new Error(`${name}: could not write to the spool file`), { code: name, errno: -code, syscall: 'write' });
}
