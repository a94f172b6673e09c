/**
 * The column rules of users.csv (PRODUCT.md §3) as one zod schema per file, built for the columns
 * the file has. Cells arrive trimmed; each rule turns a cell into its UserRow value or one issue
 * with a message a school administrator understands.
 */
import * as z from 'zod';
import type { AccessType, Role, RowAction, SchoolRef, WarningCode } from '../types.js';
import type { UserColumn } from './headers.js';
import { latinSpelling } from './latin-lookalikes.js';

export interface UserRulesContext {
  columns: ReadonlySet<UserColumn>;
  schools: readonly SchoolRef[];
  /** for the plausible graduation years */
  now: Date;
}

/** Trimmed cells of the known columns present in the file. */
export type UserCells = Partial<Record<UserColumn, string>>;

export interface UserValues {
  username: string;
  password?: string | undefined;
  email?: string | null;
  'first name'?: string | null;
  'last name'?: string | null;
  school?: string | null;
  'graduation year'?: number | null;
  'access type'?: AccessType | null;
  role?: Role | null;
  'sis id'?: string | null;
  status?: UserStatus;
  action?: RowAction;
}

/** What a `status` cell means: only `inactive` keeps a listed user inactive. */
export type UserStatus = 'active' | 'inactive';

export interface RuleIssue {
  column: UserColumn;
  message: string;
}

export type RuleResult = { ok: true; values: UserValues } | { ok: false; issues: RuleIssue[] };

class Fail {
  constructor(readonly message: string) {}
}

/** A cell rule: the value, or a Fail with the message. */
interface Rule<T> {
  /** the rule itself: plain code, also what zod runs */
  check: (v: string) => T | Fail;
  /** the same rule as a zod schema, which turns a Fail into an issue */
  schema: z.ZodType;
}

function rule<T>(check: (v: string) => T | Fail): Rule<T> {
  const schema = z.string().transform((v, ctx) => {
    const r = check(v);
    if (r instanceof Fail) {
      ctx.addIssue({ code: 'custom', message: r.message });
      return z.NEVER;
    }
    return r;
  });
  return { check, schema };
}

/** A lookup table without a prototype: a cell reading `constructor` is not a key. */
function lookup<T>(entries: Record<string, T>): Readonly<Record<string, T>> {
  return Object.assign(Object.create(null) as Record<string, T>, entries);
}

/** Characters as people count them (code points), not UTF-16 units. */
export function length(v: string): number {
  let n = v.length;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) n--;
  }
  return n;
}

/**
 * Characters nobody sees: copied from a web page, a document or an email along with the value, or
 * left by an editor. At the edges of a cell, the ones that are white space (no-break spaces, the
 * byte order mark) are trimmed with the spaces; anywhere else they make a username, an email
 * address or a school not what it looks like, so the messages name them and where they are.
 */
const INVISIBLE_NAMES: Readonly<Record<string, string>> = {
  '\u00a0': 'a no-break space (U+00A0)',
  '\u00ad': 'a soft hyphen (U+00AD)',
  '\u200b': 'a zero-width space (U+200B)',
  '\u200c': 'a zero-width non-joiner (U+200C)',
  '\u200d': 'a zero-width joiner (U+200D)',
  '\u2060': 'a word joiner (U+2060)',
  '\u202f': 'a narrow no-break space (U+202F)',
  '\ufeff': 'a zero-width no-break space (U+FEFF, a byte order mark)',
  // Text direction marks come along with a value copied from a web page, an email or a document
  // (Outlook and Word add them around Hebrew or Arabic text), and take no room either.
  '\u200e': 'a left-to-right mark (U+200E)',
  '\u200f': 'a right-to-left mark (U+200F)',
  '\u061c': 'an Arabic letter mark (U+061C)',
  ...Object.fromEntries(
    [...'\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069'].map((ch) => [
      ch,
      `a text direction control (U+${ch.charCodeAt(0).toString(16).toUpperCase()})`,
    ]),
  ),
};
const INVISIBLE = /[\u00a0\u00ad\u061c\u200b-\u200f\u202a-\u202f\u2060\u2066-\u2069\ufeff]/;
const INVISIBLE_ALL = new RegExp(INVISIBLE.source, 'g');

/**
 * `contains a no-break space (U+00A0) at position 5` for the first invisible character of a value
 * (positions count characters from 1, as people do), or undefined when it has none.
 */
export function invisibleCharacter(v: string): string | undefined {
  const found = INVISIBLE.exec(v);
  if (found === null) return undefined;
  const others = (v.match(INVISIBLE_ALL)?.length ?? 1) - 1;
  const more = others === 0 ? '' : ` (and ${others} more invisible character${others === 1 ? '' : 's'})`;
  return `contains ${INVISIBLE_NAMES[found[0]] ?? 'an invisible character'} at position ${length(v.slice(0, found.index)) + 1}${more}`;
}

/** The invisible characters that take no room (the no-break spaces look like spaces). */
export const ZERO_WIDTH_CHARS = '\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff';
const ZERO_WIDTH = new RegExp(`[${ZERO_WIDTH_CHARS}]`, 'g');

/**
 * The value as the administrator sees it in the cell: without the invisible characters that take
 * no room. A rejected row's username is read so (see users-reader.ts), so that a zero-width space
 * pasted after an existing username still keeps that user from being deactivated.
 */
export function withoutInvisible(v: string): string {
  return INVISIBLE.test(v) ? v.replace(ZERO_WIDTH, '') : v;
}

const RETYPE = 'which cannot be seen: type the value again in your SIS';

/**
 * A leading apostrophe is how Excel is told to keep a value as text when it is typed, and some SIS
 * exports write one before IDs and years for the same reason; in a CSV file it is part of the
 * value, and a spreadsheet shows it. Said where the value without it would have been valid.
 */
const REMOVE_APOSTROPHE = ": remove the apostrophe (') at its start, which some SIS exports and spreadsheets add to keep a value as text";

function hasTextApostrophe(v: string, validWithout: (rest: string) => boolean): boolean {
  return v.length > 1 && v.charCodeAt(0) === 0x27 /* ' */ && validWithout(v.slice(1));
}

const USERNAME_CHARS = /^[\p{L}\p{M}\p{Nd}._@-]+$/u;
/** The pattern z.email() checks with, compiled once rather than run through a zod parse per row. */
const EMAIL_PATTERN: RegExp = z.regexes.email;

/**
 * Usernames are identities: composed (NFC), or a file saved on a Mac (é as e plus a combining
 * accent) would name a second user, and the next night's import deactivate the first.
 */
const username = rule((raw) => {
  if (raw === '') return new Fail('Username is required');
  const v = composed(raw);
  if (length(v) < 4) return new Fail('Username must be at least 4 characters');
  if (length(v) > 254) return new Fail('Username must be at most 254 characters');
  if (!USERNAME_CHARS.test(v)) {
    const changed = excelChangedUsername('this username', v);
    if (changed !== undefined) return new Fail(changed);
    const invisible = invisibleCharacter(v);
    if (invisible === undefined && hasTextApostrophe(v, (rest) => USERNAME_CHARS.test(rest))) {
      return new Fail(`Username may contain only letters, digits and . _ - @${REMOVE_APOSTROPHE}`);
    }
    return new Fail(
      invisible === undefined
        ? 'Username may contain only letters, digits and . _ - @'
        : `Username ${invisible}, ${RETYPE}. A username may contain only letters, digits and . _ - @`,
    );
  }
  const lookalike = NON_ASCII.test(v) ? lookalikeLetters(v) : undefined;
  return lookalike === undefined ? v : new Fail(`Username ${lookalike}`);
});

/**
 * A username as the administrator reads it: fullwidth letters as the ordinary ones, and the
 * Cyrillic and Greek letters that look Latin as those Latin letters (only where lookalikeLetters
 * refuses it). A rejected row's username is read so (see users-reader.ts): `jsmіth`, with a
 * Cyrillic і, keeps jsmith from being deactivated, as the file seems to list them.
 */
export function asSeen(v: string): string {
  if (!NON_ASCII.test(v) || lookalikeLetters(v) === undefined) return v;
  return latinSpelling(v) ?? v;
}

const NON_ASCII = /[^\x00-\x7f]/;
const FULLWIDTH = /[\uff01-\uff5e]/;
const LATIN = /\p{Script=Latin}/u;
const CYRILLIC_OR_GREEK = /[\p{Script=Cyrillic}\p{Script=Greek}]/u;

/** `"а" (U+0430) at position 4`: a character as the messages show it. */
function located(v: string, found: RegExpExecArray): string {
  const code = (found[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
  return `"${found[0]}" (U+${code}) at position ${length(v.slice(0, found.index)) + 1}`;
}

/**
 * Letters that look like others and are not: a username typed with an East Asian keyboard's
 * fullwidth letters (ｊｓｍｉｔｈ), or a Latin name with a Cyrillic or Greek letter in it (an а or
 * о typed on another keyboard layout, or pasted). The user could never type it, and the file's
 * "jsmith" would be another user. Judged per part between . _ - @, so that a Cyrillic name
 * with a Latin mail domain (иван@school.org) is fine.
 */
function lookalikeLetters(v: string): string | undefined {
  const full = FULLWIDTH.exec(v);
  if (full !== null) {
    return (
      `contains fullwidth characters, as an East Asian keyboard types them (the first, ${located(v, full)}): ` +
      'type the username again in your SIS with ordinary (half-width) letters and digits'
    );
  }
  let at = 0;
  for (const part of v.split(/[._@-]/)) {
    const other = LATIN.test(part) ? CYRILLIC_OR_GREEK.exec(part) : null;
    if (other !== null) {
      const script = /\p{Script=Greek}/u.test(other[0]) ? 'Greek' : 'Cyrillic';
      other.index += at;
      return (
        `mixes Latin and ${script} letters (the first ${script} one, ${located(v, other)}), which look alike: one was ` +
        'probably typed on another keyboard layout or pasted. Type the username again in your SIS with the letters of one alphabet'
      );
    }
    at += part.length + 1;
  }
  return undefined;
}

/**
 * What Excel writes in a cell instead of the value it held: an error code (a value it took for a
 * formula, `=abc` or `-x1`, becomes #NAME?), # signs (a date or number too wide for its column),
 * or a long number in scientific notation with its last digits gone (a numeric ID or password).
 * Worded without the value: a password is never shown.
 */
export function excelDamage(v: string): string | undefined {
  const first = v.charCodeAt(0);
  if (first === 0x23 /* # */) {
    if (/^#{3,}$/.test(v)) return 'only # signs, which Excel writes when a column is too narrow for its values';
    if (EXCEL_ERRORS.test(v)) return 'an Excel error code, which Excel writes when it takes a value for a formula that fails';
    return undefined;
  }
  if (first >= 0x30 && first <= 0x39 && SCIENTIFIC.test(v)) {
    return 'a number in scientific notation, which is how Excel shortens a long number, losing its last digits';
  }
  return undefined;
}

const EXCEL_ERRORS = /^#(?:NAME\?|VALUE!|REF!|DIV\/0!|N\/A|NUM!|NULL!|SPILL!|CALC!|FIELD!|BLOCKED!|CONNECT!|BUSY!|UNKNOWN!|GETTING_DATA)$/;
/** As Excel writes a number too long for its General format: 1.23457E+17, 1E+15. */
const SCIENTIFIC = /^\d(?:\.\d+)?E\+\d{1,3}$/;

/**
 * How to keep Excel from changing values (a long ID, a leading zero, a password it takes for a
 * formula), in one wording: a row's message says it of "the column", the report's advice of
 * "those columns"; after a colon, or as a sentence of its own.
 */
export function avoidExcel(columns: 'the column' | 'those columns', startsSentence = false): string {
  return (
    `${startsSentence ? 'Format' : 'format'} ${columns} as Text in Excel before typing or pasting the values, ` +
    'or export the file from your SIS directly, without opening and saving it in Excel'
  );
}

const AVOID_EXCEL = avoidExcel('the column', true);

/**
 * The message of a username cell Excel changed (`whose`: "this username", "this owner's username"),
 * or undefined. Numeric student IDs used as usernames are common, and Excel writes a 12-digit one
 * as 1.23457E+11: said only as not "letters, digits and . _ - @", the administrator looks for a
 * typing mistake in a value nobody typed.
 */
export function excelChangedUsername(whose: string, v: string): string | undefined {
  const damage = excelDamage(v);
  if (damage === undefined) return undefined;
  return `Excel changed ${whose}: the cell holds ${damage}, not the username. ${AVOID_EXCEL}`;
}

/** A cell's warning: what it is about, and its message. */
export interface CellWarning {
  code: WarningCode;
  message: string;
}

/** The warning of a password Excel changed, or holding an invisible character (not used: see `password`). */
export function passwordDamageWarning(v: string): CellWarning | undefined {
  const damage = excelDamage(v);
  if (damage === undefined) {
    // Named, not placed: where it is would tell something of the password.
    const invisible = INVISIBLE.exec(v)?.[0];
    if (invisible === undefined) return undefined;
    return {
      code: 'INVISIBLE_PASSWORD',
      message:
        `The password contains ${INVISIBLE_NAMES[invisible] ?? 'an invisible character'}, which cannot be seen, and which users do not ` +
        'type when they sign in. It was not used: the user keeps their current password, and a new user has none yet. Type the ' +
        'password again in your SIS',
    };
  }
  return {
    code: 'EXCEL_CHANGED_PASSWORD',
    message:
      `Excel changed this password: the cell holds ${damage}, not a password. It was not used: the user keeps their current ` +
      `password, and a new user has none yet. ${AVOID_EXCEL}`,
  };
}

/**
 * A question mark beside a letter: the export lost a letter it could not write. An export saved as
 * ASCII (PowerShell 5.1's Export-Csv, unless given -Encoding UTF8; some SIS report writers) writes
 * each accented letter as "?": José as Jos?, Muñoz as Mu?oz. No real name has one there.
 */
const LOST_LETTER = /\p{L}\?|\?\p{L}/u;

export const LETTERS_LOST_ADVICE = 'Export the file as UTF-8 (in PowerShell 5.1: Export-Csv -Encoding UTF8) and upload it again';

/** The warning of a name whose accented letters the export lost, or undefined. */
export function lostLettersWarning(v: string): CellWarning | undefined {
  if (!v.includes('?') || !LOST_LETTER.test(v)) return undefined;
  return {
    code: 'LETTERS_LOST',
    message:
      'The name has a question mark where a letter should be: the file was saved in an encoding without accented letters (ASCII), ' +
      'which writes each one as "?". A user whose name rosterd has with the letters keeps it; a new user gets the name as written. ' +
      LETTERS_LOST_ADVICE,
  };
}

/**
 * The warning of an SIS ID Excel changed (not used: the user keeps the one it has) or that holds an
 * invisible character (stored as written: it may be the SIS's own).
 */
export function sisIdWarning(v: string): CellWarning | undefined {
  const damage = excelDamage(v);
  if (damage !== undefined) {
    return {
      code: 'EXCEL_CHANGED_SIS_ID',
      message:
        `Excel changed this SIS ID: the cell holds ${damage}, not the ID. It was not used: the user keeps their current ` +
        `SIS ID, and a new user has none yet. ${AVOID_EXCEL}`,
    };
  }
  const invisible = invisibleCharacter(v);
  if (invisible === undefined) return undefined;
  return {
    code: 'INVISIBLE_SIS_ID',
    message: `The SIS ID ${invisible}, which cannot be seen; it was stored as written. Type the ID again in your SIS`,
  };
}

/**
 * Blank keeps the current password: undefined, never null. So does a password Excel changed
 * (#NAME?, or 1.23457E+17 in every row of a column of numeric passwords): setting it would lock
 * the user out, or give many users the same password. And so does one holding an invisible
 * character (a zero-width space pasted with it, a no-break space that Option+Space types on a
 * Mac): the user types what they see, never it, and could not sign in. The reader warns of both.
 */
const password = rule((v) => {
  if (v === '') return undefined;
  if (excelDamage(v) !== undefined) return undefined;
  if (length(v) < 6) return new Fail('Password must be at least 6 characters');
  if (INVISIBLE.test(v)) return undefined;
  return v;
});

const email = rule((v) => {
  if (v === '') return null;
  if (length(v) > 254) return new Fail('Email address must be at most 254 characters');
  if (!EMAIL_PATTERN.test(v)) return new Fail(`Email address is not valid: ${emailProblem(v)}`);
  return v;
});

/**
 * What is wrong with an address the email pattern refused, as the administrator would put it. The
 * rule stays the pattern's; this only explains it, most likely cause first.
 */
function emailProblem(v: string): string {
  const invisible = invisibleCharacter(v);
  if (invisible !== undefined) return `it ${invisible}, which cannot be seen: type the address again in your SIS`;
  const position = (i: number): string => `position ${length(v.slice(0, i)) + 1}`;
  const at = v.indexOf('@');
  if (at !== -1 && v.indexOf('@', at + 1) !== -1) {
    return /[,;]/.test(v) ? 'it holds more than one address: give only one' : 'it has more than one @';
  }
  const space = /\s/.exec(v);
  if (space !== null) return `it has a space in it, at ${position(space.index)}`;
  if (at === -1) return 'it has no @';
  const local = v.slice(0, at);
  const domain = v.slice(at + 1);
  if (local === '') return 'it has nothing before the @';
  if (domain === '') return 'it has no domain after the @';
  const bad = /[^A-Za-z0-9_'+.@-]/u.exec(v);
  if (bad !== null) return `it has a character that is not allowed in an email address: '${bad[0]}' at ${position(bad.index)}`;
  if (local.startsWith('.')) return 'the part before the @ starts with a dot';
  if (local.endsWith('.')) return 'the part before the @ ends with a dot';
  if (local.includes('..')) return 'the part before the @ has two dots in a row';
  if (local.endsWith("'")) return 'the part before the @ ends with an apostrophe';
  if (domain.startsWith('.')) return 'the domain after the @ starts with a dot';
  if (domain.endsWith('.')) return 'the domain after the @ ends with a dot';
  if (domain.includes('..')) return 'the domain after the @ has two dots in a row';
  if (!domain.includes('.')) return 'the domain after the @ has no dot (such as example.org)';
  const badDomain = /[^A-Za-z0-9.-]/.exec(domain);
  if (badDomain !== null) return `the domain after the @ cannot have '${badDomain[0]}' (at ${position(at + 1 + badDomain.index)})`;
  if (domain.split('.').some((label) => label.startsWith('-'))) return 'a part of the domain after the @ starts with a hyphen';
  if (!/\.[A-Za-z]{2,}$/.test(domain)) return 'the domain after the @ must end in a dot and at least two letters, such as .org';
  return 'check it for typing mistakes';
}

const ASCII_ONLY = /^[\x00-\x7f]*$/;

/** The NFC form; most values are ASCII, which is its own. */
export function composed(v: string): string {
  return ASCII_ONLY.test(v) ? v : v.normalize('NFC');
}

/**
 * Names are stored composed (NFC): a file from macOS may spell é as e plus a combining accent,
 * which would count as two characters toward the limit and compare unequal to the same name
 * typed elsewhere.
 */
function name(label: string) {
  return rule((v) => {
    if (v === '') return null;
    const stored = composed(v);
    if (length(stored) > 64) return new Fail(`${label} must be at most 64 characters`);
    return stored;
  });
}

// Without spaces, _ and -, as header names are matched: an SIS that writes its enum's name
// (SchoolAdministrator, SCHOOL_ADMINISTRATOR) means the same access type.
const ACCESS_TYPES: Readonly<Record<string, AccessType>> = lookup({
  administrator: 'administrator',
  schooladministrator: 'school_administrator',
  manager: 'manager',
});
const accessType = rule((v) => {
  if (v === '') return null;
  return (
    ACCESS_TYPES[v.toLowerCase().replace(/[\s_-]+/g, '')] ??
    new Fail('Access type must be blank, Administrator, School Administrator or Manager')
  );
});

const ROLES: Readonly<Record<string, Role>> = lookup({
  student: 'student',
  teacher: 'teacher',
  staff: 'staff',
  parent: 'parent',
  other: 'other',
});
const role = rule((v) => {
  if (v === '') return null;
  // Exact first: a cell already written in lower case needs no lower-cased copy.
  return ROLES[v] ?? ROLES[v.toLowerCase()] ?? new Fail('Role must be student, teacher, staff, parent or other');
});

const sisId = rule((v) => {
  if (v === '') return null;
  if (length(v) > 255) return new Fail('SIS ID must be at most 255 characters');
  return v;
});

/**
 * `status`, as `rosterd export users` writes it (PRODUCT.md §7): `inactive` lists a user who is
 * inactive after the import, so that an export imported unchanged changes nothing. Blank and
 * `active` are a listed user's usual state. Any other value (an SIS's Enrolled, Withdrawn) is read
 * as blank and told once for the file (status-values.ts), never as a row error: files with such a
 * column imported before rosterd read it, and must go on importing.
 */
const STATUSES: Readonly<Record<string, UserStatus>> = lookup({ active: 'active', inactive: 'inactive' });
const status = rule((v): UserStatus => STATUSES[v.toLowerCase()] ?? 'active');

/** Whether a trimmed `status` cell is one rosterd reads: blank, active or inactive (any case). */
export function isReadStatus(v: string): boolean {
  return v === '' || STATUSES[v.toLowerCase()] !== undefined;
}

const ACTIONS: Readonly<Record<string, RowAction>> = lookup({ add: 'add', update: 'update', delete: 'delete' });
const action = rule((v) => {
  if (v === '') return new Fail('Action is required in a file with an action column: add, update or delete');
  return ACTIONS[v.toLowerCase()] ?? new Fail('Action must be add, update or delete');
});

/** A date as spreadsheets write one: 7/19/1905 (a year typed in a column formatted as a date), 2027-06-01, 01.06.2027. */
const AS_DATE = /^(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{2}|\d{4})|\d{4}-\d{1,2}-\d{1,2})$/;

function graduationYear(now: Date) {
  const min = 1900;
  const max = now.getUTCFullYear() + 20;
  return rule((v) => {
    if (v === '') return null;
    if (!/^\d{4}$/.test(v)) {
      const why = /^\d{4}\.0+$/.test(v)
        ? ', without decimals (a spreadsheet number format adds them)'
        : AS_DATE.test(v)
          ? ', not a date (a spreadsheet shows a year as a date when its column is formatted as a date: format it as a number or as text)'
          : hasTextApostrophe(v, (rest) => /^\d{4}$/.test(rest))
            ? REMOVE_APOSTROPHE
            : '';
      return new Fail(`Graduation year must be a four-digit year, such as 2031${why}`);
    }
    const year = Number(v);
    if (year < min || year > max) return new Fail(`Graduation year must be between ${min} and ${max}`);
    return year;
  });
}

/** A school value that names different schools by different IDs. */
export interface AmbiguousSchool {
  ambiguous: string;
}

/**
 * Finds a school by NCES ID, state ID or exact name, case-insensitively, trimmed. A value that is
 * one school's ID and another's name (a school named "100200" and another with state ID 100200)
 * is ambiguous: picking one by a rule of precedence would put users in a school silently.
 */
export function schoolFinder(schools: readonly SchoolRef[]): (value: string) => string | AmbiguousSchool | undefined {
  // composed, as the names the operator typed may be, or the file's (a Mac's é is e + an accent)
  const key = (s: string): string => composed(s.trim()).toLowerCase();
  const byNces = new Map<string, SchoolRef>();
  const byState = new Map<string, SchoolRef>();
  const byName = new Map<string, SchoolRef>();
  for (const s of schools) {
    if (s.ncesId !== null && s.ncesId.trim() !== '') byNces.set(key(s.ncesId), s);
    if (s.stateId !== null && s.stateId.trim() !== '') byState.set(key(s.stateId), s);
    byName.set(key(s.name), s);
  }
  // A roster names the same few schools a million times: remember the answers (a bounded number
  // of them, so that a file of garbage cannot grow the memo without end).
  const memo = new Map<string, string | AmbiguousSchool | undefined>();
  return (value) => {
    if (memo.has(value)) return memo.get(value);
    const k = key(value);
    const found = [
      ['NCES ID', byNces.get(k)],
      ['state ID', byState.get(k)],
      ['name', byName.get(k)],
    ].filter((f): f is [string, SchoolRef] => f[1] !== undefined);
    const first = found[0]?.[1];
    const answer =
      first === undefined
        ? undefined
        : found.every(([, s]) => s.id === first.id)
          ? first.id
          : { ambiguous: found.map(([by, s]) => `the ${by} of "${s.name}"`).join(' and ') };
    if (memo.size < 10_000) memo.set(value, answer);
    return answer;
  };
}

function school(schools: readonly SchoolRef[]) {
  const find = schoolFinder(schools);
  return rule((v) => {
    if (v === '') return null;
    const found = find(v);
    if (found === undefined) {
      const invisible = invisibleCharacter(v);
      const why =
        invisible !== undefined
          ? `: it ${invisible}, ${RETYPE}`
          : hasTextApostrophe(v, (rest) => typeof find(rest) === 'string')
            ? REMOVE_APOSTROPHE
            : spreadsheetHint(v, find);
      return new Fail(`School '${v}' does not match any school of this district (by NCES ID, state ID or name)${why}`);
    }
    if (typeof found !== 'string') {
      return new Fail(`School '${v}' matches two schools: it is ${found.ambiguous}. Use an ID that names only one of them`);
    }
    return found;
  });
}

/**
 * Why an ID may not match: Excel reads an NCES ID (12 digits, California's start with 06) as a
 * number, dropping its leading zero, or showing it in scientific notation, which also loses digits.
 */
function spreadsheetHint(v: string, find: (value: string) => unknown): string {
  const fix = avoidExcel('the column');
  if (/^\d(?:\.\d+)?e\+?\d+$/i.test(v)) return `. It looks like a number a spreadsheet wrote in scientific notation: ${fix}`;
  if (/^\d+$/.test(v) && typeof find(`0${v}`) === 'string') {
    return `. It looks like the ID 0${v} without its leading zero, which a spreadsheet drops: ${fix}`;
  }
  return '';
}

/** The rules of one file: the zod schema for reporting, and the same rules as plain checks. */
export interface UserRules {
  /** zod: the values, or every issue of the row with its message */
  validate(cells: UserCells): RuleResult;
  /** the plain check of each column (the zod schema runs the very same function) */
  checks: Readonly<Record<UserColumn, (v: string) => unknown>>;
}

/** A check's verdict that the cell breaks its rule (its message is zod's to report). */
export function failed(result: unknown): boolean {
  return result instanceof Fail;
}

/** The row validator of one file. Rows whose action is `delete` are checked for username and action only. */
export function userRules(ctx: UserRulesContext): UserRules {
  const all = {
    username,
    password,
    email,
    'first name': name('First name'),
    'last name': name('Last name'),
    school: school(ctx.schools),
    'graduation year': graduationYear(ctx.now),
    'access type': accessType,
    role,
    'sis id': sisId,
    status,
    action,
  } satisfies Record<UserColumn, Rule<unknown>>;
  const schemas = (entries: [string, Rule<unknown>][]) => Object.fromEntries(entries.map(([c, r]) => [c, r.schema]));
  const full = z.object(schemas(Object.entries(all).filter(([c]) => ctx.columns.has(c as UserColumn))));
  // Deactivating a user needs only who it is: a stale school or grade must not block a delete.
  const deleting = z.object(
    schemas([['username', username], ...(ctx.columns.has('action') ? [['action', action] as [string, Rule<unknown>]] : [])]),
  );
  const checks = Object.fromEntries(Object.entries(all).map(([c, r]) => [c, r.check])) as Record<UserColumn, (v: string) => unknown>;

  return {
    checks,
    validate: (cells) => {
      const schema = cells.action?.toLowerCase() === 'delete' ? deleting : full;
      const result = schema.safeParse(cells);
      if (result.success) return { ok: true, values: result.data as unknown as UserValues };
      return {
        ok: false,
        issues: result.error.issues.map((i) => ({ column: String(i.path[0]) as UserColumn, message: i.message })),
      };
    },
  };
}
