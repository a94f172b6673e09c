import { describe, expect, it } from 'vitest';
import { withNextTick } from '../../src/schedule/next-tick.js';
import { scheduleView, type TenantQueue } from '../../src/schedule/operator-view.js';
import type { Tenant } from '../../src/store/tenants.js';

const tenant: Tenant = {
  id: 1,
  subdomain: 'lincoln-usd',
  name: 'Lincoln USD',
  timezone: 'America/Chicago',
  adminEmails: ['it@lincoln.k12.us'],
  window: '18:00-06:00',
  windowStart: '18:00',
  windowEnd: '06:00',
  allowDaytime: false,
  thresholdPercent: 10,
  thresholdCount: null,
  status: 'active',
  createdAt: new Date(0),
  updatedAt: new Date(0),
};

type Viewed = Parameters<typeof scheduleView>[0];
const pending: Viewed = { status: 'pending', file: 'users.csv' };

/**
 * The view at `now` with the scheduler on SCHEDULE_CRON `cron` (default: every 5 minutes, read in
 * UTC so that the test is the same in every TZ) and the default SETTLE_SECONDS.
 */
const view = (now: string, opts: { cron?: string; newestPendingAt?: string; record?: Viewed; t?: Tenant } = {}) => {
  const queue: TenantQueue = { heldUsersId: null, newestPendingAt: opts.newestPendingAt ? new Date(opts.newestPendingAt) : null };
  return withNextTick(
    opts.cron ?? '*/5 * * * *',
    (nextTick) => scheduleView(opts.record ?? pending, opts.t ?? tenant, new Date(now), { nextTick, settleMs: 120_000 }, queue),
    'UTC',
  );
};

describe('import list: why was the file not imported yet?', () => {
  it("a pending upload in the afternoon waits for the evening, in the tenant's own zone", async () => {
    const v = await view('2026-11-20T20:00:00Z'); // 14:00 CST
    expect(v).toMatchObject({ windowOpen: false, nextRunAt: '2026-11-20T18:00:00-06:00' });
    expect(v.note).toMatch(/waiting for the window \(18:00-06:00 America\/Chicago\), which opens 2026-11-20T18:00:00-06:00/);
  });

  it('a settled pending upload at night is taken at the next tick, not "now"', async () => {
    const v = await view('2026-11-21T03:02:10Z', { newestPendingAt: '2026-11-21T02:00:00Z' }); // 21:02 CST
    expect(v).toMatchObject({ windowOpen: true, nextRunAt: '2026-11-20T21:05:00-06:00' });
    expect(v.note).toBe("window open: imported at the scheduler's next tick");
  });

  it('an upload that has just arrived waits SETTLE_SECONDS, and then for the tick after', async () => {
    // Arrived 21:04:30; settled at 21:06:30; the 21:05 tick finds it settling, the 21:10 one takes it.
    const v = await view('2026-11-21T03:04:40Z', { newestPendingAt: '2026-11-21T03:04:30Z' });
    expect(v).toMatchObject({ windowOpen: true, nextRunAt: '2026-11-20T21:10:00-06:00' });
    expect(v.note).toBe("window open: imported at the scheduler's next tick, once nothing new has arrived for 120 s");
  });

  it('a tick exactly when the window opens takes it; a cron that fires later in the night is followed', async () => {
    expect((await view('2026-11-20T20:00:00Z', { cron: '0 0 * * *' })).nextRunAt).toBe(
      '2026-11-20T18:00:00-06:00', // 00:00 UTC
    );
    // 03:00 UTC is 21:00 in Chicago: the first tick inside the window.
    expect((await view('2026-11-20T20:00:00Z', { cron: '0 3 * * *' })).nextRunAt).toBe('2026-11-20T21:00:00-06:00');
    // Sundays only (2026-11-22 is a Sunday): the ticks of the nights before fall outside the window.
    expect((await view('2026-11-18T20:00:00Z', { cron: '0 15,3 * * 0' })).nextRunAt).toBe(
      '2026-11-21T21:00:00-06:00', // Sunday 03:00 UTC
    );
  });

  it('a cron that never fires while the window is open says so, instead of a time that never comes', async () => {
    // 12:00 UTC is 06:00 in Chicago, the minute the window closes (end exclusive).
    const v = await view('2026-11-20T20:00:00Z', { cron: '0 12 * * *' });
    expect(v.nextRunAt).toBeNull();
    expect(v.note).toBe(
      'SCHEDULE_CRON does not fire while the window (18:00-06:00 America/Chicago) is open in the next 14 nights, so nothing is imported: ' +
        'change SCHEDULE_CRON or the window, or run "rosterd import run --now --tenant lincoln-usd"',
    );
  });

  it('a window that the spring-forward jump skips that night waits for the next night, not "does not fire"', async () => {
    // 2026-03-08 in Chicago: 02:00 CST jumps to 03:00 CDT, so 02:00-02:30 has no minute that night.
    const t = { ...tenant, window: '02:00-02:30', windowStart: '02:00', windowEnd: '02:30' };
    const v = await view('2026-03-07T20:00:00Z', { t });
    expect(v.nextRunAt).toBe('2026-03-09T02:00:00-05:00');
    expect(v.note).toBe('waiting for the window (02:00-02:30 America/Chicago), which opens 2026-03-09T02:00:00-05:00');
  });

  it('a suspended tenant is named as the reason', async () => {
    const v = await view('2026-11-21T03:00:00Z', { t: { ...tenant, status: 'suspended' } });
    expect(v.nextRunAt).toBeNull();
    expect(v.note).toMatch(/suspended.*rosterd tenant resume lincoln-usd/);
  });

  it('a finished import has no next run', async () => {
    expect(await view('2026-11-21T03:00:00Z', { record: { status: 'succeeded', file: 'users.csv' } })).toMatchObject({
      nextRunAt: null,
      note: null,
    });
  });
});
