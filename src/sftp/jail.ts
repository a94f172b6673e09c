import path from 'node:path';

/**
 * The tenant's jail is one flat folder: the client sees it as `/`, and every name in it is a file.
 * Paths are resolved here, as strings, before anything touches the disk: a path that would climb
 * above `/` is refused, absolute paths are read inside the jail, and no name with a slash ever
 * reaches the file system, so neither `..` nor a symlink nor another tenant's folder is reachable.
 */
export type JailPath =
  | { kind: 'root'; virtual: '/' }
  /** A name directly in the root folder. `real` is its absolute path on disk. */
  | { kind: 'file'; virtual: string; name: string; real: string }
  /** A well-formed path below a folder that does not exist (the jail has no subfolders). */
  | { kind: 'missing'; virtual: string }
  /** A path that climbs out of the jail or is malformed. */
  | { kind: 'refused'; virtual: string; reason: string };

/**
 * The normalised path as the client sees it, or null if it climbs above the root. With
 * `clamp`, `..` at the root stays at the root instead (what a chrooted OpenSSH answers to
 * REALPATH, so that `cd ..` at `/` stays there).
 */
export function normalizeVirtual(clientPath: string, options: { clamp?: boolean } = {}): string | null {
  const segments: string[] = [];
  for (const segment of clientPath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (segments.length === 0) {
        if (options.clamp) continue;
        return null;
      }
      segments.pop();
      continue;
    }
    segments.push(segment);
  }
  return '/' + segments.join('/');
}

export function resolveJailPath(root: string, clientPath: string): JailPath {
  if (clientPath.includes('\0')) {
    return { kind: 'refused', virtual: clientPath, reason: 'the path contains a NUL byte' };
  }
  const virtual = normalizeVirtual(clientPath);
  if (virtual === null) {
    return { kind: 'refused', virtual: clientPath, reason: 'the path leads outside your folder; use names in / such as /users.csv' };
  }
  if (virtual === '/') return { kind: 'root', virtual: '/' };
  const name = virtual.slice(1);
  if (name.includes('/')) return { kind: 'missing', virtual };
  // path.join cannot leave root here: name has no slash and is neither '.' nor '..'.
  return { kind: 'file', virtual, name, real: path.join(root, name) };
}
