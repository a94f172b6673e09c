/**
 * The fold that lets a tenant's first import find duplicate usernames before the users index does
 * (src/import/fold-set.ts): it must join every pair Postgres's lower() joins, and keep apart the
 * names that differ.
 */
import { describe, expect, it } from 'vitest';
import { fold, UsernameFoldSet } from '../../src/import/fold-set.js';

describe('fold', () => {
  it.each([
    ['ANN.LEE', 'ann.lee'],
    ['İpek01', 'ipek01'], // lower('İ') is 'i' in glibc, 'i̇' in JavaScript
    ['Ångström', 'ångström'],
    ['\u212Aelvin', 'kelvin'], // KELVIN SIGN
    ['\u01C5emal', '\u01C6emal'], // titlecase and lowercase digraph
    ['ÉLODIE', 'élodie'],
    ['José01', 'jose01'], // more than lower() joins: only costs the direct path
  ])('%s and %s fold alike', (a, b) => {
    expect(fold(a)).toBe(fold(b));
  });

  it('keeps different names apart', () => {
    expect(fold('ann.lee')).not.toBe(fold('ann.le'));
    expect(fold('stud0001')).not.toBe(fold('stud0010'));
  });
});

describe('UsernameFoldSet', () => {
  it('says maybe for a name seen before in another case, and only then, over 200,000 names', () => {
    const set = new UsernameFoldSet();
    for (let i = 0; i < 200_000; i++) expect(set.addAndCheck(`student${i}`)).toBe(false);
    expect(set.addAndCheck('STUDENT123456')).toBe(true);
    expect(set.addAndCheck('Student0')).toBe(true);
    expect(set.addAndCheck('student200000')).toBe(false);
  });
});
