/**
 * When SCHEDULE_CRON next fires after a given instant, for `import list` and `doctor`.
 *
 * node-cron computes a task's next run only from the real present, and its matcher is not
 * exported on its own; so this walks the candidates that the expression's own fields allow and
 * asks an unstarted node-cron task whether each one matches. The answer is therefore node-cron's,
 * including day-of-month and day-of-week rules, and the fake clocks of tests work.
 */
import { DateTime } from 'luxon';
import cron from 'node-cron';
import { windowStatus, type ImportWindow } from './window.js';

/** The cron's first fire strictly after an instant, or null if it does not fire within `days`. */
export type NextTick = (after: Date) => Date | null;

/**
 * Calls `use` with the cron's next-fire function. `zone` is the zone node-cron reads the
 * expression in: the scheduler gives it none, so the process's own (TZ), which is the default.
 */
export async function withNextTick<T>(expression: string, use: (next: NextTick) => T | Promise<T>, zone?: string, days = 400): Promise<T> {
  const fields = cron.parse(expression);
  const task = cron.createTask(expression, () => undefined, zone === undefined ? {} : { timezone: zone });
  try {
    return await use((after) => nextTick(fields, (d) => task.match(d), after, zone, days));
  } finally {
    await task.destroy(); // createTask registered it with node-cron
  }
}

type Fields = ReturnType<typeof cron.parse>;

function nextTick(fields: Fields, matches: (d: Date) => boolean, after: Date, zone: string | undefined, days: number): Date | null {
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const [hours, minutes, seconds] = [sorted(fields.hour), sorted(fields.minute), sorted(fields.second)];
  const start = zone === undefined ? DateTime.fromJSDate(after) : DateTime.fromJSDate(after, { zone });
  let day = start.startOf('day');
  for (let i = 0; i <= days; i++, day = day.plus({ days: 1 })) {
    if (!fields.month.includes(day.month)) continue;
    // On the first day, times of day up to `after` cannot be later than it (give or take an hour
    // that the clocks repeat, which the exact comparison below settles).
    const skipUpTo = i === 0 ? start.hour * 3600 + start.minute * 60 + start.second - 3600 : -1;
    dayLoop: for (const h of hours) {
      for (const m of minutes) {
        for (const s of seconds) {
          if (h * 3600 + m * 60 + s <= skipUpTo) continue;
          const candidate = day.set({ hour: h, minute: m, second: s, millisecond: 0 });
          if (candidate.hour !== h || candidate.minute !== m) continue; // the clock skips this time (DST)
          if (candidate.toMillis() <= after.getTime()) continue;
          const at = candidate.toJSDate();
          if (matches(at)) return at;
          // Hour, minute, second and month are the expression's own, so the day is what fails.
          break dayLoop;
        }
      }
    }
  }
  return null;
}

/** How many nights ahead `firstTickInWindow` looks for a tick inside the window. */
export const LOOKAHEAD_NIGHTS = 14;

/**
 * The first tick at or after `from` that falls inside the window: when the scheduler takes a
 * tenant's pending upload. Null if none comes within LOOKAHEAD_NIGHTS: the cron only fires while
 * the window is shut.
 */
export function firstTickInWindow(nextTick: NextTick, window: ImportWindow, zone: string, from: Date): Date | null {
  let after = new Date(from.getTime() - 1);
  for (let night = 0; night <= LOOKAHEAD_NIGHTS; night++) {
    const tick = nextTick(after);
    if (tick === null) return null;
    const status = windowStatus(window, zone, tick);
    if (status.open) return tick;
    // Shut at that tick: the next chance is the first tick once it opens again.
    after = new Date(status.opensAt.getTime() - 1);
  }
  return null;
}
