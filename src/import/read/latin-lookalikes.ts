/**
 * Letters of other scripts that look like Latin ones: the Cyrillic а of a Russian or Ukrainian
 * keyboard layout left on, a Greek Ο pasted from a document. A username holding one is a different
 * username from the Latin one it looks exactly like, so a file naming "аnn.lee" names nobody, and
 * "does not exist" sends the administrator looking at a user who plainly does. Usernames may hold
 * letters of any script (PRODUCT.md §3), so such a letter is no error in itself; it is worth
 * saying only when the Latin spelling is a user.
 */

/**
 * Cyrillic and Greek letters drawn like a Latin letter in common fonts (after Unicode's confusables).
 * The one table: users.csv's rejected usernames are read with it too (users-rules.ts asSeen).
 */
const LATIN_OF: Readonly<Record<string, string>> = {
  // Cyrillic, lowercase and uppercase
  а: 'a',
  е: 'e',
  һ: 'h',
  і: 'i',
  ј: 'j',
  к: 'k',
  ӏ: 'l',
  о: 'o',
  р: 'p',
  ԛ: 'q',
  ѕ: 's',
  с: 'c',
  у: 'y',
  х: 'x',
  ԝ: 'w',
  ԁ: 'd',
  А: 'A',
  В: 'B',
  Е: 'E',
  К: 'K',
  М: 'M',
  Н: 'H',
  О: 'O',
  Р: 'P',
  С: 'C',
  Т: 'T',
  Х: 'X',
  У: 'Y',
  І: 'I',
  Ј: 'J',
  Ѕ: 'S',
  Ԛ: 'Q',
  Ԝ: 'W',
  // Greek
  α: 'a',
  ε: 'e',
  ι: 'i',
  κ: 'k',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  Α: 'A',
  Β: 'B',
  Ε: 'E',
  Ζ: 'Z',
  Η: 'H',
  Ι: 'I',
  Κ: 'K',
  Μ: 'M',
  Ν: 'N',
  Ο: 'O',
  Ρ: 'P',
  Τ: 'T',
  Υ: 'Y',
  Χ: 'X',
};

const LOOKALIKE = new RegExp(`[${Object.keys(LATIN_OF).join('')}]`, 'u');

/**
 * The name spelt with Latin letters where it has a lookalike of one, and without the fullwidth
 * forms (ａｎｎ) of an East Asian input method; undefined when that changes nothing.
 */
export function latinSpelling(name: string): string | undefined {
  // NFKC: fullwidth letters and digits become the ASCII ones they are drawn as.
  const folded = name.normalize('NFKC');
  const latin = LOOKALIKE.test(folded) ? Array.from(folded, (c) => LATIN_OF[c] ?? c).join('') : folded;
  return latin === name ? undefined : latin;
}

/**
 * What sets `name` apart from `latin` (its latinSpelling), for a school administrator: 'the
 * Cyrillic letter "а" (U+0430) where "ann.lee" has the Latin letter "a"'.
 */
export function lookalikeDifference(name: string, latin: string): string {
  const chars = Array.from(name);
  const at = chars.findIndex((c) => LATIN_OF[c] !== undefined || c.normalize('NFKC') !== c);
  const c = chars[at] ?? '';
  const code = `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
  const others = chars.filter((x, k) => k !== at && (LATIN_OF[x] !== undefined || x.normalize('NFKC') !== x)).length;
  const more = others === 0 ? '' : ` (and ${others} more such character${others === 1 ? '' : 's'})`;
  const script = LATIN_OF[c] === undefined ? 'full-width' : /\p{Script=Cyrillic}/u.test(c) ? 'Cyrillic' : 'Greek';
  // The user's own character there: usernames match ignoring case, so it may differ in case from
  // the lookalike's Latin letter ("А" in the file, "a" in admin001).
  const theirs = Array.from(latin);
  const plain = theirs.length === chars.length ? (theirs[at] ?? '') : (LATIN_OF[c] ?? c.normalize('NFKC'));
  return `the ${script} character "${c}" (${code})${more} where "${latin}" has "${plain}"`;
}
