import { sha256OfFile } from '../sftp/spool.js';
import type { UploadTarget } from './execute.js';
import { FileRejectedError } from './types.js';

/**
 * The immutable copy must still be the file that was received: a disk can fail or a person or a
 * backup restore can change it (copies are synced to disk before they are recorded, so a power
 * loss alone should not). A copy that differs fails the import with one clear message instead of
 * importing something else. A copy that cannot be read is an error of this server, not of the file:
 * a replica or a CLI whose DATA_DIR is not the shared volume, a volume unmounted for a moment, too
 * many open files. That is a failed attempt, retried (by another replica, or later) up to
 * IMPORT_MAX_ATTEMPTS, and only then reported as failed.
 */
export async function verifyStoredCopy(target: Pick<UploadTarget, 'path' | 'sha256'>): Promise<void> {
  let actual: string;
  try {
    actual = await sha256OfFile(target.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `cannot read the received copy ${target.path} (${code ?? (err as Error).message}): check that DATA_DIR is the same ` +
        'volume for every rosterd process (replicas, CLI) and that it is mounted',
      { cause: err },
    );
  }
  if (actual !== target.sha256) {
    throw new FileRejectedError(
      'The received copy of this file was damaged on the server after it arrived (its SHA-256 no longer matches). ' +
        'Nothing was changed. Please upload the file again.',
    );
  }
}
