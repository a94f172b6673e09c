import ssh2 from 'ssh2';
import { TooLargeError } from './spool.js';

export const STATUS = ssh2.utils.sftp.STATUS_CODE;

/** A refusal we mean: sent to the client as this status with this message. */
export class SftpRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'SftpRefusal';
  }
}

export const refuse = {
  noSuchFile: (what = 'no such file') => new SftpRefusal(STATUS.NO_SUCH_FILE, what),
  denied: (message: string) => new SftpRefusal(STATUS.PERMISSION_DENIED, message),
  failure: (message: string) => new SftpRefusal(STATUS.FAILURE, message),
  /** What rosterd does not do (resume, append): clients that show only the status say "unsupported". */
  unsupported: (message: string) => new SftpRefusal(STATUS.OP_UNSUPPORTED, message),
  badHandle: () => new SftpRefusal(STATUS.FAILURE, 'invalid handle'),
};

export const NO_FOLDERS =
  'this folder holds files only: upload users.csv and groups.csv to / (folders cannot be created, removed or entered)';

/**
 * The status and message a client gets for an error; `expected` is false for an error we did not
 * foresee (the caller logs those).
 */
export function statusFor(err: unknown): { status: number; message: string; expected: boolean } {
  if (err instanceof SftpRefusal) return { status: err.status, message: err.message, expected: true };
  if (err instanceof TooLargeError) return { status: STATUS.FAILURE, message: err.message, expected: true };
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ELOOP': // a symlink opened with O_NOFOLLOW: links are never followed
    case 'ENOTDIR':
      return { status: STATUS.NO_SUCH_FILE, message: 'no such file', expected: true };
    case 'EACCES':
    case 'EPERM':
      return { status: STATUS.PERMISSION_DENIED, message: 'permission denied', expected: true };
    case 'EEXIST':
      return { status: STATUS.FAILURE, message: 'the file already exists', expected: true };
    case 'EISDIR':
      return { status: STATUS.FAILURE, message: 'this is a folder, not a file', expected: true };
    case 'ENOSPC':
    case 'EDQUOT':
      return { status: STATUS.FAILURE, message: 'the server has no space left for this file; try again later', expected: false };
    default:
      return { status: STATUS.FAILURE, message: 'the server could not do this; try again later', expected: false };
  }
}
