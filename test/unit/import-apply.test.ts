import { describe, expect, it } from 'vitest';
import { holdFacts, holdReason } from '../../src/import/hold.js';
import { copyField, copyLine } from '../../src/import/copy-stream.js';

describe('the safety hold threshold', () => {
  const target = (thresholdPercent: number, thresholdCount: number | null) => ({
    uploadId: 'x',
    tenantId: 1,
    thresholdPercent,
    thresholdCount,
  });

  it('holds more than the percentage of active users, not exactly it', () => {
    expect(holdReason(10, 100, target(10, null))).toBeNull();
    expect(holdReason(11, 100, target(10, null))).toMatch(
      /would deactivate 11 of 100 active users \(11%\), more than the district's threshold of 10%/,
    );
    expect(holdReason(0, 0, target(10, null))).toBeNull();
    expect(holdReason(1, 3, target(0, null))).not.toBeNull();
  });

  it('does not hold exactly a fractional threshold, as with a whole one', () => {
    // 2.3% of 3000 is 69 (and 0.57% of 10000 is 57), but in floating point 3000 * 2.3 / 100 is
    // 68.99999999999999: exactly the threshold was held.
    expect(holdReason(69, 3000, target(2.3, null))).toBeNull();
    expect(holdReason(70, 3000, target(2.3, null))).toMatch(/more than the district's threshold of 2.3%/);
    expect(holdReason(57, 10000, target(0.57, null))).toBeNull();
    expect(holdReason(58, 10000, target(0.57, null))).not.toBeNull();
    expect(holdReason(77, 5500, target(1.4, null))).toBeNull();
    expect(holdReason(3, 2, target(100, null))).not.toBeNull();
    expect(holdReason(2, 2, target(100, null))).toBeNull();
  });

  it('holds more than the absolute count when one is set, whichever limit is hit first', () => {
    expect(holdReason(5, 1000, target(10, 5))).toBeNull();
    expect(holdReason(6, 1000, target(10, 5))).toMatch(/limit of 5 deactivations/);
    expect(holdReason(50, 100, target(10, 1000))).toMatch(/threshold of 10%/);
  });

  it('says what to do, naming the import', () => {
    expect(holdReason(50, 100, target(10, null))).toMatch(/Nothing was applied.*rosterd import approve x".*rosterd import reject x"/);
    // A corrected file supersedes the held one; rejecting is for when none is coming.
    expect(holdReason(50, 100, target(10, null))).toMatch(
      /If not, a corrected users.csv from the district \(the whole roster, without an action column\) replaces it when that is imported; reject it with "rosterd import reject x" only if none is coming\.$/,
    );
    expect(holdReason(50, 100, target(10, null), true)).toMatch(/^An import of this file would be held: .*50 of 100/);
  });

  it("gives the report the message's facts without the operator's commands", () => {
    const message = holdReason(50, 100, target(10, null)) ?? '';
    expect(holdFacts(message)).toBe(
      "this file would deactivate 50 of 100 active users (50%), more than the district's threshold of 10% of active users.",
    );
    expect(holdFacts(holdReason(50, 100, target(10, null), true) ?? '')).toBeNull();
    expect(holdFacts('the connection to the database was lost')).toBeNull();
  });
});

describe('COPY text encoding', () => {
  it('escapes the characters COPY treats specially and writes NULL as \\N', () => {
    expect(copyField('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
    expect(copyField(null)).toBe('\\N');
    expect(copyField(undefined)).toBe('\\N');
    expect(copyField('\\N')).toBe('\\\\N'); // a literal backslash-N is data, not NULL
    expect(copyField(true)).toBe('t');
    expect(copyField(2029)).toBe('2029');
    expect(copyField(Buffer.from([0, 255]))).toBe('\\\\x00ff');
    expect(copyLine(['x', null, 3])).toBe('x\t\\N\t3\n');
  });
});
