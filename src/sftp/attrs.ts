import type { Stats } from 'node:fs';
import type { Attributes } from 'ssh2';

/** File attributes as SFTP sends them. Owner ids are hidden: the client has no use for ours. */
export function toAttrs(stats: Pick<Stats, 'mode' | 'size' | 'atimeMs' | 'mtimeMs'>): Attributes {
  return {
    mode: stats.mode,
    uid: 0,
    gid: 0,
    size: stats.size,
    atime: Math.floor(stats.atimeMs / 1000),
    mtime: Math.floor(stats.mtimeMs / 1000),
  };
}

const S_IFMT = 0o170000;
const TYPE_CHAR: Record<number, string> = { 0o040000: 'd', 0o100000: '-', 0o120000: 'l' };
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const SIX_MONTHS_SECONDS = 182 * 24 * 3600;

function permissionString(mode: number): string {
  const type = TYPE_CHAR[mode & S_IFMT] ?? '?';
  const bits = 'rwxrwxrwx';
  let out = type;
  for (let i = 0; i < 9; i++) out += (mode & (1 << (8 - i))) !== 0 ? bits[i] : '-';
  return out;
}

/**
 * The `ls -l` style line SFTP v3 clients print for READDIR entries, in the layout OpenSSH's
 * sftp-server uses: recent files show the time, older ones the year.
 */
export function longname(name: string, attrs: Attributes, owner: string, nowSeconds: number): string {
  const date = new Date(attrs.mtime * 1000);
  const month = MONTHS[date.getUTCMonth()] ?? '???';
  const day = String(date.getUTCDate()).padStart(2, ' ');
  const recent = Math.abs(nowSeconds - attrs.mtime) < SIX_MONTHS_SECONDS;
  const when = recent
    ? `${String(date.getUTCHours()).padStart(2, '0')}:${String(date.getUTCMinutes()).padStart(2, '0')}`
    : ` ${date.getUTCFullYear()}`;
  const nlink = (attrs.mode & S_IFMT) === 0o040000 ? 2 : 1;
  const user = owner.padEnd(8, ' ');
  return `${permissionString(attrs.mode)} ${String(nlink).padStart(4, ' ')} ${user} ${user} ${String(attrs.size).padStart(8, ' ')} ${month} ${day} ${when} ${name}`;
}
