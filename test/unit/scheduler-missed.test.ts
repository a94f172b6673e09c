/**
 * The scheduler's cron task when a tick comes late: node-cron runs a tick only within a second of
 * its time and otherwise reports it missed. A tick missed must still look for pending uploads,
 * or a SCHEDULE_CRON that fires once a night loses the whole night.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

vi.mock('../../src/schedule/process.js', () => ({
  processPending: vi.fn(async () => ({ imported: [], waiting: [], retried: [], failed: [] })),
}));
vi.mock('../../src/report/delivery.js', () => ({ deliverDue: vi.fn(async () => undefined) }));

const { processPending } = await import('../../src/schedule/process.js');
const { createScheduler } = await import('../../src/schedule/scheduler.js');
type Ctx = Parameters<typeof createScheduler>[0];
type MailerArg = Parameters<typeof createScheduler>[1];

function logger() {
  const lines: Array<{ level: string; fields: unknown; msg: string }> = [];
  const at = (level: string) => (fields: unknown, msg?: string) => void lines.push({ level, fields, msg: msg ?? String(fields) });
  const log = { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return { log, lines };
}

describe('a tick that comes late', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2026-11-21T02:00:30Z') });
    vi.mocked(processPending).mockClear();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is run at once, and logged, instead of waiting for the next SCHEDULE_CRON fire', async () => {
    const { log, lines } = logger();
    // Twice an hour, at :00 and :30 (the same instants in every whole-hour TZ the tests run in).
    const ctx = { logger: log, config: { SCHEDULE_CRON: '0 0,30 * * * *' }, clock: { now: () => new Date() } } as unknown as Ctx;
    const scheduler = createScheduler(ctx, { kind: 'eml' } as MailerArg);
    scheduler.start();
    try {
      // The machine stalls (a suspended VM, an event loop blocked, the clock stepped forward by
      // NTP): the 02:30:00 tick's timer runs five seconds late.
      vi.setSystemTime(new Date('2026-11-21T02:00:35Z'));
      await vi.advanceTimersByTimeAsync(29.5 * 60_000);
      expect(processPending).toHaveBeenCalledTimes(1);
      expect(lines.some((l) => l.level === 'warn' && /late/.test(l.msg))).toBe(true);
    } finally {
      await scheduler.stop();
    }
  });

  it('on time, it runs once as before', async () => {
    const { log } = logger();
    const ctx = { logger: log, config: { SCHEDULE_CRON: '0 0,30 * * * *' }, clock: { now: () => new Date() } } as unknown as Ctx;
    const scheduler = createScheduler(ctx, { kind: 'eml' } as MailerArg);
    scheduler.start();
    try {
      await vi.advanceTimersByTimeAsync(29.5 * 60_000 + 500);
      expect(processPending).toHaveBeenCalledTimes(1);
    } finally {
      await scheduler.stop();
    }
  });
});
