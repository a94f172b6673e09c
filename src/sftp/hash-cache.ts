import type { Stats } from 'node:fs';

interface Entry {
  ino: number;
  size: number;
  mtimeMs: number;
  sha256: string;
}

/**
 * SHA-256 of temporary files this process finished writing, so that renaming a large
 * `users.csv.filepart` onto `users.csv` does not read it all again. An entry is used only while
 * the file on disk is still the one that was hashed (same inode, size and mtime).
 */
export class HashCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxEntries = 10_000) {}

  remember(file: string, stats: Stats, sha256: string): void {
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
    this.entries.set(file, { ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs, sha256 });
  }

  lookup(file: string, stats: Stats): string | undefined {
    const e = this.entries.get(file);
    if (e === undefined) return undefined;
    if (e.ino !== stats.ino || e.size !== stats.size || e.mtimeMs !== stats.mtimeMs) {
      this.entries.delete(file);
      return undefined;
    }
    return e.sha256;
  }

  forget(file: string): void {
    this.entries.delete(file);
  }
}
