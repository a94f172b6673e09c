import { ACCEPTED_FILE_NAMES, type AcceptedFileName } from '../types.js';

/**
 * Which names a client may write in its root folder (PRODUCT.md §2 "Files"): the accepted names
 * themselves, and the temporary names common clients upload to before renaming onto them.
 */

/** What a name in the tenant's root folder is to us. */
export type NameKind = { kind: 'final'; target: AcceptedFileName } | { kind: 'temporary'; target: AcceptedFileName } | { kind: 'other' };

const TEMP_SUFFIXES = ['filepart', 'part', 'partial', 'tmp', 'temp', 'upload', 'uploading', 'cyberducktmp'];
const TOKEN = '[A-Za-z0-9_-]{1,64}';
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Temporary-name patterns per accepted name; `F` is the accepted name. */
function tempPatterns(name: string): RegExp[] {
  const f = escape(name);
  const suffix = `(?:${TEMP_SUFFIXES.join('|')})`;
  return [
    // WinSCP users.csv.filepart, paramiko scripts users.csv.tmp / .part, rclone users.csv.<hash>.partial
    new RegExp(`^${f}\\.(?:${TOKEN}\\.)?${suffix}$`),
    // sftp/scp wrappers .users.csv.tmp, .users.csv.part
    new RegExp(`^\\.${f}\\.(?:${TOKEN}\\.)?${suffix}$`),
    // rsync-style .users.csv.AbC123
    new RegExp(`^\\.${f}\\.[A-Za-z0-9]{6}$`),
    // lftp's default temp-file-name ".in.*": .in.users.csv and .in.users.csv.
    new RegExp(`^\\.in\\.${f}\\.?$`),
    // editors and some scripts: users.csv~
    new RegExp(`^${f}~$`),
  ];
}

const PATTERNS: ReadonlyArray<{ target: AcceptedFileName; patterns: RegExp[] }> = ACCEPTED_FILE_NAMES.map((target) => ({
  target,
  patterns: tempPatterns(target),
}));

export function classifyName(name: string): NameKind {
  for (const { target, patterns } of PATTERNS) {
    if (name === target) return { kind: 'final', target };
    if (patterns.some((p) => p.test(name))) return { kind: 'temporary', target };
  }
  return { kind: 'other' };
}

/** The status message for a refused write: it says what is accepted. */
export function refusedNameMessage(name: string): string {
  return (
    `"${name}" is not accepted here. Upload users.csv or groups.csv to the root folder (/); ` +
    'temporary names renamed onto them, such as users.csv.filepart, users.csv.tmp or .users.csv.tmp, also work.'
  );
}
