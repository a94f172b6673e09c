/**
 * Header matching (PRODUCT.md §3): case-insensitive, ignoring spaces, `_` and `-`, with aliases.
 * Columns are reported under their canonical names (the names PRODUCT.md uses).
 */
import type { CodedWarning } from '../types.js';
import { FileRejectedError } from '../types.js';
import { editDistance } from '../../edit-distance.js';
import { checkSeparator } from './csv-guard.js';
import { ZERO_WIDTH_CHARS } from './users-rules.js';

/** What header names ignore: spaces, `_`, `-` and the invisible characters that take no room (see normalizeHeaderName). */
const IGNORED_IN_NAMES = new RegExp(`[\\s_${ZERO_WIDTH_CHARS}-]+`, 'g');

export const USER_COLUMNS = [
  'username',
  'password',
  'email',
  'first name',
  'last name',
  'school',
  'graduation year',
  'access type',
  'role',
  'sis id',
  'status',
  'action',
] as const;
export type UserColumn = (typeof USER_COLUMNS)[number];

export const GROUP_COLUMNS = ['username', 'owner', 'group'] as const;
export type GroupColumn = (typeof GROUP_COLUMNS)[number];

export interface ColumnSpec<C extends string> {
  /** what the file is, for messages: `users.csv` */
  file: string;
  columns: readonly C[];
  /** extra spellings, as written in PRODUCT.md */
  aliases: Readonly<Record<string, C>>;
  required: readonly C[];
  example: string;
  /**
   * Columns a file may well have that are not read, by normalized name: what the warning says
   * after "Column 'NAME' ", instead of "is not a known column".
   */
  unread?: Readonly<Record<string, string>>;
  /**
   * What SIS exports and spreadsheets call a column instead, by normalized name. Not accepted as
   * aliases (a "Student ID" may be the SIS's ID or a badge number: the district decides), but named
   * in the warning, so the administrator knows which column to rename.
   */
  synonyms: Readonly<Record<string, C>>;
  /**
   * The other file: a header whose only known columns are the ones both files share (username),
   * next to a column of the other's own, is the other file under this name.
   */
  readonly otherFile?: { spec: ColumnSpec<string>; shared: readonly C[] };
}

function unknownColumnWarning<C extends string>(
  name: string,
  i: number,
  spec: ColumnSpec<C>,
  meant: C | undefined,
  line: number,
): CodedWarning {
  if (name === '') {
    return {
      line,
      column: name,
      code: 'UNNAMED_COLUMNS',
      message: `Column ${i + 1} has no name in the header row; its values were ignored`,
    };
  }
  const unread = spec.unread?.[normalizeHeaderName(name)];
  if (unread !== undefined) return { line, column: name, code: 'UNREAD_COLUMN', message: `Column '${name}' ${unread}` };
  const hint = meant === undefined ? '' : `. If it holds the ${meant}, rename it '${meant}'`;
  return {
    line,
    column: name,
    code: 'UNKNOWN_COLUMN',
    message: `Column '${name}' is not a known column; its values were ignored${hint}`,
  };
}

/**
 * The column an unknown header name was probably meant to be: a synonym, or a misspelling (one
 * letter wrong, missing, extra or swapped; two in a long name) of a column or alias.
 */
function meantColumn<C extends string>(name: string, spec: ColumnSpec<C>): C | undefined {
  const normal = normalizeHeaderName(name);
  const synonym = spec.synonyms[normal];
  if (synonym !== undefined) return synonym;
  const names: Array<[string, C]> = [
    ...spec.columns.map((c): [string, C] => [normalizeHeaderName(c), c]),
    ...Object.entries(spec.aliases).map(([alias, c]): [string, C] => [normalizeHeaderName(alias), c]),
  ];
  let best: { column: C; distance: number } | undefined;
  for (const [known, column] of names) {
    const allowed = known.length >= 8 ? 2 : known.length >= 4 ? 1 : 0;
    const distance = editDistance(normal, known, allowed);
    if (distance <= allowed && (best === undefined || distance < best.distance)) best = { column, distance };
  }
  return best?.column;
}

const NOT_A_STATUS =
  "is not read: rosterd reads whether a user is active only from a column named 'status' (active or inactive; blank is " +
  "active). To deactivate users, give them status inactive in a 'status' column, or leave their rows out of the file " +
  '(in a file with an action column, send them with action delete).';
const NOT_A_GRADE =
  "is not read: rosterd reads the graduation year (the year a student finishes grade 12), not the grade. Add a 'graduation year' " +
  'column: the year the current school year ends, plus 12, minus the grade (for a 9th grader, that year plus 3).';

export const USERS_SPEC: ColumnSpec<UserColumn> = {
  file: 'users.csv',
  columns: USER_COLUMNS,
  aliases: { 'email address': 'email', 'mis id': 'sis id' },
  required: ['username'],
  // A getter: GROUPS_SPEC is declared below.
  get otherFile() {
    return { spec: GROUPS_SPEC, shared: ['username'] as const };
  },
  example: 'username,password,email,first name,last name',
  unread: {
    // What SIS exports call a user's status besides `status`, which is read (users-rules.ts).
    // Keys normalized: no spaces, _ or -. Not aliases of it: they hold Y/N or Enrolled/Withdrawn,
    // never active/inactive, so read as `status` they would change nothing either; this says which is read.
    active: NOT_A_STATUS,
    enrollmentstatus: NOT_A_STATUS,
    // Most SIS exports give the grade; users.csv has the graduation year, which stays right as
    // years pass. Without this, "Grade" is only "not a known column" and nobody learns why.
    grade: NOT_A_GRADE,
    gradelevel: NOT_A_GRADE,
    currentgrade: NOT_A_GRADE,
  },
  synonyms: synonyms<UserColumn>({
    username: [
      'login',
      'login id',
      'login name',
      'logon',
      'logon name',
      'user id',
      'user',
      'user account',
      'account',
      'account name',
      'samaccountname',
      'user principal name',
      'upn',
      'network id',
    ],
    password: ['pass', 'pwd', 'passwd', 'pw', 'passcode', 'initial password', 'temp password', 'temporary password'],
    email: ['mail', 'email addr', 'mail address', 'e-mail address', 'email id', 'emails'],
    'first name': ['given name', 'forename', 'first', 'fname', 'first nm'],
    'last name': ['surname', 'family name', 'last', 'lname', 'last nm'],
    school: [
      'school name',
      'building',
      'building name',
      'campus',
      'campus name',
      'site',
      'school code',
      'school id',
      'nces id',
      'nces school id',
      'state school id',
      'school number',
    ],
    'graduation year': [
      'grad year',
      'gradyr',
      'graduation yr',
      'year of graduation',
      'class of',
      'cohort',
      'cohort year',
      'expected graduation year',
      'graduation date',
      'yog',
    ],
    'access type': ['access', 'access level', 'admin type', 'permission', 'permissions'],
    role: ['user type', 'type', 'person type', 'role type', 'account type', 'user role'],
    'sis id': [
      'student id',
      'student number',
      'student no',
      'staff id',
      'staff number',
      'employee id',
      'local id',
      'person id',
      'sourcedid',
      'sourced id',
      'external id',
      'sis user id',
      'id',
    ],
    status: ['user status', 'account status'],
    action: ['operation', 'change', 'change type', 'op'],
  }),
};

export const GROUPS_SPEC: ColumnSpec<GroupColumn> = {
  file: 'groups.csv',
  columns: GROUP_COLUMNS,
  aliases: { 'owner name': 'owner', 'group name': 'group' },
  required: ['username'],
  example: 'username,owner,group',
  synonyms: synonyms<GroupColumn>({
    username: ['member', 'member username', 'login', 'user id', 'user', 'student', 'student username'],
    owner: ['owner username', 'teacher', 'teacher username', 'leader', 'manager'],
    group: ['class', 'class name', 'section', 'section name', 'team', 'course'],
  }),
};

/** Synonym lists by column, as a lookup by normalized name. */
function synonyms<C extends string>(byColumn: Record<C, readonly string[]>): Record<string, C> {
  const out: Record<string, C> = {};
  for (const [column, names] of Object.entries(byColumn) as Array<[C, readonly string[]]>) {
    for (const name of names) out[normalizeHeaderName(name)] = column;
  }
  return out;
}

/**
 * `Email address`, `emailAddress` and `email_address` all become `emailaddress`. Invisible
 * characters that take no room (a zero-width space pasted with a name, a byte order mark of a
 * joined file) are ignored like spaces: `user\u200bname` looks like `username` and means it, and
 * refused, its message would ask to rename 'username' to 'username'.
 */
export function normalizeHeaderName(name: string): string {
  return name.toLowerCase().replace(IGNORED_IN_NAMES, '');
}

export interface HeaderMatch<C extends string> {
  /** position of each known column present in the file */
  index: Map<C, number>;
  /** number of fields in the header row */
  width: number;
  /**
   * number of fields up to the last one with a name: the columns a row needs values for. Less than
   * `width` when the header ends in columns without a name, as a spreadsheet pads it with commas.
   */
  namedWidth: number;
  /** the header row's fields as written */
  names: readonly string[];
  /** one warning per unknown column (one for all those without a name) */
  warnings: CodedWarning[];
  /** the header's line in the file: 1, unless blank lines come first */
  line: number;
  /** unknown columns that are probably a column the file lacks (a synonym or a misspelling), in header order */
  renames: ReadonlyArray<{ name: string; column: C }>;
}

function lookupTable<C extends string>(spec: ColumnSpec<C>): Map<string, C> {
  const table = new Map<string, C>();
  for (const c of spec.columns) table.set(normalizeHeaderName(c), c);
  for (const [alias, c] of Object.entries(spec.aliases)) table.set(normalizeHeaderName(alias), c as C);
  return table;
}

/**
 * One warning per unknown column, but one for all the columns without a name: Excel writes a
 * comma for every column it considers used, thousands of them after a stray format or a deleted
 * column, and the report should not list each.
 */
function unknownColumnWarnings<C extends string>(
  unknown: ReadonlyArray<{ name: string; i: number }>,
  spec: ColumnSpec<C>,
  meant: ReadonlyArray<C | undefined>,
  line: number,
): CodedWarning[] {
  const unnamed = unknown.filter(({ name }) => name === '');
  const warnings: CodedWarning[] = [];
  unknown.forEach(({ name, i }, k) => {
    if (name !== '' || unnamed.length === 1) {
      warnings.push(unknownColumnWarning(name, i, spec, meant[k], line));
    } else if (i === unnamed[0]?.i) {
      const n = unnamed.length;
      warnings.push({
        line,
        column: '',
        code: 'UNNAMED_COLUMNS',
        message: `${n.toLocaleString('en-US')} columns have no name in the header row (the first is column ${(i + 1).toLocaleString('en-US')}); their values were ignored`,
      });
    }
  });
  return warnings;
}

/**
 * Matches the header row, on `line` of the file (after blank lines, not 1); throws
 * FileRejectedError when the file cannot be imported at all.
 */
export function matchHeader<C extends string>(fields: readonly string[], spec: ColumnSpec<C>, line = 1): HeaderMatch<C> {
  const table = lookupTable(spec);
  const known = (name: string): C | undefined => table.get(normalizeHeaderName(name));
  checkSeparator(fields, (name) => known(name) !== undefined);

  const index = new Map<C, number>();
  const unknown: Array<{ name: string; i: number }> = [];
  fields.forEach((raw, i) => {
    const name = raw.replace(/^\uFEFF/, '').trim();
    const column = known(name);
    if (column === undefined) {
      unknown.push({ name, i });
      return;
    }
    const earlier = index.get(column);
    if (earlier !== undefined) {
      throw new FileRejectedError(
        `The header row has the ${column} column twice (columns ${earlier + 1} and ${i + 1}: ` +
          `'${(fields[earlier] ?? '').trim()}' and '${name}'). Remove one of them and upload the file again.`,
        line,
      );
    }
    index.set(column, i);
  });
  // A column the file has already is not what another one was meant to be.
  const meant = unknown.map(({ name }) => {
    const column = name === '' ? undefined : meantColumn(name, spec);
    return column === undefined || index.has(column) ? undefined : column;
  });
  const warnings = unknownColumnWarnings(unknown, spec, meant, line);
  const renames = unknown.flatMap(({ name }, k) => {
    const column = meant[k];
    return column === undefined ? [] : [{ name, column }];
  });

  // A first line naming no column is a row of data, unless most of its names are columns under
  // other names ("Login,Given Name,Surname"): then it is a header the message can quote.
  const meantCount = meant.filter((c) => c !== undefined).length;
  if (index.size === 0 && (meantCount < 2 || meantCount * 2 < fields.length)) {
    // Its values are not quoted: a first line without a header is a row of data, and may hold a password.
    throw new FileRejectedError(
      `The file has no header row: its first line names none of the ${spec.file} columns (it looks like a row of data). ` +
        `The first line must name the columns, for example: ${spec.example}`,
      line,
    );
  }
  for (const column of spec.required) {
    if (!index.has(column)) {
      const candidate = renames.find((r) => r.column === column);
      throw new FileRejectedError(
        `The header row has no ${column} column, which ${spec.file} requires. ` +
          (candidate
            ? `If column '${candidate.name}' holds the ${column}s, rename it '${column}' and upload the file again.`
            : `Add it (for example: ${spec.example}) and upload the file again.`),
        line,
      );
    }
  }
  const other = spec.otherFile;
  if (other !== undefined && [...index.keys()].every((c) => other.shared.includes(c))) {
    const theirs = lookupTable(other.spec);
    const shared: readonly string[] = other.shared;
    const own = unknown.filter(({ name }) => {
      const column = theirs.get(normalizeHeaderName(name));
      return column !== undefined && !shared.includes(column);
    });
    if (own.length > 0) {
      const file = other.spec.file;
      throw new FileRejectedError(
        `This is not a ${spec.file}: its header names ${[...index.keys(), ...own.map((o) => o.name)].map((n) => `'${n}'`).join(', ')}, ` +
          `the columns of ${file}, and no other ${spec.file} column. Upload it as ${file}; nothing was changed. ` +
          `(Read as ${spec.file}, it would have been the whole roster, and deactivated every user it does not list.)`,
        line,
      );
    }
  }
  let namedWidth = fields.length;
  while (namedWidth > 0 && (fields[namedWidth - 1] ?? '').replace(/^\uFEFF/, '').trim() === '') namedWidth--;
  return { index, width: fields.length, namedWidth, names: [...fields], warnings, line, renames };
}
