/** When the embedded Postgres falls back to a C character type (src/store/embedded.ts isMissingLocale). */
import { describe, expect, it } from 'vitest';
import { isMissingLocale } from '../../src/store/embedded.js';

describe('isMissingLocale', () => {
  it('is true only when initdb refuses the locale itself', () => {
    expect(isMissingLocale('initdb -D failed (exit 1): initdb: error: invalid locale name "C.UTF-8"')).toBe(true);
    // A full disk: initdb's output names the locale as it does on every run, but that is not the failure.
    const diskFull = [
      'initdb -D failed (exit 1): The files belonging to this database system will be owned by user "postgres".',
      'The database cluster will be initialized with locale "C".',
      'creating directory /data/pg ... ok',
      'initdb: error: could not write to file "/data/pg/base/1/1259": No space left on device',
    ].join('\n');
    expect(isMissingLocale(diskFull)).toBe(false);
    expect(isMissingLocale('initdb: error: could not create directory "/data/pg": Permission denied')).toBe(false);
  });
});
