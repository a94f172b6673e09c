import { randomUUID } from 'node:crypto';
import fs, { type Stats } from 'node:fs';
import path from 'node:path';
import type { Attributes, SFTPWrapper } from 'ssh2';
import { toError } from '../errors.js';
import type { AcceptedFileName, Logger } from '../types.js';
import { longname, toAttrs } from './attrs.js';
import type { Backpressure } from './backpressure.js';
import { classifyName, refusedNameMessage, type NameKind } from './file-names.js';
import type { HashCache } from './hash-cache.js';
import { normalizeVirtual, resolveJailPath, type JailPath } from './jail.js';
import { MAX_UPLOADS_PER_TENANT, type Release } from './limits.js';
import { parseOpenFlags, type OpenMode } from './open-flags.js';
import { releasePageCache } from './page-cache.js';
import { receiveFile, type ReceiptDeps } from './receipt.js';
import { RENAMING_SUFFIX, sha256OfFile, SpoolFile } from './spool.js';
import { NO_FOLDERS, refuse, STATUS, statusFor } from './status.js';
import { MAX_TEMP_FILES, tempFiles } from './temp-files.js';

/** Everything one SFTP session needs; built per connection by the server. */
export interface SessionContext {
  tenant: string;
  /** DATA_DIR/sftp/<tenant>: what the client sees as `/`. */
  root: string;
  spoolDir: string;
  keyFingerprint: string;
  remoteAddress: string;
  maxUploadBytes: number;
  logger: Logger;
  receipts: ReceiptDeps;
  hashes: HashCache;
  backpressure: Backpressure;
  /** Called on every request (the idle timeout counts from the last one). */
  touch(): void;
  /** Called when the number of uploads in progress changes (shutdown waits for them). */
  uploadsChanged(): void;
  received(info: { tenant: string; fileName: AcceptedFileName; bytes: number; sha256: string; uploadId: string }): void;
  uploadFailed(info: { tenant: string; fileName: string; reason: 'name-refused' | 'failed' | 'cut-off' }): void;
  /** Why this login may no longer open or deliver files (receipt.ts accessWithdrawn), or null. */
  accessWithdrawn(): Promise<string | null>;
  /** Ends the connection once the reply being sent has left. */
  endConnection(reason: string): void;
  /** A place among the tenant's open uploads (limits.ts MAX_UPLOADS_PER_TENANT), or null if none is left. */
  uploadSlot(): Release | null;
}

interface DirEntry {
  filename: string;
  longname: string;
  attrs: Attributes;
}

type Handle =
  | { kind: 'read'; fd: number; name: string }
  | { kind: 'dir'; entries: DirEntry[] | null }
  | {
      kind: 'upload';
      name: string;
      real: string;
      nameKind: Exclude<NameKind, { kind: 'other' }>;
      mode: OpenMode;
      spool: SpoolFile;
      closing: boolean;
      /** Gives back the tenant's upload place once the file is received or discarded. */
      slot: Release;
    };

type UploadHandle = Extract<Handle, { kind: 'upload' }>;
/** Sends one reply (see SftpSession.inOrder). */
type Send = () => void;

const JOINED_UPLOAD =
  'this would keep part of the previous file: rosterd does not resume or append to an upload (a cut-off transfer is ' +
  'never kept, so there is nothing to continue). Nothing was received; upload the whole file again';
const APPEND_REFUSED =
  'rosterd does not resume or append to an upload: this would add to the previous file (a cut-off transfer is never ' +
  'kept, so there is nothing to continue). Nothing was received; upload the whole file again, not resuming or appending ' +
  "(curl's -C - or --append, sftp's reput)";
const MAX_READ = 255 * 1024;
const NAMES_PER_READDIR = 100;
const MAX_HANDLES = 64;

/**
 * One SFTP channel of an authenticated tenant: answers the requests OpenSSH sftp/scp, curl,
 * paramiko, lftp and WinSCP send, inside the tenant's jail (PRODUCT.md §2).
 */
export class SftpSession {
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  /** OPEN requests between the handle limit's check and their handle (see checkHandleLimit). */
  private opening = 0;
  /** CLOSE requests of uploads still being received; ending waits for them. */
  private readonly finishing = new Set<Promise<void>>();
  private ended = false;
  private aborted: Promise<void> | null = null;
  /** When checkAccess last found the login good (performance.now()). */
  private accessCheckedAt = -Infinity;
  /** Settles once the last request that took its turn is done (see inTurn). */
  private lastTurn: Promise<unknown> = Promise.resolve();
  /** READs not yet answered, each settling when it is; a CLOSE waits for those sent before it. */
  private readonly reading = new Set<Promise<void>>();
  /** Replies not yet sent, in the order their requests arrived (see inOrder). */
  private readonly replies: Array<{ send: Send | null }> = [];
  private readonly stopFlushing: () => void;

  constructor(
    private readonly ctx: SessionContext,
    private readonly sftp: SFTPWrapper,
  ) {
    this.stopFlushing = ctx.backpressure.addFlusher(() => {
      for (const h of this.handles.values()) if (h.kind === 'upload') h.spool.flushPartial();
    });
    /**
     * `checked`: the login is checked still good first (checkAccess), so a session whose key was
     * revoked or whose tenant was suspended can no longer list, stat, rename or remove anything.
     * OPEN checks once the path is known; READ, at most once a second (a download is many READs).
     * `inTurn` (see there): false for READ, whose many requests a download keeps in flight, and
     * CLOSE, which takes its turn itself.
     */
    const on = (
      event: string,
      fn: (id: number, ...args: never[]) => Promise<Send> | Send,
      { checked = true, inTurn = true }: { checked?: boolean; inTurn?: boolean } = {},
    ) =>
      sftp.on(event, (id: number, ...args: never[]) => {
        ctx.touch();
        const answer = this.inOrder();
        const run = () => (checked ? this.checkAccess().then(() => fn.call(this, id, ...args)) : fn.call(this, id, ...args));
        let result: Promise<Send> | Send;
        try {
          result = inTurn ? this.inTurn(run) : run();
        } catch (err) {
          return answer(this.fail(id, err, event));
        }
        if (typeof result === 'function') return answer(result);
        result.then(answer, (err: unknown) => answer(this.fail(id, err, event)));
      });
    on('REALPATH', this.realpath);
    on('STAT', this.stat);
    on('LSTAT', this.stat);
    on('FSTAT', this.fstat);
    on('OPEN', this.open, { checked: false });
    on('READ', this.read, { checked: false, inTurn: false });
    on('CLOSE', this.close, { checked: false, inTurn: false }); // an upload's CLOSE checks before it is received
    on('SETSTAT', this.setstat);
    on('FSETSTAT', this.fsetstat);
    on('OPENDIR', this.opendir);
    on('READDIR', this.readdir);
    on('REMOVE', this.remove);
    on('RENAME', this.rename);
    on('MKDIR', (id: number) => () => this.sftp.status(id, STATUS.PERMISSION_DENIED, NO_FOLDERS), { checked: false });
    on('RMDIR', (id: number) => () => this.sftp.status(id, STATUS.PERMISSION_DENIED, NO_FOLDERS), { checked: false });
    on('SYMLINK', (id: number) => () => this.sftp.status(id, STATUS.PERMISSION_DENIED, 'links cannot be created here'), {
      checked: false,
    });
    on('EXTENDED', this.extended);
    on('READLINK', (id: number) => () => this.sftp.status(id, STATUS.NO_SUCH_FILE, 'there are no links here'), { checked: false });
    // The hot path, without promises.
    sftp.on('WRITE', (id: number, handle: Buffer, offset: number, data: Buffer) => {
      ctx.touch();
      const answer = this.inOrder();
      try {
        this.write(id, handle, offset, data, answer);
      } catch (err) {
        answer(this.fail(id, err, 'WRITE'));
      }
    });
  }

  /**
   * Reserves the next place in the order replies go out. Requests run in parallel, but replies
   * leave in the order the requests came: OpenSSH's client truncates an upload whose WRITE
   * acknowledgements, or a download whose READ replies, arrive out of order (it sees a hole and
   * cuts the file at the "highest contiguous point"); its own server answers strictly in order.
   */
  private inOrder(): (send: Send) => void {
    const slot: { send: Send | null } = { send: null };
    this.replies.push(slot);
    return (send) => {
      slot.send = send;
      while (this.replies.length > 0 && this.replies[0]?.send) {
        const next = this.replies.shift()?.send;
        try {
          next?.();
        } catch {
          // the channel is gone; a late reply is dropped
        }
      }
    };
  }

  /**
   * Runs `work` once every request before it that took its turn has been answered. Requests on
   * one file must be processed as if the client had waited for each answer (SFTP v3,
   * draft-ietf-secsh-filexfer-02 §6.1), and most wait for the database (checkAccess) first:
   * run side by side, a later one overtook an earlier one. lftp removes users.csv and renames its
   * temporary file onto it without waiting in between, and the removal could come second and
   * delete the file just received; it sends CLOSE of a folder while a READDIR is in flight, which
   * was answered "invalid handle". WRITE and READ keep their fast paths: a WRITE is taken in
   * arrival order as it comes, and READs only read.
   */
  private inTurn<T>(work: () => Promise<T> | T): Promise<T> {
    const turn = this.lastTurn.then(work);
    this.lastTurn = turn.catch(() => undefined);
    return turn;
  }

  /** Uploads opened and not yet received or discarded. */
  get activeUploads(): number {
    let n = 0;
    for (const h of this.handles.values()) if (h.kind === 'upload') n++;
    return n;
  }

  /** Waits for uploads whose CLOSE is being processed (the client asked for them: they complete). */
  async drain(): Promise<void> {
    while (this.finishing.size > 0) await Promise.allSettled([...this.finishing]);
  }

  /**
   * The session is over (client ended the channel, connection lost, shutdown): uploads the client
   * never closed are thrown away whole; read handles are closed.
   */
  abort(reason: string): Promise<void> {
    this.aborted ??= this.discardAll(reason);
    return this.aborted;
  }

  private async discardAll(reason: string): Promise<void> {
    this.ended = true;
    this.stopFlushing();
    const work: Promise<unknown>[] = [];
    for (const [key, h] of this.handles) {
      if (h.kind === 'upload' && h.closing) continue;
      this.handles.delete(key);
      if (h.kind === 'read') fs.close(h.fd, () => undefined);
      if (h.kind === 'upload') {
        this.ctx.logger.warn(
          { event: 'upload.discarded', file: h.name, bytes: h.spool.size, reason },
          'upload discarded: the file was never closed',
        );
        this.ctx.uploadFailed({ tenant: this.ctx.tenant, fileName: h.name, reason: 'cut-off' });
        work.push(h.spool.discard().catch(() => undefined));
        h.slot();
      }
    }
    await Promise.all(work);
    this.ctx.uploadsChanged();
    await this.drain();
  }

  private fail(id: number, err: unknown, request: string): Send {
    const { status, message, expected } = statusFor(err);
    if (!expected) this.ctx.logger.error({ err: toError(err), request }, 'SFTP request failed');
    return () => this.sftp.status(id, status, message);
  }

  private resolve(clientPath: string): JailPath {
    return resolveJailPath(this.ctx.root, clientPath);
  }

  /**
   * Each handle holds a file descriptor (an upload, also a spool file): a client cannot pile them
   * up. OPENs still on their way to a handle count too, or many sent at once would all pass.
   */
  private checkHandleLimit(): void {
    if (this.handles.size + this.opening >= MAX_HANDLES)
      throw refuse.failure(`too many open files (at most ${MAX_HANDLES}); close some first`);
  }

  /**
   * Registers a handle whose file was opened across awaits, as the last step of OPEN. A session
   * that ended meanwhile has discarded its handles already: this one's file is let go instead
   * (`dispose`) and the request fails, so nothing stays open in a dead session.
   */
  private async adopt(h: Handle, dispose: () => unknown): Promise<Buffer> {
    if (this.ended) {
      await dispose();
      throw refuse.failure('the session has ended');
    }
    return this.newHandle(h);
  }

  private newHandle(h: Handle): Buffer {
    const key = this.nextHandle++;
    this.handles.set(key, h);
    const buf = Buffer.allocUnsafe(4);
    buf.writeUInt32BE(key >>> 0, 0);
    return buf;
  }

  private handleKey(buf: Buffer): number {
    return buf.length === 4 ? buf.readUInt32BE(0) : -1;
  }

  /** A regular file in the jail, or null (missing, a link, a folder: nothing we show). */
  private async fileStats(p: Extract<JailPath, { kind: 'file' }>): Promise<Stats | null> {
    try {
      const stats = await fs.promises.lstat(p.real);
      return stats.isFile() ? stats : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  private async existingFile(clientPath: string): Promise<{ path: Extract<JailPath, { kind: 'file' }>; stats: Stats }> {
    const p = this.resolve(clientPath);
    if (p.kind === 'refused') throw refuse.denied(p.reason);
    if (p.kind !== 'file') throw p.kind === 'root' ? refuse.failure('this is the folder, not a file') : refuse.noSuchFile();
    const stats = await this.fileStats(p);
    if (stats === null) throw refuse.noSuchFile();
    return { path: p, stats };
  }

  // --- requests ---------------------------------------------------------------------------

  /**
   * Only names a path, never touches the disk: `..` at the root gives `/`, as a chrooted OpenSSH
   * does, so a client's `cd ..` stays at `/`. Opening or listing a path that climbs out is still
   * refused with a message.
   */
  private realpath(id: number, clientPath: string): Send {
    const p = this.resolve(normalizeVirtual(clientPath, { clamp: true }) ?? '/');
    if (p.kind === 'refused') throw refuse.denied(p.reason);
    return () => this.sftp.name(id, [{ filename: p.virtual, longname: p.virtual, attrs: {} as Attributes }]);
  }

  private async stat(id: number, clientPath: string): Promise<Send> {
    const p = this.resolve(clientPath);
    if (p.kind === 'root') {
      const stats = await fs.promises.stat(this.ctx.root);
      return () => this.sftp.attrs(id, toAttrs(stats));
    }
    const { stats } = await this.existingFile(clientPath);
    return () => this.sftp.attrs(id, toAttrs(stats));
  }

  private async fstat(id: number, handle: Buffer): Promise<Send> {
    const h = this.handles.get(this.handleKey(handle));
    if (h === undefined) throw refuse.badHandle();
    switch (h.kind) {
      case 'read': {
        const stats = await new Promise<Stats>((res, rej) => fs.fstat(h.fd, (e, s) => (e ? rej(e) : res(s))));
        return () => this.sftp.attrs(id, toAttrs(stats));
      }
      case 'upload': {
        const now = Date.now();
        return () => this.sftp.attrs(id, toAttrs({ mode: 0o100600, size: h.spool.size, atimeMs: now, mtimeMs: now }));
      }
      case 'dir': {
        const stats = await fs.promises.stat(this.ctx.root);
        return () => this.sftp.attrs(id, toAttrs(stats));
      }
    }
  }

  private async open(id: number, clientPath: string, flags: number): Promise<Send> {
    this.checkHandleLimit();
    this.opening++;
    try {
      return await this.openFile(id, clientPath, flags);
    } finally {
      this.opening--;
    }
  }

  private async openFile(id: number, clientPath: string, flags: number): Promise<Send> {
    const mode = parseOpenFlags(flags);
    const p = this.resolve(clientPath);
    if (p.kind === 'refused') throw refuse.denied(p.reason);
    if (p.kind === 'root') throw refuse.failure('this is the folder, not a file');
    await this.checkAccess();
    if (!mode.write) {
      if (p.kind === 'missing') throw refuse.noSuchFile();
      if ((await this.fileStats(p)) === null) throw refuse.noSuchFile();
      const fd = await new Promise<number>((res, rej) =>
        fs.open(p.real, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW, (e, fd) => (e ? rej(e) : res(fd))),
      );
      const handle = await this.adopt({ kind: 'read', fd, name: p.name }, () => fs.close(fd, () => undefined));
      return () => this.sftp.handle(id, handle);
    }
    if (p.kind === 'missing') throw refuse.denied(refusedNameMessage(p.virtual));
    const nameKind = classifyName(p.name);
    if (nameKind.kind === 'other') {
      this.ctx.logger.info({ file: p.name }, 'upload refused: name not accepted');
      this.ctx.uploadFailed({ tenant: this.ctx.tenant, fileName: p.name, reason: 'name-refused' });
      throw refuse.denied(refusedNameMessage(p.name));
    }
    let existing: Stats | null = null;
    try {
      existing = await fs.promises.lstat(p.real);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (existing !== null && !existing.isFile()) throw refuse.denied('this name is taken by something that is not a file');
    if (existing !== null && mode.create && mode.exclusive) throw refuse.failure('the file already exists');
    // Refused now rather than at CLOSE (as a resume without APPEND is, see finishUpload): curl opens
    // with APPEND for -C - and --append, and ignores a failed CLOSE, so it exited 0 having
    // delivered nothing, night after night.
    if (nameKind.kind === 'final' && mode.append && !mode.truncate && existing !== null && existing.size > 0) {
      this.ctx.logger.info({ file: p.name }, 'upload refused: an append or resume onto the received file');
      this.ctx.uploadFailed({ tenant: this.ctx.tenant, fileName: p.name, reason: 'failed' });
      throw refuse.unsupported(APPEND_REFUSED);
    }
    if (existing === null && !mode.create) throw refuse.noSuchFile();
    if (existing === null && nameKind.kind === 'temporary' && (await tempFiles(this.ctx.root)).length >= MAX_TEMP_FILES) {
      throw refuse.failure(
        `this folder already holds ${MAX_TEMP_FILES} temporary files that were never renamed; rename them onto users.csv or ` +
          'groups.csv, or remove them, first (they are removed on their own a day after they were last written)',
      );
    }
    // Writing without TRUNC onto an existing file (resume, append, patch) starts from a copy of it:
    // the visible file is never written in place.
    const copyFrom = existing !== null && !mode.truncate && existing.size > 0 ? p.real : undefined;
    const slot = this.ctx.uploadSlot();
    if (slot === null) {
      throw refuse.failure(`this district already has ${MAX_UPLOADS_PER_TENANT} files being uploaded at once; close or finish some first`);
    }
    let spool: SpoolFile;
    try {
      spool = await SpoolFile.create({
        dir: this.ctx.spoolDir,
        label: this.ctx.tenant,
        maxBytes: this.ctx.maxUploadBytes,
        released: (bytes) => this.ctx.backpressure.release(bytes),
        ...(copyFrom === undefined ? {} : { copyFrom }),
      });
      await this.releaseSuperseded(nameKind.target);
    } catch (err) {
      slot();
      throw err;
    }
    const handle = await this.adopt({ kind: 'upload', name: p.name, real: p.real, nameKind, mode, spool, closing: false, slot }, () => {
      slot();
      return spool.discard();
    });
    this.ctx.uploadsChanged();
    return () => this.sftp.handle(id, handle);
  }

  /**
   * A new upload of users.csv (or groups.csv) is starting: the memory the visible one (the
   * previous upload, also its received copy) holds in the page cache is handed back before the
   * data arrives, for the new file to reuse (page-cache.ts says why). After the spool is created,
   * which may have copied from it. The import of the previous file, if it has yet to run, reads it
   * from disk instead.
   */
  private async releaseSuperseded(target: AcceptedFileName): Promise<void> {
    const visible = path.join(this.ctx.root, target);
    try {
      await releasePageCache(visible);
    } catch (err) {
      this.ctx.logger.debug({ err: toError(err), file: target }, 'page cache of the previous upload not released');
    }
  }

  /**
   * The hot path: no promises, one positional write per request, acknowledged as soon as it is
   * accepted rather than when it reaches the disk. Clients that wait for acknowledgements
   * (curl/libssh2 keeps few writes in flight) would otherwise pay a thread-pool round trip per
   * 32 KB. Nothing is lost by it: a write that fails on disk breaks the file, the CLOSE reports
   * the failure and nothing is received. Backpressure bounds the bytes accepted but not yet written.
   */
  private write(id: number, handle: Buffer, offset: number, data: Buffer, answer: (send: Send) => void): void {
    const h = this.handles.get(this.handleKey(handle));
    if (h === undefined || h.kind !== 'upload' || h.closing) {
      throw h?.kind === 'read' ? refuse.denied('the file was opened for reading') : refuse.badHandle();
    }
    const at = h.mode.append ? h.spool.size : offset;
    const length = data.length;
    const refused = h.spool.write(at, data);
    if (refused !== null) throw refused;
    this.ctx.backpressure.add(length);
    answer(() => this.sftp.status(id, STATUS.OK));
  }

  /**
   * READ does not take a turn (a download keeps many in flight), but a CLOSE sent after it waits
   * for it (see close): lftp reads ahead and closes the file once it has the EOF, and a READ still
   * waiting for the login check would otherwise find its handle gone ("invalid handle").
   */
  private read(id: number, handle: Buffer, offset: number, length: number): Promise<Send> {
    const reply = this.readChunk(id, handle, offset, length);
    const done = reply.then(
      () => undefined,
      () => undefined,
    );
    this.reading.add(done);
    void done.then(() => this.reading.delete(done));
    return reply;
  }

  private async readChunk(id: number, handle: Buffer, offset: number, length: number): Promise<Send> {
    if (performance.now() - this.accessCheckedAt > 1000) await this.checkAccess();
    const h = this.handles.get(this.handleKey(handle));
    if (h === undefined || h.kind === 'dir') throw refuse.badHandle();
    const n = Math.min(length, MAX_READ);
    let chunk: Buffer;
    if (h.kind === 'upload') {
      if (!h.mode.read) throw refuse.denied('the file was opened for writing only');
      chunk = await h.spool.read(offset, n);
    } else {
      const buffer = Buffer.allocUnsafe(n);
      const got = await new Promise<number>((res, rej) => fs.read(h.fd, buffer, 0, n, offset, (e, bytes) => (e ? rej(e) : res(bytes))));
      chunk = buffer.subarray(0, got);
    }
    return chunk.length === 0 ? () => this.sftp.status(id, STATUS.EOF) : () => this.sftp.data(id, chunk);
  }

  /**
   * Takes its turn (inTurn) like other requests, but an upload is marked closing at once: WRITEs
   * that come after its CLOSE are refused, and a session ending meanwhile leaves it to finish.
   * READs sent before it are answered first (see read).
   */
  private async close(id: number, handle: Buffer): Promise<Send> {
    const key = this.handleKey(handle);
    const h = this.handles.get(key);
    const readsBefore = Promise.all(this.reading);
    if (h?.kind !== 'upload') return this.inTurn(() => readsBefore.then(() => this.closeHandle(id, key)));
    if (h.closing) throw refuse.badHandle();
    h.closing = true;
    const done = this.inTurn(() => readsBefore.then(() => this.finishUpload(h))).finally(() => {
      h.slot();
      this.handles.delete(key);
      this.finishing.delete(done);
    });
    this.finishing.add(done);
    // Whoever waits for this upload to end (shutdown) hears of it only after the client has its
    // answer: ending the connection first would leave the client without one.
    const thenNotify =
      (send: Send): Send =>
      () => {
        try {
          send();
        } finally {
          this.ctx.uploadsChanged();
        }
      };
    try {
      await done;
    } catch (err) {
      await h.spool.discard().catch(() => undefined);
      const reason = statusFor(err).message;
      this.ctx.logger.warn({ file: h.name, reason }, 'upload failed: nothing was received');
      this.ctx.uploadFailed({ tenant: this.ctx.tenant, fileName: h.name, reason: 'failed' });
      return thenNotify(this.fail(id, err, 'CLOSE'));
    }
    return thenNotify(() => this.sftp.status(id, STATUS.OK));
  }

  /** CLOSE of a file opened for reading, or of a folder. */
  private async closeHandle(id: number, key: number): Promise<Send> {
    const h = this.handles.get(key);
    if (h === undefined || h.kind === 'upload') throw refuse.badHandle();
    this.handles.delete(key);
    if (h.kind === 'read') await new Promise<void>((res, rej) => fs.close(h.fd, (e) => (e ? rej(e) : res())));
    return () => this.sftp.status(id, STATUS.OK);
  }

  /** CLOSE of an upload: the accepted name is received; a temporary name becomes visible. */
  private async finishUpload(h: UploadHandle): Promise<void> {
    // A temporary file may be resumed (WinSCP continues its own .filepart); an accepted name
    // holds the previous complete upload, and a cut-off transfer is never kept, so continuing it
    // would join last night's file to tonight's.
    if (h.nameKind.kind !== 'temporary' && h.spool.keepsCopiedBytes()) throw refuse.unsupported(JOINED_UPLOAD);
    const { bytes, sha256 } = await h.spool.finish();
    if (h.nameKind.kind === 'temporary') {
      await fs.promises.rename(h.spool.path, h.real);
      h.spool.moved();
      this.ctx.hashes.remember(h.real, await fs.promises.lstat(h.real), sha256);
      this.ctx.logger.debug({ file: h.name, bytes }, 'temporary file written');
      return;
    }
    await this.receive(h.nameKind.target, h.spool.path, h.real, bytes, sha256);
    h.spool.moved();
  }

  /**
   * A key revoked or a tenant suspended after login: the session may do nothing more (the file
   * being closed is not received), and the connection ends.
   */
  private async checkAccess(receiving = false): Promise<void> {
    const reason = await this.ctx.accessWithdrawn();
    if (reason === null) {
      this.accessCheckedAt = performance.now();
      return;
    }
    this.ctx.logger.warn(
      { event: 'access.withdrawn', reason, keyFingerprint: this.ctx.keyFingerprint },
      'session refused: access withdrawn',
    );
    this.ctx.endConnection(`access withdrawn after login: ${reason}`);
    throw refuse.denied(`${reason} after you logged in${receiving ? ': nothing was received' : ''}`);
  }

  /** Immutable copy + pending upload row, then the file becomes the visible `users.csv`. */
  private async receive(fileName: AcceptedFileName, source: string, visible: string, bytes: number, sha256: string): Promise<void> {
    await this.checkAccess(true);
    const receipt = await receiveFile(this.ctx.receipts, {
      tenant: this.ctx.tenant,
      fileName,
      source,
      bytes,
      sha256,
      keyFingerprint: this.ctx.keyFingerprint,
      remoteAddress: this.ctx.remoteAddress,
    });
    this.ctx.hashes.forget(source);
    // The upload's row is committed: it is received and will be imported, whatever comes next.
    // Told that it failed, the client would send it again and queue it twice; so a file that
    // cannot be shown under its name (a full disk that cannot grow the folder for a first upload)
    // is logged, and the client still told OK. The stored copy is its own link to the data.
    await fs.promises.rename(source, visible).catch(async (err: unknown) => {
      this.ctx.logger.warn(
        { err: toError(err), file: fileName, uploadId: receipt.uploadId },
        'upload received, but it cannot be shown in the folder under its name; listing shows the previous one, if any',
      );
      await fs.promises.rm(source, { force: true }).catch(() => undefined);
    });
    this.ctx.logger.info(
      { event: 'upload.received', file: fileName, bytes, sha256, uploadId: receipt.uploadId, keyFingerprint: this.ctx.keyFingerprint },
      'upload received',
    );
    this.ctx.received({ tenant: this.ctx.tenant, fileName, bytes, sha256, uploadId: receipt.uploadId });
  }

  private async setstat(id: number, clientPath: string, attrs: Partial<Attributes>): Promise<Send> {
    // Times and permissions a client sets after an upload (`put -p`, WinSCP) are accepted and
    // ignored: the files' modes are ours to keep. A size is not: it would change a received
    // file without an upload, so saying OK would be a lie.
    const p = this.resolve(clientPath);
    const size = p.kind === 'root' ? undefined : (await this.existingFile(clientPath)).stats.size;
    if (typeof attrs.size === 'number' && attrs.size !== size) {
      throw refuse.denied('a file here changes only by uploading it again; its size cannot be set');
    }
    return () => this.sftp.status(id, STATUS.OK);
  }

  private async fsetstat(id: number, handle: Buffer, attrs: Partial<Attributes>): Promise<Send> {
    const h = this.handles.get(this.handleKey(handle));
    if (h === undefined) throw refuse.badHandle();
    if (h.kind === 'upload' && typeof attrs.size === 'number' && attrs.size !== h.spool.size) await h.spool.truncate(attrs.size);
    return () => this.sftp.status(id, STATUS.OK);
  }

  private async opendir(id: number, clientPath: string): Promise<Send> {
    this.checkHandleLimit();
    const p = this.resolve(clientPath);
    if (p.kind === 'refused') throw refuse.denied(p.reason);
    if (p.kind === 'missing') throw refuse.noSuchFile();
    if (p.kind === 'file') throw (await this.fileStats(p)) === null ? refuse.noSuchFile() : refuse.failure('this is a file, not a folder');
    const handle = this.newHandle({ kind: 'dir', entries: null });
    return () => this.sftp.handle(id, handle);
  }

  private async readdir(id: number, handle: Buffer): Promise<Send> {
    const h = this.handles.get(this.handleKey(handle));
    if (h === undefined || h.kind !== 'dir') throw refuse.badHandle();
    if (h.entries === null) {
      const now = Math.floor(Date.now() / 1000);
      const entries: DirEntry[] = [];
      for (const name of (await fs.promises.readdir(this.ctx.root)).sort()) {
        const stats = await fs.promises.lstat(`${this.ctx.root}/${name}`).catch(() => null);
        if (stats === null || !stats.isFile()) continue; // links and anything odd stay invisible
        const attrs = toAttrs(stats);
        entries.push({ filename: name, longname: longname(name, attrs, this.ctx.tenant, now), attrs });
      }
      h.entries = entries;
    }
    const batch = h.entries.splice(0, NAMES_PER_READDIR);
    if (batch.length === 0) return () => this.sftp.status(id, STATUS.EOF);
    return () => this.sftp.name(id, batch);
  }

  private async remove(id: number, clientPath: string): Promise<Send> {
    const { path: p } = await this.existingFile(clientPath);
    await fs.promises.unlink(p.real);
    this.ctx.hashes.forget(p.real);
    return () => this.sftp.status(id, STATUS.OK);
  }

  /**
   * posix-rename@openssh.com is what our RENAME already does (it replaces the target in one
   * step); paramiko's posix_rename sends it whether or not the server lists it. Any other
   * extension gets an answer that names it, rather than a bare "unsupported".
   */
  private async extended(id: number, name: string, data: Buffer | undefined): Promise<Send> {
    if (name === 'posix-rename@openssh.com') {
      const paths = data === undefined ? null : readTwoStrings(data);
      if (paths === null) throw refuse.failure('malformed posix-rename@openssh.com request');
      return this.rename(id, paths[0], paths[1]);
    }
    return () => this.sftp.status(id, STATUS.OP_UNSUPPORTED, `the SFTP extension ${name.slice(0, 64)} is not supported here`);
  }

  private async rename(id: number, fromPath: string, toPath: string): Promise<Send> {
    const { path: from, stats } = await this.existingFile(fromPath);
    const to = this.resolve(toPath);
    if (to.kind === 'refused') throw refuse.denied(to.reason);
    if (to.kind !== 'file') throw refuse.denied(refusedNameMessage(to.virtual));
    if (to.name === from.name) return () => this.sftp.status(id, STATUS.OK);
    const target = classifyName(to.name);
    if (target.kind === 'other') throw refuse.denied(refusedNameMessage(to.name));
    if (classifyName(from.name).kind !== 'temporary') {
      throw refuse.denied('only a temporary upload (such as users.csv.filepart) can be renamed, onto users.csv or groups.csv');
    }
    const existing = await fs.promises.lstat(to.real).catch(() => null);
    if (existing !== null && !existing.isFile()) throw refuse.denied('this name is taken by something that is not a file');
    if (target.kind === 'temporary') {
      const sha256 = this.ctx.hashes.lookup(from.real, stats);
      await fs.promises.rename(from.real, to.real);
      this.ctx.hashes.forget(from.real);
      if (sha256 !== undefined) this.ctx.hashes.remember(to.real, await fs.promises.lstat(to.real), sha256);
      return () => this.sftp.status(id, STATUS.OK);
    }
    // Claimed first: the temporary file moves to a private name in one step, so that another
    // session renaming or rewriting it meanwhile cannot change what is hashed, kept and recorded
    // (and of two sessions renaming it at once, one gets it and the other "no such file").
    const claimed = path.join(this.ctx.spoolDir, `${this.ctx.tenant}-${randomUUID()}${RENAMING_SUFFIX}`);
    try {
      await fs.promises.rename(from.real, claimed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw refuse.noSuchFile();
      throw err;
    }
    try {
      const claimedStats = await fs.promises.lstat(claimed);
      const sha256 = this.ctx.hashes.lookup(from.real, claimedStats) ?? (await sha256OfFile(claimed));
      this.ctx.hashes.forget(from.real);
      await this.receive(target.target, claimed, to.real, claimedStats.size, sha256);
    } catch (err) {
      // Nothing was received: the temporary file goes back, for the client to try again.
      await fs.promises.rename(claimed, from.real).catch(() => fs.promises.rm(claimed, { force: true }));
      throw err;
    }
    return () => this.sftp.status(id, STATUS.OK);
  }
}

/** Two SSH strings (uint32 length, bytes), as UTF-8; null when the data is malformed. */
function readTwoStrings(data: Buffer): [string, string] | null {
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < 2; i++) {
    if (at + 4 > data.length) return null;
    const len = data.readUInt32BE(at);
    if (at + 4 + len > data.length) return null;
    out.push(data.toString('utf8', at + 4, at + 4 + len));
    at += 4 + len;
  }
  return [out[0] as string, out[1] as string];
}
