import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../store/paths.js';

/**
 * rosterd's optional Node addon (native/, built by `npm install`): page-cache advice and spool
 * writes hashed off the event loop. Where it did not build (no compiler at install) or does not
 * load, its users fall back to what Node offers; nothing needs it to be correct.
 */
export interface NativeAddon {
  /** posix_fadvise(DONTNEED) on the thread pool: 0 or an errno value. */
  dontNeed(fd: number): Promise<number>;
  /** A new SHA-256 state, fed by writeRun and read by digest. */
  sha256(): NativeSha256;
  /**
   * Adds `data` to `hash` (if given), writes all of it at `position` and starts its write-back:
   * 0, an errno value, or -1 if hashing failed. One call at a time per hash.
   */
  writeRun(fd: number, data: Buffer, position: number, hash: NativeSha256 | null): Promise<number>;
  /** The hex SHA-256 of everything added; the state takes nothing more. */
  digest(hash: NativeSha256): string;
}

declare const nativeSha256: unique symbol;
/** An opaque SHA-256 state owned by the addon. */
export type NativeSha256 = { readonly [nativeSha256]: true };

let addon: NativeAddon | null | undefined;

/** The addon, or null where it is not built. Loaded once. */
export function nativeAddon(): NativeAddon | null {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(path.join(packageRoot(), 'native', 'build', 'Release', 'rosterd.node')) as NativeAddon;
    } catch {
      addon = null;
    }
  }
  return addon;
}
