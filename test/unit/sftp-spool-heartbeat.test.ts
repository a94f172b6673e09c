import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SPOOL_HEARTBEAT_MS, SpoolFile } from '../../src/sftp/spool.js';
import { waitFor } from '../support/wait.js';

/**
 * The heartbeat that keeps open spool files young (spool.ts, SPOOL_HEARTBEAT_MS), in a file of its
 * own: its timer is made when the first spool file of the process opens, so no other test's file
 * may be open when the fake timers go in.
 */

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-spool-heartbeat-'));
});

afterAll(async () => {
  vi.useRealTimers();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('the spool heartbeat', () => {
  it('refreshes an open spool file every SPOOL_HEARTBEAT_MS, far below the sweep’s least age (an hour)', async () => {
    expect(SPOOL_HEARTBEAT_MS).toBeLessThanOrEqual(3_600_000 / 4);
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const quiet = await SpoolFile.create({ dir, label: 'quiet', maxBytes: 1024 * 1024 });
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await fs.utimes(quiet.path, twoHoursAgo, twoHoursAgo);
    const age = async () => Date.now() - (await fs.stat(quiet.path)).mtimeMs;

    vi.advanceTimersByTime(SPOOL_HEARTBEAT_MS - 1000);
    await new Promise((r) => setTimeout(r, 50));
    expect(await age()).toBeGreaterThan(3_600_000); // not yet

    vi.advanceTimersByTime(1000);
    await waitFor(async () => (await age()) < 60_000, 5000, 'the heartbeat');
    expect(await age()).toBeLessThan(60_000);

    // With nothing open, the timer is gone: no work for an idle daemon.
    await quiet.discard();
    expect(vi.getTimerCount()).toBe(0);
  });
});
