/**
 * Night-window arithmetic (PRODUCT.md §5). Pure functions: the instant is passed in.
 *
 * A window is `HH:MM-HH:MM` in the tenant's wall-clock time, start inclusive, end exclusive. If
 * the end is not after the start the window wraps midnight (`18:00-06:00` runs from 6 PM to 6 AM
 * the next morning). Start and end must differ.
 *
 * Each night's window is ONE continuous span of real time, from the first instant the tenant's
 * clock reads the start time to the first instant it reads the end time. That one rule decides
 * the nights the clocks change:
 * - spring forward (US 2026-03-08, 02:00 → 03:00): a start or end at 02:30 never shows on the
 *   clock, so the edge falls on the jump itself (03:00 EDT); `02:30-05:00` opens at 03:00, and
 *   `02:00-02:30`, both of whose edges fall on the jump, does not open that night.
 * - fall back (US 2026-11-01, 02:00 EDT → 01:00 EST): 01:30 shows twice; the edge is its first
 *   showing (01:30 EDT). A window never closes and reopens within one night, so `18:00-01:30`
 *   stays closed during the repeated 01:00–01:30 EST.
 * `18:00-06:00` is therefore 11 real hours on the spring-forward night and 13 on the fall-back
 * night; an upload is never imported twice because of it, and never skipped.
 */
import { DateTime, IANAZone } from 'luxon';
import { RosterdError } from '../errors.js';

/** An import window; minutes after local midnight, end exclusive. */
export interface ImportWindow {
  readonly start: number;
  readonly end: number;
}

/** One night's window as real instants: `opensAt` ≤ t < `closesAt`. */
export interface WindowSpan {
  readonly opensAt: Date;
  readonly closesAt: Date;
}

/** The night of PRODUCT.md §5: 18:00 (inclusive) to 06:00 (exclusive), wrapping midnight. */
const NIGHT_START = 18 * 60;
const NIGHT_END = 6 * 60;

export const DEFAULT_WINDOW = '18:00-06:00';

const TIME = /^([01][0-9]|2[0-3]):([0-5][0-9])$/;

/** Parse one `HH:MM` (24-hour, two digits each) into minutes after midnight. */
export function parseTimeOfDay(text: string): number {
  const m = TIME.exec(text.trim());
  if (!m) {
    throw new RosterdError('INVALID_WINDOW', `"${text}" is not a time of day: write it as HH:MM on a 24-hour clock, e.g. 18:00.`);
  }
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Parse `HH:MM-HH:MM`. Throws INVALID_WINDOW with what to write instead. */
export function parseWindow(text: string): ImportWindow {
  const parts = text.trim().split('-');
  if (parts.length !== 2 || parts[0] === undefined || parts[1] === undefined) {
    throw new RosterdError('INVALID_WINDOW', `"${text}" is not an import window: write it as HH:MM-HH:MM, e.g. ${DEFAULT_WINDOW}.`);
  }
  return windowFromParts(parts[0], parts[1]);
}

/** Build a window from the two columns the tenants table keeps (`window_start`, `window_end`). */
export function windowFromParts(start: string, end: string): ImportWindow {
  const window = { start: parseTimeOfDay(start), end: parseTimeOfDay(end) };
  if (window.start === window.end) {
    throw new RosterdError(
      'INVALID_WINDOW',
      `The import window ${start}-${end} starts and ends at the same time: give an end different from the start, e.g. ${DEFAULT_WINDOW}.`,
    );
  }
  return window;
}

export function formatTimeOfDay(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`;
}

export function formatWindow(window: ImportWindow): string {
  return `${formatTimeOfDay(window.start)}-${formatTimeOfDay(window.end)}`;
}

export function wrapsMidnight(window: ImportWindow): boolean {
  return window.end < window.start;
}

/** True when every minute of the window lies in the night, 18:00 (inclusive) to 06:00 (exclusive). */
export function isNightWindow(window: ImportWindow): boolean {
  const { start, end } = window;
  if (wrapsMidnight(window)) return start >= NIGHT_START && end <= NIGHT_END;
  // Not wrapping: wholly in the evening, or wholly in the early morning.
  return start >= NIGHT_START || end <= NIGHT_END;
}

/**
 * Refuse a daytime window unless the operator forced it (`--allow-daytime`). Returns the window,
 * so `tenant add/update` can write `checkWindowAllowed(parseWindow(text), allowDaytime)`.
 */
export function checkWindowAllowed(window: ImportWindow, allowDaytime: boolean): ImportWindow {
  if (!allowDaytime && !isNightWindow(window)) {
    throw new RosterdError(
      'INVALID_WINDOW',
      `The import window ${formatWindow(window)} reaches outside the night (18:00-06:00), when schools use the roster. ` +
        `Choose a window inside 18:00-06:00, or add --allow-daytime if the district asked for it.`,
    );
  }
  return window;
}

export function isValidZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

function ianaZone(zone: string): IANAZone {
  if (!IANAZone.isValidZone(zone)) {
    throw new RosterdError('INVALID_TIMEZONE', `"${zone}" is not a known IANA time zone: use a name such as America/Chicago.`);
  }
  return IANAZone.create(zone);
}

/** True when `instant` lies inside the window's span of the night it belongs to. */
export function isInsideWindow(window: ImportWindow, zone: string, instant: Date): boolean {
  return windowAt(window, zone, instant) !== null;
}

/** The span of the window that contains `instant`, or null when the window is closed. */
export function windowAt(window: ImportWindow, zone: string, instant: Date): WindowSpan | null {
  const z = ianaZone(zone);
  const t = instant.getTime();
  const today = localDate(z, t);
  // A span opens on the local date of its start; a span containing t opened today or yesterday.
  for (const day of [today.minus({ days: 1 }), today]) {
    const span = spanOn(window, z, day);
    if (span.opensAt.getTime() <= t && t < span.closesAt.getTime()) return span;
  }
  return null;
}

/** The first window opening at or after `instant` (when inside a window: the next night's). */
export function nextWindowStart(window: ImportWindow, zone: string, instant: Date): Date {
  return nextWindow(window, zone, instant).opensAt;
}

/** The first window span opening at or after `instant`. */
export function nextWindow(window: ImportWindow, zone: string, instant: Date): WindowSpan {
  const z = ianaZone(zone);
  const t = instant.getTime();
  let day = localDate(z, t).minus({ days: 1 });
  for (let i = 0; i < 4; i++, day = day.plus({ days: 1 })) {
    const span = spanOn(window, z, day);
    // A window wholly inside the hour the clocks skip (02:00-02:30 on a spring-forward night) has
    // both edges on the jump: that night it never opens, so its empty span is no opening. Taken
    // for one, `import list` said the window opened at the jump, and, no tick ever finding it
    // open then, that SCHEDULE_CRON never fires inside it.
    if (span.opensAt.getTime() >= t && span.closesAt.getTime() > span.opensAt.getTime()) return span;
  }
  /* c8 ignore next */
  throw new Error(`no window opening found after ${instant.toISOString()} in ${zone}`);
}

/** The local calendar date of `t` in the zone (as a UTC-midnight DateTime, used only for its y/m/d). */
function localDate(zone: IANAZone, t: number): DateTime {
  const local = DateTime.fromMillis(t, { zone });
  return DateTime.utc(local.year, local.month, local.day);
}

function spanOn(window: ImportWindow, zone: IANAZone, day: DateTime): WindowSpan {
  const endDay = wrapsMidnight(window) ? day.plus({ days: 1 }) : day;
  return { opensAt: new Date(firstReading(zone, day, window.start)), closesAt: new Date(firstReading(zone, endDay, window.end)) };
}

/**
 * The first instant at which the zone's clock reads `minutes` on `day`, or, when that reading is
 * skipped (spring forward), the instant the clock jumps past it.
 */
export function firstReading(zone: IANAZone, day: DateTime, minutes: number): number {
  // The wall-clock reading as if it were UTC; subtracting the offset in force gives the instant.
  const wall = Date.UTC(day.year, day.month - 1, day.day, Math.floor(minutes / 60), minutes % 60);
  const HOUR = 3_600_000;
  const offsets = new Set([zone.offset(wall - 14 * HOUR), zone.offset(wall), zone.offset(wall + 14 * HOUR)]);
  const candidates = [...offsets]
    .map((offset) => wall - offset * 60_000)
    .filter((instant) => instant + zone.offset(instant) * 60_000 === wall);
  if (candidates.length > 0) return Math.min(...candidates);
  // Skipped: find the transition, the first instant whose reading is past `wall`.
  let lo = wall - Math.max(...offsets) * 60_000; // reads before `wall`
  let hi = wall - Math.min(...offsets) * 60_000; // reads after `wall`
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (mid + zone.offset(mid) * 60_000 > wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** For operators (`import list`, `tenant show`): is the window open, until when, and when it opens next. */
export interface WindowStatus {
  open: boolean;
  /** the end of the current window (open only) */
  closesAt: Date | null;
  /** the next opening after now (tonight's when closed, tomorrow's when open) */
  opensAt: Date;
}

export function windowStatus(window: ImportWindow, zone: string, instant: Date): WindowStatus {
  const span = windowAt(window, zone, instant);
  return { open: span !== null, closesAt: span?.closesAt ?? null, opensAt: nextWindowStart(window, zone, instant) };
}
