import { sha256OfFile } from '../sftp/spool.js';
import type { UploadTarget } from './execute.js';
import { FileRejectedError } from './types.js';

/**
 * The immutable copy must still be the file that was received: a disk can fail or a person or a
 * backup restore can change or remove it (copies are synced to disk before they are recorded, so
 * a power loss alone should not). Either way the import fails with one clear message instead of
 * importing something else or retrying in vain.
 */
export async function verifyStoredCopy(target: Pick<UploadTarget, 'path' | 'sha256'>): Promise<void> {
  let actual: string;
  try {
    actual = await sha256OfFile(target.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FileRejectedError(
      `The received copy of this file is no longer on the server (${code ?? (err as Error).message}); it may have been removed. ` +
        'Nothing was changed. Please upload the file again.',
    );
  }
  if (actual !== target.sha256) {
    throw new FileRejectedError(
      'The received copy of this file was damaged on the server after it arrived (its SHA-256 no longer matches). ' +
        'Nothing was changed. Please upload the file again.',
    );
  }
}
