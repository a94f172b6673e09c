/**
 * The cron scheduler: ticks import and deliver (here into the .eml outbox, no SMTP_URL); start and
 * stop are idempotent; stop waits for the running import to commit.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createPasswordHasher, type PasswordHasher } from '../../src/import/hash-pool.js';
import { createLogger } from '../../src/log/logger.js';
import { createMailer } from '../../src/report/mailer.js';
import { processPending, type ScheduleContext } from '../../src/schedule/process.js';
import { createScheduler } from '../../src/schedule/scheduler.js';
import { createTenant } from '../../src/store/tenants.js';
import { insertUpload } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let hasher: PasswordHasher;
let dataDir: string;
let config: Config;
// Inside Chicago's window: 20:00 CST.
const clock = { now: () => new Date('2026-11-21T02:00:00Z') };

beforeAll(async () => {
  db = await createTestDatabase();
  hasher = createPasswordHasher({ workers: 1 });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-scheduler-'));
  config = loadConfig({ DATA_DIR: dataDir, DATABASE_URL: db.url, SCHEDULE_CRON: '* * * * * *', SETTLE_SECONDS: '0' });
  // No safety hold: these tests are about the schedule, not about deactivations.
  await createTenant(db.pool, 'cron-usd', { timezone: 'America/Chicago', adminEmails: ['admin@cron-usd.example'], thresholdPercent: 100 });
});
afterAll(async () => {
  await hasher?.close();
  await db?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

let arrivals = 0;
async function receive(name: string): Promise<string> {
  // Always lists the first user too, so that no import deactivates anyone (and none is held).
  const body = ['username,email', ...new Set(['cron0001', name])].map((n, i) => (i === 0 ? n : `${n},${n}@cron.example`)).join('\n') + '\n';
  const rel = path.join('uploads', 'cron-usd', `${randomUUID()}.csv`);
  mkdirSync(path.join(dataDir, 'uploads', 'cron-usd'), { recursive: true });
  writeFileSync(path.join(dataDir, rel), body);
  const u = await insertUpload(db.pool, {
    tenantSubdomain: 'cron-usd',
    fileName: 'users.csv',
    bytes: body.length,
    sha256: createHash('sha256').update(body).digest('hex'),
    storedPath: rel,
    keyFingerprint: null,
    remoteAddress: null,
    receivedAt: new Date(Date.parse('2026-11-21T01:00:00Z') + ++arrivals * 1000),
  });
  return u.id;
}

async function status(id: string) {
  const { rows } = await db.pool.query<{ status: string; claim_token: string | null }>(
    'SELECT status, claim_token FROM uploads WHERE id = $1',
    [id],
  );
  return rows[0];
}

it('ticks on SCHEDULE_CRON: imports, and writes the report as an .eml file without SMTP_URL', async () => {
  const ctx: ScheduleContext = { pool: db.pool, logger: createLogger('silent'), clock, config, hasher };
  const scheduler = createScheduler(ctx, createMailer(config));
  const id = await receive('cron0001');
  scheduler.start();
  scheduler.start();
  expect(scheduler.running).toBe(true);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const files = readdirSyncSafe(path.join(dataDir, 'outbox'));
    if (files.length > 0 && (await status(id))?.status === 'succeeded') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await scheduler.stop();
  await scheduler.stop();
  expect(scheduler.running).toBe(false);
  expect(await status(id)).toEqual({ status: 'succeeded', claim_token: null });
  expect(readdirSyncSafe(path.join(dataDir, 'outbox')).filter((f) => f.endsWith('.eml'))).toHaveLength(1);
});

/** A context whose imports stop for `ms` once planned; `inImport` resolves when one gets there. */
function pausingOncePlanned(ms: number): { context: ScheduleContext; inImport: Promise<void> } {
  let entered!: () => void;
  const inImport = new Promise<void>((r) => (entered = r));
  const context: ScheduleContext = {
    pool: db.pool,
    logger: createLogger('silent'),
    clock,
    config,
    hasher,
    importHook: async (point) => {
      if (point !== 'planned') return;
      entered();
      await new Promise((r) => setTimeout(r, ms));
    },
  };
  return { context, inImport };
}

it('stop() waits for the running import to commit and leaves no claim held', async () => {
  const { context: slow, inImport } = pausingOncePlanned(1000);
  const scheduler = createScheduler(slow, createMailer(config));
  const first = await receive('slow0001');
  const tick = scheduler.tick();
  await inImport;
  // Arrives while the first import runs; stop() must not start it.
  const second = await receive('slow0002');
  await scheduler.stop();
  expect(await status(first)).toEqual({ status: 'succeeded', claim_token: null });
  expect(await status(second)).toEqual({ status: 'pending', claim_token: null });
  await tick;
});

it('when the grace period runs out, stop() gives the claim back and the interrupted import applies nothing', async () => {
  const { context: stuck, inImport } = pausingOncePlanned(1500);
  const scheduler = createScheduler(stuck, createMailer(config));
  const id = await receive('stuck001');
  const tick = scheduler.tick();
  await inImport;
  await scheduler.stop({ graceMs: 200 });
  expect(await status(id)).toEqual({ status: 'pending', claim_token: null });
  await tick; // the interrupted import ends: it cannot record its outcome and rolls back
  expect(await status(id)).toEqual({ status: 'pending', claim_token: null });
  const { rows } = await db.pool.query(`SELECT 1 FROM users WHERE username = 'stuck001'`);
  expect(rows).toEqual([]);
  const { rows: attempts } = await db.pool.query<{ attempts: number }>('SELECT attempts FROM uploads WHERE id = $1', [id]);
  expect(attempts[0]?.attempts).toBe(0);

  // The next process imports it.
  const again = createScheduler({ ...stuck, importHook: async () => undefined }, createMailer(config));
  await again.tick();
  expect(await status(id)).toEqual({ status: 'succeeded', claim_token: null });
});

function readdirSyncSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

it('stop() spends one grace period on a report being sent too, and does not call it an import', async () => {
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const id = await receive('slowmail1');
  // Imported and its report queued (not sent); the scheduler below only sends it, slowly.
  await processPending({ pool: db.pool, logger, clock, config, hasher, claimedBy: 'test:1' }, { now: true });
  expect((await status(id))?.status).toBe('succeeded');
  let sending!: () => void;
  const sendStarted = new Promise<void>((r) => (sending = r));
  const slowMailer = {
    kind: 'smtp' as const,
    send: async () => {
      sending();
      await new Promise((r) => setTimeout(r, 5_000));
      return { deliveredAs: 'slow', refused: [] };
    },
    close: () => undefined,
  };
  const scheduler = createScheduler({ pool: db.pool, logger, clock, config, hasher }, slowMailer, { deliveryPollMs: 50 });
  scheduler.start();
  await sendStarted;
  const t0 = Date.now();
  await scheduler.stop({ graceMs: 500 });
  expect(Date.now() - t0).toBeLessThan(1_500); // not a grace period for the tick and another for the report
  expect(logs.some((l) => String(l.msg).includes('the running import did not finish'))).toBe(false);
  expect(logs.some((l) => String(l.msg).startsWith('shutdown: a report was still being sent'))).toBe(true);
});
