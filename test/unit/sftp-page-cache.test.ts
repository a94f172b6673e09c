import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageCacheReleaseAvailable, releasePageCache } from '../../src/sftp/page-cache.js';
import { cachedBytes } from '../support/page-cache.js';

/**
 * The page-cache release (native/page_cache.c through src/sftp/page-cache.ts): on Linux the addon
 * must have been built by `npm install`, and a file's cached pages must really go.
 */

const linux = process.platform === 'linux';
let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-page-cache-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('releasePageCache', () => {
  it.runIf(linux)('the addon was built and loads (npm install builds native/; its output says why if not)', () => {
    expect(pageCacheReleaseAvailable()).toBe(true);
  });

  it.runIf(linux)("drops a written file's pages from the page cache, and the file is unchanged", async () => {
    const file = path.join(dir, 'users.csv');
    const content = randomBytes(4 * 1024 * 1024);
    const handle = await fs.open(file, 'w');
    await handle.writeFile(content);
    await handle.datasync(); // dirty pages are kept whatever the advice: the spool syncs first too
    await handle.close();
    expect(await cachedBytes(file)).toBe(content.length);

    expect(await releasePageCache(file)).toBe(true);
    expect(await cachedBytes(file)).toBe(0);
    expect((await fs.readFile(file)).equals(content)).toBe(true);
  });

  it('a file that is not there: nothing to release, no error', async () => {
    expect(await releasePageCache(path.join(dir, 'missing.csv'))).toBe(false);
  });

  it.runIf(linux)('does not follow a symbolic link', async () => {
    const target = path.join(dir, 'target.csv');
    await fs.writeFile(target, 'x');
    const link = path.join(dir, 'link.csv');
    await fs.symlink(target, link);
    await expect(releasePageCache(link)).rejects.toMatchObject({ code: 'ELOOP' });
  });
});
