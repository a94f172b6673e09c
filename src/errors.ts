/**
 * Every error a caller may branch on has a stable code here. Messages say what happened and what
 * to do. The CLI maps `kind` to an exit code: usage errors exit 2, everything else 1.
 */

export const ERROR_CODES = {
  CONFIG_INVALID: { kind: 'usage', summary: 'one or more environment variables have bad values' },
  USAGE: { kind: 'usage', summary: 'the command line is malformed' },
  INVALID_SUBDOMAIN: { kind: 'usage', summary: 'a subdomain breaks DNS label rules' },
  INVALID_EMAIL: { kind: 'usage', summary: 'an administrator email is not a valid address' },
  INVALID_TIMEZONE: { kind: 'usage', summary: 'a time zone is not a known IANA zone' },
  INVALID_WINDOW: { kind: 'usage', summary: 'an import window is malformed or outside the night' },
  INVALID_THRESHOLD: { kind: 'usage', summary: 'a deactivation threshold is out of range' },
  INVALID_SCHOOL: { kind: 'usage', summary: 'a school name or ID is malformed' },
  SCHOOLS_FILE_INVALID: { kind: 'failure', summary: 'a schools file cannot be read or has bad lines; nothing was imported' },
  TENANT_EXISTS: { kind: 'failure', summary: 'a tenant with this subdomain already exists' },
  TENANT_NOT_FOUND: { kind: 'failure', summary: 'no tenant has this subdomain' },
  KEY_INVALID: { kind: 'failure', summary: 'an SSH public key cannot be parsed' },
  KEY_WEAK: { kind: 'failure', summary: 'an SSH public key type or size is not accepted' },
  KEY_EXISTS: { kind: 'failure', summary: 'this SSH key is already registered' },
  KEY_NOT_FOUND: { kind: 'failure', summary: 'no key has this fingerprint' },
  SCHOOL_EXISTS: { kind: 'failure', summary: 'a school with this name or ID already exists' },
  SCHOOL_NOT_FOUND: { kind: 'failure', summary: 'no school of the tenant has this name or ID' },
  SCHOOL_AMBIGUOUS: {
    kind: 'failure',
    summary: "a school's name or ID is another school's ID or name, which users.csv could not tell apart",
  },
  IMPORT_NOT_FOUND: { kind: 'failure', summary: 'no import has this ID' },
  IMPORT_NOT_HELD: { kind: 'failure', summary: 'only a held import can be approved or rejected' },
  IMPORT_APPROVAL_STALE: {
    kind: 'failure',
    summary: 'a held import no longer does what its hold report said (the roster or the file changed)',
  },
  IMPORT_INTERRUPTED: { kind: 'failure', summary: 'an operator interrupted an import (Ctrl-C); it was rolled back whole' },
  FILE_NOT_FOUND: { kind: 'failure', summary: 'a file named on the command line cannot be read' },
  FILE_NOT_WRITABLE: { kind: 'failure', summary: 'a file named on the command line cannot be written' },
  DATABASE_UNAVAILABLE: { kind: 'failure', summary: 'Postgres cannot be reached' },
  DATABASE_LOCKED: {
    kind: 'failure',
    summary: 'a command waited CLI_LOCK_TIMEOUT_SECONDS for a database lock another session holds, and gave up',
  },
  EMBEDDED_POSTGRES_FAILED: { kind: 'failure', summary: 'the embedded Postgres could not start' },
  MIGRATION_FAILED: { kind: 'failure', summary: 'a database migration failed' },
  LISTEN_FAILED: { kind: 'failure', summary: 'the SFTP or HTTP port cannot be listened on (in use, not this machine)' },
  INTERNAL: { kind: 'failure', summary: 'an unexpected internal error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class RosterdError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RosterdError';
    this.code = code;
    this.details = options?.details;
  }

  get isUsage(): boolean {
    return ERROR_CODES[this.code].kind === 'usage';
  }
}

/** File system errors in words, for messages about a path; callers add what to do. */
export const FILE_PROBLEMS: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
  ENOSPC: 'the disk is full',
};

/** Text for a file system error a person understands: what went wrong with the path, in words. */
export function describeFileError(err: unknown, writing = false): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return writing ? 'its folder does not exist; create it or choose another path' : 'no such file or directory; check the path';
    case 'EISDIR':
      return 'it is a directory, not a file; name the file inside it';
    case 'ENOTDIR':
      return 'a part of the path is a file, not a directory; check the path';
    case 'EACCES':
    case 'EPERM':
      return `${FILE_PROBLEMS[code]}; ${writing ? 'choose a folder the user running rosterd may write to' : 'make the file readable by the user running rosterd'}`;
    case 'EEXIST':
      return 'the file already exists';
    default:
      return (code && FILE_PROBLEMS[code]) ?? code ?? (err instanceof Error ? err.message : String(err));
  }
}

/** Normalise anything thrown into an Error, keeping the original as `cause`. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : JSON.stringify(value), { cause: value });
}

/** Postgres SQLSTATE codes we branch on. */
export const PG = {
  UNIQUE_VIOLATION: '23505',
  FOREIGN_KEY_VIOLATION: '23503',
  CHECK_VIOLATION: '23514',
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  QUERY_CANCELED: '57014',
  LOCK_NOT_AVAILABLE: '55P03',
  ADMIN_SHUTDOWN: '57P01',
  UNDEFINED_TABLE: '42P01',
  DUPLICATE_DATABASE: '42P04',
} as const;

export function pgCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

export function pgConstraint(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'constraint' in err) {
    const c = (err as { constraint: unknown }).constraint;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}
