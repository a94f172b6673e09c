import { constants, existsSync, promises as fs, type Dirent } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FILE_PROBLEMS, RosterdError } from '../errors.js';

/** The package root (where package.json is), from src/ under vitest or dist/ when built. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the rosterd package root');
    dir = parent;
  }
  return dir;
}

export function migrationsDir(): string {
  return path.join(packageRoot(), 'src', 'store', 'migrations');
}

const DATA_DIR_PROBLEMS: Record<string, string> = {
  ...FILE_PROBLEMS,
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'it is a file, not a folder',
};

/**
 * DATA_DIR exists (created if need be) and this process may write in it: checked first, so that
 * a bad value stops the start with one line naming it rather than an error from whatever part
 * touches it first (the host keys, the embedded Postgres).
 */
export async function ensureDataDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    if (!(await fs.stat(dir)).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'EEXIST' });
    await fs.access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const problem = DATA_DIR_PROBLEMS[code] ?? (err as Error).message;
    throw new RosterdError(
      'CONFIG_INVALID',
      `DATA_DIR ${dir} cannot be used (${problem}); set DATA_DIR to a folder this user can write to`,
      {
        cause: err,
      },
    );
  }
}

/**
 * DATA_DIR for a CLI command: it must exist already. A command run from another folder would
 * otherwise make a new ./data with a new embedded database and new host keys, and answer "no
 * tenants yet", or print fingerprints that are not the server's, as if all were well.
 */
export async function existingDataDir(dir: string): Promise<void> {
  let stat;
  try {
    stat = await fs.stat(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENOENT') {
      throw new RosterdError(
        'CONFIG_INVALID',
        `DATA_DIR ${path.resolve(dir)} does not exist. rosterd keeps its database, host keys and received files there: ` +
          'run this command in the folder where rosterd serve runs, or set DATA_DIR to its data folder ' +
          '(rosterd serve and rosterd migrate create a new one)',
        { cause: err },
      );
    }
    throw new RosterdError('CONFIG_INVALID', `DATA_DIR ${dir} cannot be used (${DATA_DIR_PROBLEMS[code] ?? (err as Error).message})`, {
      cause: err,
    });
  }
  if (!stat.isDirectory()) {
    throw new RosterdError(
      'CONFIG_INVALID',
      `DATA_DIR ${dir} cannot be used (${DATA_DIR_PROBLEMS.EEXIST}); set DATA_DIR to rosterd's data folder`,
    );
  }
}

/** The entries of a folder, or none if it does not exist (yet, or any more). */
export async function readDirIfExists(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
