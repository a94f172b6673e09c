import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
