import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * Bytes of `file` held in the page cache, by `fincore` (util-linux, on every Debian/Ubuntu).
 * Throws, saying so, where fincore is missing.
 */
export async function cachedBytes(file: string): Promise<number> {
  try {
    const { stdout } = await execFileAsync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', file]);
    return Number(stdout.trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('fincore (util-linux) is needed to see the page cache');
    throw err;
  }
}
