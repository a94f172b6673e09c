import { describe, expect, it } from 'vitest';
import { RosterdError } from '../../src/errors.js';
import {
  checkWindowAllowed,
  formatWindow,
  isInsideWindow,
  isNightWindow,
  nextWindow,
  nextWindowStart,
  parseWindow,
  windowAt,
  windowFromParts,
  windowStatus,
} from '../../src/schedule/window.js';

const NIGHT = parseWindow('18:00-06:00');
const at = (iso: string) => new Date(iso);

describe('parseWindow', () => {
  it('reads HH:MM-HH:MM into minutes after midnight', () => {
    expect(parseWindow('18:00-06:00')).toEqual({ start: 1080, end: 360 });
    expect(parseWindow(' 22:15-23:45 ')).toEqual({ start: 1335, end: 1425 });
    expect(windowFromParts('00:00', '05:59')).toEqual({ start: 0, end: 359 });
    expect(formatWindow(parseWindow('19:05-04:30'))).toBe('19:05-04:30');
  });

  it.each(['18-06', '6:00-18:00', '24:00-06:00', '18:60-06:00', '18:00', '18:00-06:00-07:00', '', '18:00–06:00'])(
    'refuses %j with INVALID_WINDOW and an example',
    (text) => {
      const err = captureError(() => parseWindow(text));
      expect(err).toBeInstanceOf(RosterdError);
      expect((err as RosterdError).code).toBe('INVALID_WINDOW');
      expect((err as RosterdError).message).toMatch(/HH:MM|18:00/);
    },
  );

  it('refuses a window that starts and ends at the same time', () => {
    expect(() => parseWindow('20:00-20:00')).toThrow(/same time/);
  });
});

describe('isNightWindow', () => {
  it.each([
    ['18:00-06:00', true],
    ['19:00-05:00', true],
    ['22:00-23:00', true],
    ['18:00-23:59', true],
    ['00:00-06:00', true],
    ['01:00-05:00', true],
    ['23:30-00:30', true],
    ['17:59-06:00', false],
    ['18:00-06:01', false],
    ['05:00-07:00', false],
    ['09:00-17:00', false],
    ['06:00-18:00', false],
    ['20:00-19:00', false], // wraps nearly all day
    ['06:00-05:00', false],
  ])('%s → %s', (text, night) => {
    expect(isNightWindow(parseWindow(text))).toBe(night);
  });

  it('checkWindowAllowed refuses daytime unless forced', () => {
    expect(() => checkWindowAllowed(parseWindow('09:00-17:00'), false)).toThrow(/--allow-daytime/);
    expect(checkWindowAllowed(parseWindow('09:00-17:00'), true)).toEqual(parseWindow('09:00-17:00'));
    expect(checkWindowAllowed(NIGHT, false)).toEqual(NIGHT);
  });
});

describe('isInsideWindow on ordinary days', () => {
  // 2026-11-20 is a Friday; New York is UTC-5, Chicago UTC-6, London UTC+0, Auckland UTC+13 (NZDT).
  it.each([
    ['America/New_York', '2026-11-20T19:00:00Z', false], // 14:00 EST
    ['America/New_York', '2026-11-20T22:59:59Z', false], // 17:59:59 EST
    ['America/New_York', '2026-11-20T23:00:00Z', true], // 18:00 EST
    ['America/New_York', '2026-11-21T04:59:00Z', true], // 23:59 EST
    ['America/New_York', '2026-11-21T05:00:00Z', true], // 00:00 EST
    ['America/New_York', '2026-11-21T10:59:59Z', true], // 05:59:59 EST
    ['America/New_York', '2026-11-21T11:00:00Z', false], // 06:00 EST, end is exclusive
    ['America/Chicago', '2026-11-20T23:00:00Z', false], // 17:00 CST: New York is open, Chicago not yet
    ['America/Chicago', '2026-11-21T00:00:00Z', true], // 18:00 CST
    ['America/Chicago', '2026-11-21T11:30:00Z', true], // 05:30 CST, New York already closed
    ['Europe/London', '2026-11-20T17:59:00Z', false],
    ['Europe/London', '2026-11-20T18:00:00Z', true],
    ['Pacific/Auckland', '2026-11-20T05:00:00Z', true], // 18:00 NZDT on the 20th
    ['Pacific/Auckland', '2026-11-20T04:59:00Z', false],
    ['Pacific/Auckland', '2026-11-20T16:59:00Z', true], // 05:59 NZDT on the 21st
    ['Pacific/Auckland', '2026-11-20T17:00:00Z', false], // 06:00 NZDT
  ])('18:00-06:00 in %s at %s → %s', (zone, iso, inside) => {
    expect(isInsideWindow(NIGHT, zone, at(iso))).toBe(inside);
  });

  it('a window that does not wrap midnight', () => {
    const w = parseWindow('01:00-04:00');
    const zone = 'America/Chicago';
    expect(isInsideWindow(w, zone, at('2026-11-21T06:59:00Z'))).toBe(false); // 00:59 CST
    expect(isInsideWindow(w, zone, at('2026-11-21T07:00:00Z'))).toBe(true); // 01:00
    expect(isInsideWindow(w, zone, at('2026-11-21T09:59:00Z'))).toBe(true); // 03:59
    expect(isInsideWindow(w, zone, at('2026-11-21T10:00:00Z'))).toBe(false); // 04:00
    expect(isInsideWindow(w, zone, at('2026-11-21T02:00:00Z'))).toBe(false); // 20:00 the evening before
    const evening = parseWindow('19:00-23:00');
    expect(isInsideWindow(evening, zone, at('2026-11-21T01:00:00Z'))).toBe(true); // 19:00 CST
    expect(isInsideWindow(evening, zone, at('2026-11-21T05:00:00Z'))).toBe(false); // 23:00
  });

  it('windowAt gives the span of the night', () => {
    expect(windowAt(NIGHT, 'America/Chicago', at('2026-11-21T08:00:00Z'))).toEqual({
      opensAt: at('2026-11-21T00:00:00Z'),
      closesAt: at('2026-11-21T12:00:00Z'),
    });
    expect(windowAt(NIGHT, 'America/Chicago', at('2026-11-21T18:00:00Z'))).toBeNull();
  });

  it('refuses an unknown zone', () => {
    expect(() => isInsideWindow(NIGHT, 'America/Springfield', new Date())).toThrow(/IANA/);
  });
});

describe('nextWindowStart', () => {
  it('is this evening during the day, tomorrow evening inside a window', () => {
    const zone = 'America/Chicago';
    expect(nextWindowStart(NIGHT, zone, at('2026-11-20T20:00:00Z'))).toEqual(at('2026-11-21T00:00:00Z')); // 14:00 → 18:00 CST
    expect(nextWindowStart(NIGHT, zone, at('2026-11-21T00:00:00Z'))).toEqual(at('2026-11-21T00:00:00Z')); // exactly 18:00
    expect(nextWindowStart(NIGHT, zone, at('2026-11-21T03:00:00Z'))).toEqual(at('2026-11-22T00:00:00Z')); // 21:00 → tomorrow
    expect(nextWindowStart(NIGHT, zone, at('2026-11-21T09:00:00Z'))).toEqual(at('2026-11-22T00:00:00Z')); // 03:00 → tonight 18:00
  });

  it('follows each zone', () => {
    const instant = at('2026-11-20T12:00:00Z');
    expect(nextWindowStart(NIGHT, 'Pacific/Auckland', instant)).toEqual(at('2026-11-21T05:00:00Z'));
    expect(nextWindowStart(NIGHT, 'Europe/London', instant)).toEqual(at('2026-11-20T18:00:00Z'));
    expect(nextWindowStart(NIGHT, 'America/New_York', instant)).toEqual(at('2026-11-20T23:00:00Z'));
  });

  it('nextWindow gives the whole span', () => {
    expect(nextWindow(parseWindow('01:00-04:00'), 'Europe/London', at('2026-11-20T12:00:00Z'))).toEqual({
      opensAt: at('2026-11-21T01:00:00Z'),
      closesAt: at('2026-11-21T04:00:00Z'),
    });
  });
});

describe('windowStatus', () => {
  it('says whether the window is open, until when, and when it opens next', () => {
    expect(windowStatus(NIGHT, 'America/Chicago', at('2026-11-21T03:00:00Z'))).toEqual({
      open: true,
      closesAt: at('2026-11-21T12:00:00Z'),
      opensAt: at('2026-11-22T00:00:00Z'),
    });
    expect(windowStatus(NIGHT, 'America/Chicago', at('2026-11-21T18:00:00Z'))).toEqual({
      open: false,
      closesAt: null,
      opensAt: at('2026-11-22T00:00:00Z'),
    });
  });
});

describe('spring forward, US 2026-03-08 (02:00 EST → 03:00 EDT)', () => {
  const zone = 'America/New_York';

  it('18:00-06:00 is open all night and 11 real hours long', () => {
    const span = windowAt(NIGHT, zone, at('2026-03-08T06:59:00Z')); // 01:59 EST
    expect(span).toEqual({ opensAt: at('2026-03-07T23:00:00Z'), closesAt: at('2026-03-08T10:00:00Z') }); // 06:00 EDT
    expect(isInsideWindow(NIGHT, zone, at('2026-03-08T07:00:00Z'))).toBe(true); // 03:00 EDT
    expect(isInsideWindow(NIGHT, zone, at('2026-03-08T09:59:00Z'))).toBe(true); // 05:59 EDT
    expect(isInsideWindow(NIGHT, zone, at('2026-03-08T10:00:00Z'))).toBe(false); // 06:00 EDT
    expect(isInsideWindow(NIGHT, zone, at('2026-03-08T22:00:00Z'))).toBe(true); // 18:00 EDT the next evening
    expect(isInsideWindow(NIGHT, zone, at('2026-03-08T21:59:00Z'))).toBe(false);
  });

  it('a start that never shows on the clock (02:30) opens at the jump, 03:00 EDT', () => {
    const w = parseWindow('02:30-05:00');
    expect(isInsideWindow(w, zone, at('2026-03-08T06:59:59Z'))).toBe(false); // 01:59:59 EST
    expect(isInsideWindow(w, zone, at('2026-03-08T07:00:00Z'))).toBe(true); // 03:00 EDT
    expect(nextWindowStart(w, zone, at('2026-03-08T05:00:00Z'))).toEqual(at('2026-03-08T07:00:00Z'));
    // the following night is ordinary: 02:30 EDT
    expect(nextWindowStart(w, zone, at('2026-03-08T12:00:00Z'))).toEqual(at('2026-03-09T06:30:00Z'));
  });

  it('an end that never shows on the clock (02:30) closes at the jump', () => {
    const w = parseWindow('22:00-02:30');
    expect(isInsideWindow(w, zone, at('2026-03-08T06:59:00Z'))).toBe(true); // 01:59 EST
    expect(isInsideWindow(w, zone, at('2026-03-08T07:00:00Z'))).toBe(false); // 03:00 EDT
    expect(windowAt(w, zone, at('2026-03-08T03:00:00Z'))?.closesAt).toEqual(at('2026-03-08T07:00:00Z'));
  });

  it('a window wholly inside the skipped hour (02:00-02:30) does not open that night; the next opening is the night after', () => {
    const w = parseWindow('02:00-02:30');
    // Both edges fall on the jump (03:00 EDT): that night's span is empty, so it is no opening.
    expect(nextWindow(w, zone, at('2026-03-07T20:00:00Z'))).toEqual({
      opensAt: at('2026-03-09T06:00:00Z'), // 02:00 EDT on the 9th
      closesAt: at('2026-03-09T06:30:00Z'),
    });
    expect(windowStatus(w, zone, at('2026-03-08T06:59:00Z'))).toEqual({ open: false, closesAt: null, opensAt: at('2026-03-09T06:00:00Z') });
    expect(isInsideWindow(w, zone, at('2026-03-08T07:00:00Z'))).toBe(false);
  });

  it('Chicago changes at its own 02:00, an hour later in real time', () => {
    const w = parseWindow('02:30-05:00');
    expect(isInsideWindow(w, 'America/Chicago', at('2026-03-08T07:30:00Z'))).toBe(false); // 01:30 CST
    expect(isInsideWindow(w, 'America/Chicago', at('2026-03-08T08:00:00Z'))).toBe(true); // 03:00 CDT
  });
});

describe('fall back, US 2026-11-01 (02:00 EDT → 01:00 EST)', () => {
  const zone = 'America/New_York';

  it('18:00-06:00 is open through the repeated hour and 13 real hours long', () => {
    const span = windowAt(NIGHT, zone, at('2026-11-01T05:30:00Z')); // 01:30 EDT
    expect(span).toEqual({ opensAt: at('2026-10-31T22:00:00Z'), closesAt: at('2026-11-01T11:00:00Z') }); // 18:00 EDT → 06:00 EST
    expect(isInsideWindow(NIGHT, zone, at('2026-11-01T06:30:00Z'))).toBe(true); // 01:30 EST
    expect(isInsideWindow(NIGHT, zone, at('2026-11-01T10:59:00Z'))).toBe(true); // 05:59 EST
    expect(isInsideWindow(NIGHT, zone, at('2026-11-01T11:00:00Z'))).toBe(false);
  });

  it('a start at 01:30 (shown twice) opens at the first showing and stays open', () => {
    const w = parseWindow('01:30-05:00');
    expect(isInsideWindow(w, zone, at('2026-11-01T05:29:00Z'))).toBe(false); // 01:29 EDT
    expect(isInsideWindow(w, zone, at('2026-11-01T05:30:00Z'))).toBe(true); // 01:30 EDT
    expect(isInsideWindow(w, zone, at('2026-11-01T06:10:00Z'))).toBe(true); // 01:10 EST: the clock reads before the start, still open
    expect(isInsideWindow(w, zone, at('2026-11-01T09:59:00Z'))).toBe(true); // 04:59 EST
    expect(isInsideWindow(w, zone, at('2026-11-01T10:00:00Z'))).toBe(false); // 05:00 EST
    expect(nextWindowStart(w, zone, at('2026-11-01T04:00:00Z'))).toEqual(at('2026-11-01T05:30:00Z'));
  });

  it('an end at 01:30 (shown twice) closes at the first showing and does not reopen', () => {
    const w = parseWindow('18:00-01:30');
    expect(isInsideWindow(w, zone, at('2026-11-01T05:29:00Z'))).toBe(true); // 01:29 EDT
    expect(isInsideWindow(w, zone, at('2026-11-01T05:30:00Z'))).toBe(false); // 01:30 EDT
    expect(isInsideWindow(w, zone, at('2026-11-01T06:10:00Z'))).toBe(false); // 01:10 EST
    expect(isInsideWindow(w, zone, at('2026-11-01T22:59:00Z'))).toBe(false); // 17:59 EST
    expect(isInsideWindow(w, zone, at('2026-11-01T23:00:00Z'))).toBe(true); // 18:00 EST
  });
});

describe('other zones change on other nights', () => {
  it('Europe/London, 2026-03-29 (01:00 GMT → 02:00 BST) and 2026-10-25 (02:00 BST → 01:00 GMT)', () => {
    const w = parseWindow('01:30-05:00');
    expect(isInsideWindow(w, 'Europe/London', at('2026-03-29T00:59:00Z'))).toBe(false); // 00:59 GMT
    expect(isInsideWindow(w, 'Europe/London', at('2026-03-29T01:00:00Z'))).toBe(true); // 02:00 BST, 01:30 skipped
    expect(windowAt(NIGHT, 'Europe/London', at('2026-10-25T01:30:00Z'))).toEqual({
      opensAt: at('2026-10-24T17:00:00Z'),
      closesAt: at('2026-10-25T06:00:00Z'),
    });
  });

  it('Pacific/Auckland, 2026-04-05 (03:00 NZDT → 02:00 NZST) and 2026-09-27 (02:00 NZST → 03:00 NZDT)', () => {
    // fall back: 18:00 NZDT on 4 April (05:00Z) to 06:00 NZST on 5 April (18:00Z)
    expect(windowAt(NIGHT, 'Pacific/Auckland', at('2026-04-04T14:30:00Z'))).toEqual({
      opensAt: at('2026-04-04T05:00:00Z'),
      closesAt: at('2026-04-04T18:00:00Z'),
    });
    // spring forward: 18:00 NZST on 26 September (06:00Z) to 06:00 NZDT on 27 September (17:00Z)
    expect(windowAt(NIGHT, 'Pacific/Auckland', at('2026-09-26T14:00:00Z'))).toEqual({
      opensAt: at('2026-09-26T06:00:00Z'),
      closesAt: at('2026-09-26T17:00:00Z'),
    });
    const w = parseWindow('02:30-05:00');
    expect(nextWindowStart(w, 'Pacific/Auckland', at('2026-09-26T12:00:00Z'))).toEqual(at('2026-09-26T14:00:00Z')); // 03:00 NZDT
  });
});

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}
