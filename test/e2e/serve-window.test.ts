/**
 * The night window as a running daemon sees it, on the real clock (PRODUCT.md §5, §7): a
 * district where it is day keeps its upload pending tick after tick while a district where it is
 * night is imported; `import list` tells the operator why and when; `import run --now` (an
 * operator's action) imports it once even with the daemon running beside it; and a tenant's new
 * time zone counts from the next tick, without a restart.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTenant } from '../../src/store/tenants.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { receiveUpload, startServe, zoneWhereItIsDay, zoneWhereItIsNight, type ServeProcess } from '../support/serve.js';
import { waitFor } from '../support/ssh.js';

const DAY = 'day-usd';
const NIGHT = 'night-usd';

let db: TestDatabase;
let tmp: string;
let daemon: ServeProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-window-'));
});

afterAll(async () => {
  await daemon?.stop('SIGKILL').catch(() => undefined);
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function status(id: string): Promise<{ status: string; claimed_by: string | null } | undefined> {
  const { rows } = await db.pool.query<{ status: string; claimed_by: string | null }>(
    `SELECT status, claimed_by FROM uploads WHERE id = $1`,
    [id],
  );
  return rows[0];
}

const users = (prefix: string, n: number) =>
  ['username,email', ...Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(4, '0')},${prefix}${i}@district.example`)].join(
    '\n',
  ) + '\n';

it('day waits, night imports; import run --now imports once beside the daemon; a new time zone applies at once', async () => {
  const dataDir = path.join(tmp, 'data');
  const env = { DATABASE_URL: db.url, DATA_DIR: dataDir };
  const dayZone = zoneWhereItIsDay();
  const nightZone = zoneWhereItIsNight();
  await createTenant(db.pool, DAY, { adminEmails: ['it@day.example'], timezone: dayZone });
  await createTenant(db.pool, NIGHT, { adminEmails: ['it@night.example'], timezone: nightZone });
  daemon = await startServe({ databaseUrl: db.url, dataDir });
  const d = daemon;

  const dayUpload = await receiveUpload(db.pool, dataDir, DAY, users('day', 10));
  const nightUpload = await receiveUpload(db.pool, dataDir, NIGHT, users('night', 10));
  await waitFor(async () => (await status(nightUpload))?.status === 'succeeded', 30_000, 'the night district’s import');
  // The day district: looked at on several ticks, and left waiting each time.
  await waitFor(
    () => d.logs.filter((l) => l.msg === 'waiting for window' && l.tenant === DAY).length >= 3,
    30_000,
    'three ticks deciding the day district waits',
  );
  expect(await status(dayUpload)).toMatchObject({ status: 'pending', claimed_by: null });

  // The operator asks why: the window, closed, and when it opens (18:00 in the district's zone).
  const list = await runCli(['import', 'list', '--tenant', DAY, '--json'], env);
  expect(list.code, list.stderr).toBe(0);
  const [shown] =
    list.json<
      Array<{ id: string; status: string; schedule: { window: string; timezone: string; windowOpen: boolean; nextRunAt: string | null } }>
    >();
  expect(shown).toMatchObject({
    id: dayUpload,
    status: 'pending',
    schedule: { window: '18:00-06:00', timezone: dayZone, windowOpen: false },
  });
  const next = DateTime.fromISO(shown?.schedule.nextRunAt ?? '', { setZone: true });
  expect(next.isValid, `nextRunAt ${shown?.schedule.nextRunAt}`).toBe(true);
  expect(next.setZone(dayZone).toFormat('HH:mm')).toBe('18:00');
  expect(next.toMillis()).toBeGreaterThan(Date.now());

  // The operator imports it now, with the daemon ticking every second beside the command.
  const run = await runCli(['import', 'run', '--now', '--tenant', DAY, '--json'], env);
  expect(run.code, run.stderr).toBe(0);
  expect(run.json<{ imported: Array<{ id: string; status: string }> }>().imported).toEqual([
    expect.objectContaining({ id: dayUpload, status: 'succeeded' }),
  ]);
  await new Promise((r) => setTimeout(r, 2_500));
  expect((await status(dayUpload))?.claimed_by).toMatch(/^cli:/);
  expect(d.logs.filter((l) => l.msg === 'imported' && l.uploadId === dayUpload)).toEqual([]);
  const { rows: reports } = await db.pool.query(`SELECT 1 FROM outbox WHERE upload_id = $1`, [dayUpload]);
  expect(reports).toHaveLength(1);

  // The district moves to a zone where it is night: the running daemon imports its next upload.
  const second = await receiveUpload(db.pool, dataDir, DAY, users('day', 12));
  await waitFor(
    () => d.logs.filter((l) => l.msg === 'waiting for window' && l.tenant === DAY).length >= 4,
    30_000,
    'the new upload to wait',
  );
  const update = await runCli(['tenant', 'update', DAY, '--timezone', nightZone, '--json'], env);
  expect(update.code, update.stderr).toBe(0);
  await waitFor(async () => (await status(second))?.status === 'succeeded', 30_000, 'the import after the time zone change');
  const { rows: dayUsers } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 AND u.active`,
    [DAY],
  );
  expect(dayUsers[0]?.n).toBe(12);

  expect(await d.stop(), d.dump()).toEqual({ code: 0, signal: null });
}, 120_000);
