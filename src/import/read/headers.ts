/**
 * Header matching (PRODUCT.md §3): case-insensitive, ignoring spaces, `_` and `-`, with aliases.
 * Columns are reported under their canonical names (the names PRODUCT.md uses).
 */
import type { ImportIssue } from '../types.js';
import { FileRejectedError } from '../types.js';
import { checkSeparator } from './csv-guard.js';

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
}

function unknownColumnMessage(name: string, i: number, spec: ColumnSpec<string>): string {
  if (name === '') return `Column ${i + 1} has no name in the header row; its values were ignored`;
  const unread = spec.unread?.[normalizeHeaderName(name)];
  return `Column '${name}' ${unread ?? 'is not a known column; its values were ignored'}`;
}

export const USERS_SPEC: ColumnSpec<UserColumn> = {
  file: 'users.csv',
  columns: USER_COLUMNS,
  aliases: { 'email address': 'email', 'mis id': 'sis id' },
  required: ['username'],
  example: 'username,password,email,first name,last name',
  unread: {
    // The column `rosterd export users` adds (PRODUCT.md §7), and many SIS exports have one
    // (Enrolled/Withdrawn); users.csv has none (§3), so a withdrawn student listed is active.
    status:
      'is not read on import (rosterd export users writes one; users.csv has none): every user this file lists is active ' +
      'after the import. To keep a user inactive, leave their row out.',
  },
};

export const GROUPS_SPEC: ColumnSpec<GroupColumn> = {
  file: 'groups.csv',
  columns: GROUP_COLUMNS,
  aliases: { 'owner name': 'owner', 'group name': 'group' },
  required: ['username'],
  example: 'username,owner,group',
};

/** `Email address`, `emailAddress` and `email_address` all become `emailaddress`. */
export function normalizeHeaderName(name: string): string {
  return name
    .replace(/^\uFEFF/, '')
    .toLowerCase()
    .replace(/[\s_-]+/g, '');
}

export interface HeaderMatch<C extends string> {
  /** position of each known column present in the file */
  index: Map<C, number>;
  /** number of fields in the header row */
  width: number;
  /** one warning per unknown column */
  warnings: ImportIssue[];
}

function lookupTable<C extends string>(spec: ColumnSpec<C>): Map<string, C> {
  const table = new Map<string, C>();
  for (const c of spec.columns) table.set(normalizeHeaderName(c), c);
  for (const [alias, c] of Object.entries(spec.aliases)) table.set(normalizeHeaderName(alias), c as C);
  return table;
}

/** Matches the header row; throws FileRejectedError when the file cannot be imported at all. */
export function matchHeader<C extends string>(fields: readonly string[], spec: ColumnSpec<C>): HeaderMatch<C> {
  const table = lookupTable(spec);
  const known = (name: string): C | undefined => table.get(normalizeHeaderName(name));
  checkSeparator(fields, (name) => known(name) !== undefined);

  const index = new Map<C, number>();
  const warnings: ImportIssue[] = [];
  fields.forEach((raw, i) => {
    const name = raw.replace(/^\uFEFF/, '').trim();
    const column = known(name);
    if (column === undefined) {
      warnings.push({ line: 1, column: name, message: unknownColumnMessage(name, i, spec) });
      return;
    }
    const earlier = index.get(column);
    if (earlier !== undefined) {
      throw new FileRejectedError(
        `The header row has the ${column} column twice (columns ${earlier + 1} and ${i + 1}: ` +
          `'${(fields[earlier] ?? '').trim()}' and '${name}'). Remove one of them and upload the file again.`,
        1,
      );
    }
    index.set(column, i);
  });

  if (index.size === 0) {
    // Its values are not quoted: a first line without a header is a row of data, and may hold a password.
    throw new FileRejectedError(
      `The file has no header row: its first line names none of the ${spec.file} columns (it looks like a row of data). ` +
        `The first line must name the columns, for example: ${spec.example}`,
      1,
    );
  }
  for (const column of spec.required) {
    if (!index.has(column)) {
      throw new FileRejectedError(
        `The header row has no ${column} column, which ${spec.file} requires. ` +
          `Add it (for example: ${spec.example}) and upload the file again.`,
        1,
      );
    }
  }
  return { index, width: fields.length, warnings };
}
