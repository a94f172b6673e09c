import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { keyStanding } from '../store/keys.js';
import { insertUpload } from '../store/uploads.js';
import type { AcceptedFileName, Clock, Logger } from '../types.js';

export interface ReceiptDeps {
  dataDir: string;
  pool: pg.Pool;
  clock: Clock;
  logger: Logger;
}

export interface ReceivedFile {
  tenant: string;
  fileName: AcceptedFileName;
  /** The finished file: a closed spool file, or a temporary file the client renamed. */
  source: string;
  bytes: number;
  sha256: string;
  keyFingerprint: string;
  remoteAddress: string;
}

export interface Receipt {
  uploadId: string;
  storedPath: string;
  receivedAt: Date;
}

/**
 * Why a logged-in session may no longer read or deliver files: its key was revoked or its tenant
 * suspended after it logged in (an open session outlives both otherwise: a stolen key would keep
 * uploading as long as it stays active). Null while the login is still good.
 */
export async function accessWithdrawn(pool: pg.Pool, tenant: string, fingerprint: string): Promise<string | null> {
  switch (await keyStanding(pool, tenant, fingerprint)) {
    case 'ok':
      return null;
    case 'tenant-suspended':
      return "the district's account was suspended";
    case 'key-revoked':
      return 'this key was revoked';
    case 'unknown-tenant':
    case 'key-unknown':
      return 'the account no longer exists';
  }
}

export function uploadsDir(dataDir: string, tenant: string): string {
  return path.join(dataDir, 'uploads', tenant);
}

/**
 * Receives a finished file (PRODUCT.md §2 "Receipt"): keeps an immutable copy in
 * DATA_DIR/uploads/<tenant>/ (mode 0400) and records it as a pending upload. The copy is a hard
 * link to the finished file when possible (no second write of a large file); the finished file is
 * never written in place afterwards, because every later write goes to a new spool file.
 * If the row cannot be written, the copy is removed again and the error thrown.
 */
export async function receiveFile(deps: ReceiptDeps, file: ReceivedFile): Promise<Receipt> {
  const receivedAt = deps.clock.now();
  const dir = uploadsDir(deps.dataDir, file.tenant);
  const created = await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // A tenant's first upload creates its folder (and maybe uploads/): their names too must be on
  // disk before a row points into them.
  if (created !== undefined) {
    const top = path.dirname(created);
    for (let d = path.dirname(dir); ; d = path.dirname(d)) {
      await syncPath(d);
      if (d === top || d === path.dirname(d)) break;
    }
  }
  const copyName = `${receivedAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomUUID()}-${file.fileName}`;
  const storedAbs = path.join(dir, copyName);
  await linkOrCopy(file.source, storedAbs);
  const storedPath = path.relative(deps.dataDir, storedAbs);
  try {
    await fs.chmod(storedAbs, 0o400);
    // The copy's name on disk before its row commits (the data already is: the spool syncs it),
    // so that a power loss cannot leave a pending upload whose file is gone.
    await syncPath(dir);
    const upload = await insertUpload(deps.pool, {
      tenantSubdomain: file.tenant,
      fileName: file.fileName,
      bytes: file.bytes,
      sha256: file.sha256,
      storedPath,
      keyFingerprint: file.keyFingerprint,
      remoteAddress: file.remoteAddress,
      receivedAt,
      source: 'sftp',
    });
    return { uploadId: upload.id, storedPath, receivedAt };
  } catch (err) {
    await fs.rm(storedAbs, { force: true }).catch(() => undefined);
    throw err;
  }
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await fs.link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Another file system, or one without hard links: copy (a clone where the file system can).
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw err;
    await fs.copyFile(from, to, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
    await syncPath(to).catch(async (err: unknown) => {
      await fs.rm(to, { force: true }).catch(() => undefined);
      throw err;
    });
  }
}

/** fsync of a file or a folder (a folder's entries: names created or renamed in it). */
async function syncPath(p: string): Promise<void> {
  const handle = await fs.open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
