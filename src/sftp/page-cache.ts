import fs from 'node:fs';
import os from 'node:os';
import { nativeAddon, type NativeAddon } from './native.js';

/**
 * Hands back the memory a file holds in the page cache (posix_fadvise DONTNEED, through the small
 * addon in native/; Node's fs has no fadvise).
 *
 * Why: a new upload of users.csv supersedes the visible one, whose pages stay cached because the
 * received copy is the same file (kept for RETENTION_DAYS). Releasing them as the new upload
 * starts gives it memory that was in use a moment ago. That matters on virtual machines that
 * return free memory to their host (Firecracker, virtio-balloon free page reporting): writing
 * into memory the host has taken back costs about ten times more (0.45 s instead of 0.05 s per
 * 200 MB here), and OpenSSH gets the cheap case for free by truncating the file it overwrites.
 * Elsewhere it only keeps superseded rosters from crowding out pages worth caching.
 *
 * Advice only: the kernel keeps dirty pages, nothing is lost, and where the addon was not built
 * (no compiler at install, not Linux) this does nothing.
 */

/** Set once the system turned out to have no posix_fadvise (macOS): no more tries. */
let unsupported = false;

function load(): NativeAddon | null {
  return unsupported ? null : nativeAddon();
}

/** Whether releasing works here (the addon was built and loads). */
export function pageCacheReleaseAvailable(): boolean {
  return load() !== null;
}

/**
 * Drops `file`'s clean pages from the page cache. Resolves to true when the kernel took the advice,
 * false when there is nothing to release (no such file) or no way to (no addon). Other failures
 * reject; callers treat them as harmless.
 */
export async function releasePageCache(file: string): Promise<boolean> {
  const native = load();
  if (native === null) return false;
  let handle: fs.promises.FileHandle;
  try {
    // O_NONBLOCK: should something other than a file (a FIFO) ever sit there, opening it must not wait.
    handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    if (!(await handle.stat()).isFile()) return false;
    const errno = await native.dontNeed(handle.fd);
    if (errno === os.constants.errno.ENOSYS) {
      unsupported = true; // built, but the system has no posix_fadvise (macOS): stop trying
      return false;
    }
    if (errno !== 0) throw new Error(`posix_fadvise(DONTNEED) failed on ${file}: errno ${errno}`);
    return true;
  } finally {
    await handle.close();
  }
}
