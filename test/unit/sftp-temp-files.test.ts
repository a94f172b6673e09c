import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { sweepTempFiles, TEMP_FILE_MAX_AGE_MS } from '../../src/sftp/temp-files.js';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('removes temporary files untouched for a day, in every tenant folder, and nothing else', async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-temp-'));
  const now = Date.now();
  const old = (now - TEMP_FILE_MAX_AGE_MS - 60_000) / 1000;
  for (const tenant of ['a-usd', 'b-usd']) mkdirSync(path.join(dir, tenant));
  const files = {
    stale: path.join(dir, 'a-usd', 'users.csv.filepart'),
    staleHidden: path.join(dir, 'b-usd', '.users.csv.tmp'),
    fresh: path.join(dir, 'a-usd', 'groups.csv.part'),
    received: path.join(dir, 'a-usd', 'users.csv'),
  };
  for (const f of Object.values(files)) writeFileSync(f, 'x');
  for (const f of [files.stale, files.staleHidden, files.received]) utimesSync(f, old, old);
  const removed = await sweepTempFiles(dir, TEMP_FILE_MAX_AGE_MS, now);
  expect(removed.sort()).toEqual([path.join('a-usd', 'users.csv.filepart'), path.join('b-usd', '.users.csv.tmp')]);
  expect(existsSync(files.fresh)).toBe(true);
  expect(existsSync(files.received)).toBe(true); // a received file is retention's, not this sweep's
  expect(await sweepTempFiles(path.join(dir, 'missing'), TEMP_FILE_MAX_AGE_MS, now)).toEqual([]);
});
