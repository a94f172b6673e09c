/**
 * How far this process's clock is from the database's. Replicas take received_at, claim expiry,
 * settling and the night window from their own clocks, while which upload is newest comes from the
 * database (migration 006): a replica whose clock is off imports outside the window by as much,
 * and takes back claims too early or too late. NTP on every host keeps it near zero.
 */
import type { Clock } from '../types.js';
import type { Queryable } from './db.js';

/** Beyond this, doctor warns, serve logs a warning at start, and the metric says so. */
export const CLOCK_SKEW_WARN_MS = 5_000;

export interface ClockSkew {
  /** this process's clock minus the database's: positive when this process is ahead */
  skewMs: number;
  /** the query's round trip: the measurement is uncertain by half of it */
  roundTripMs: number;
}

export async function measureClockSkew(db: Queryable, clock: Clock): Promise<ClockSkew> {
  const before = clock.now().getTime();
  const started = performance.now();
  const { rows } = await db.query<{ at: number }>(`SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS at`);
  const roundTripMs = performance.now() - started;
  const databaseAt = rows[0]?.at ?? before;
  return { skewMs: before + roundTripMs / 2 - databaseAt, roundTripMs };
}

/** True when the skew is beyond the threshold by more than the measurement's uncertainty. */
export function isClockSkewed(skew: ClockSkew): boolean {
  return Math.abs(skew.skewMs) - skew.roundTripMs / 2 > CLOCK_SKEW_WARN_MS;
}

/** "12.3 s behind the database" / "ahead of". */
export function describeClockSkew(skew: ClockSkew): string {
  const seconds = Math.abs(skew.skewMs) / 1000;
  const amount = seconds >= 10 ? Math.round(seconds).toString() : seconds.toFixed(1);
  return `${amount} s ${skew.skewMs < 0 ? 'behind' : 'ahead of'} the database's clock`;
}
