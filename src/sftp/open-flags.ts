/**
 * SFTP v3 open flags (draft-ietf-secsh-filexfer-02 §6.3), read bit by bit: ssh2's flagsToString
 * returns null for combinations clients send every day (WRITE|CREAT without TRUNC, READ|WRITE|CREAT).
 */
export const OPEN_FLAG = {
  READ: 0x01,
  WRITE: 0x02,
  APPEND: 0x04,
  CREAT: 0x08,
  TRUNC: 0x10,
  EXCL: 0x20,
} as const;

export interface OpenMode {
  read: boolean;
  write: boolean;
  /** Every write lands at the end of the file, whatever its offset says. */
  append: boolean;
  create: boolean;
  truncate: boolean;
  /** Fail if the file exists (only meaningful with create). */
  exclusive: boolean;
}

export function parseOpenFlags(flags: number): OpenMode {
  const has = (bit: number) => (flags & bit) !== 0;
  const write = has(OPEN_FLAG.WRITE) || has(OPEN_FLAG.APPEND);
  return {
    // A client that names neither READ nor WRITE gets read access, as OpenSSH's sftp-server does.
    read: has(OPEN_FLAG.READ) || !write,
    write,
    append: has(OPEN_FLAG.APPEND),
    create: has(OPEN_FLAG.CREAT),
    truncate: has(OPEN_FLAG.TRUNC),
    exclusive: has(OPEN_FLAG.EXCL),
  };
}
