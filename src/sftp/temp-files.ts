import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readDirIfExists } from '../store/paths.js';
import { classifyName } from './file-names.js';

/**
 * Temporary files (users.csv.filepart and the like) that clients leave in their folder without
 * renaming them. They hold roster data and count toward no upload, so they are bounded: a tenant
 * may keep MAX_TEMP_FILES of them (each up to MAX_UPLOAD_BYTES), and one untouched for
 * TEMP_FILE_MAX_AGE_MS is abandoned and removed.
 */
export const MAX_TEMP_FILES = 16;
export const TEMP_FILE_MAX_AGE_MS = 24 * 3600_000;

/** The temporary files in one tenant's folder. */
export async function tempFiles(root: string): Promise<string[]> {
  return (await readDirIfExists(root)).map((e) => e.name).filter((n) => classifyName(n).kind === 'temporary');
}

/** Removes temporary files older than `maxAgeMs` in every tenant's folder under `sftpRoot`. */
export async function sweepTempFiles(sftpRoot: string, maxAgeMs: number, nowMs: number): Promise<string[]> {
  const removed: string[] = [];
  for (const { name: tenant } of await readDirIfExists(sftpRoot)) {
    for (const name of await tempFiles(path.join(sftpRoot, tenant)).catch(() => [])) {
      const file = path.join(sftpRoot, tenant, name);
      try {
        const stats = await fs.lstat(file);
        if (!stats.isFile() || nowMs - stats.mtimeMs <= maxAgeMs) continue;
        await fs.rm(file, { force: true });
        removed.push(path.join(tenant, name));
      } catch {
        // gone meanwhile (renamed by its client, or another replica's sweep)
      }
    }
  }
  return removed;
}
