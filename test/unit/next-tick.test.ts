import cron from 'node-cron';
import { describe, expect, it } from 'vitest';
import { withNextTick } from '../../src/schedule/next-tick.js';

const NY = 'America/New_York';

/** The next fires after `after`, one after the other. */
const fires = (expression: string, after: string, count = 1, zone = NY, days?: number) =>
  withNextTick(
    expression,
    (next) => {
      const out: Array<string | null> = [];
      let from: Date | null = new Date(after);
      for (let i = 0; i < count && from !== null; i++) {
        from = next(from);
        out.push(from?.toISOString() ?? null);
      }
      return out;
    },
    zone,
    days,
  );

describe('when SCHEDULE_CRON next fires', () => {
  it('strictly after the instant given: a tick at that very instant is not "next"', async () => {
    expect(await fires('*/5 * * * *', '2026-11-22T01:03:11Z', 3)).toEqual([
      '2026-11-22T01:05:00.000Z',
      '2026-11-22T01:10:00.000Z',
      '2026-11-22T01:15:00.000Z',
    ]);
    expect(await fires('*/5 * * * *', '2026-11-22T01:05:00Z')).toEqual(['2026-11-22T01:10:00.000Z']);
    expect(await fires('*/20 * * * * *', '2026-11-22T01:05:59.500Z', 2)).toEqual(['2026-11-22T01:06:00.000Z', '2026-11-22T01:06:20.000Z']);
  });

  it("reads the expression in the scheduler's zone, days and weekdays included", async () => {
    // 02:00 in New York on weekdays; 2026-11-21 is a Saturday.
    expect(await fires('0 2 * * 1-5', '2026-11-21T12:00:00Z', 2)).toEqual(['2026-11-23T07:00:00.000Z', '2026-11-24T07:00:00.000Z']);
    expect(await fires('0 2 * * 1-5', '2026-11-21T12:00:00Z', 1, 'UTC')).toEqual(['2026-11-23T02:00:00.000Z']);
    // The last day of the month.
    expect(await fires('0 3 L * *', '2026-11-21T12:00:00Z', 2, 'UTC')).toEqual(['2026-11-30T03:00:00.000Z', '2026-12-31T03:00:00.000Z']);
    // Every second, but only on Sundays: found without walking every second of the week.
    expect(await fires('* * * * * 0', '2026-11-23T12:00:00Z', 2, 'UTC')).toEqual(['2026-11-29T00:00:00.000Z', '2026-11-29T00:00:01.000Z']);
  });

  it('across the changes of the clocks', async () => {
    // Spring forward (2026-03-08): 02:30 never shows, so that night has no 02:30 tick.
    expect(await fires('30 2 * * *', '2026-03-07T12:00:00Z', 2)).toEqual(['2026-03-09T06:30:00.000Z', '2026-03-10T06:30:00.000Z']);
    // 01:30 EDT, then the repeated 01:30 EST is not a second tick of its own that this misses.
    const [first] = await fires('30 1 * * *', '2026-10-31T12:00:00Z');
    expect(['2026-11-01T05:30:00.000Z', '2026-11-01T06:30:00.000Z']).toContain(first);
  });

  it('an expression that does not fire within the days looked at gives null', async () => {
    expect(await fires('0 0 29 2 *', '2026-03-01T12:00:00Z', 1, 'UTC')).toEqual([null]);
    expect(await fires('0 0 29 2 *', '2026-03-01T12:00:00Z', 1, 'UTC', 800)).toEqual(['2028-02-29T00:00:00.000Z']);
  });

  it("agrees with node-cron's own next match from the present", async () => {
    // node-cron works out a next run only from now (getNextRuns); from now, the two must agree.
    for (const expression of ['*/5 * * * *', '7 */3 * * *', '0 18-23 * * 1-5', '15 4 1,15 * *', '*/10 * * * * *', '0 0 L * *']) {
      const task = cron.createTask(expression, () => undefined);
      try {
        const before = new Date();
        const [theirs] = task.getNextRuns(1);
        const ours = await withNextTick(expression, (next) => next(before));
        expect(ours?.toISOString(), expression).toBe(theirs?.toISOString());
      } finally {
        await task.destroy();
      }
    }
  });
});
