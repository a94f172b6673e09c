/**
 * The contract between the reader (csv → validated rows) and the applier (rows → Postgres).
 *
 * Field convention for UserRow: `undefined` means the column is absent from the file (keep the
 * user's current value); `null` means the column is present but the cell is blank (clear it).
 * `password` is never null: a blank password keeps the current one (PRODUCT.md §3).
 */

export type ImportMode = 'full' | 'delta';

/** Whether a file is read as groups.csv: its name starts with "groups" (also `rosterd validate groups-fall.csv`). */
export function isGroupsFile(fileName: string): boolean {
  return /^groups/i.test(fileName);
}
export type AccessType = 'administrator' | 'school_administrator' | 'manager';
export type Role = 'student' | 'teacher' | 'staff' | 'parent' | 'other';
export type RowAction = 'add' | 'update' | 'delete';

/**
 * What a warning is about, given where the warning is made. The report's advice is keyed on it
 * (src/report/model.ts), so that a message can be reworded without the advice being lost. Stored
 * with the warning (import_issues.code); rosterd's own, left out of --json (records.ts recordJson).
 */
export const WARNING_CODES = [
  /** the file is not UTF-8 and was read as Windows-1252 (line 0) */
  'ENCODING_WINDOWS_1252',
  /** some lines are not UTF-8 and were read as Windows-1252, the rest as UTF-8 (line 0) */
  'ENCODING_MIXED',
  /** a password's spaces at either end were removed */
  'PASSWORD_TRIMMED',
  /** a password Excel replaced (#NAME?, 1.23457E+17): not used */
  'EXCEL_CHANGED_PASSWORD',
  /** a password holding an invisible character (a zero-width or no-break space): not used */
  'INVISIBLE_PASSWORD',
  /**
   * a name with a question mark where a letter was (Mu?oz): the export was saved as ASCII, as
   * PowerShell 5.1's Export-Csv does by default; a user whose name rosterd has keeps it
   */
  'LETTERS_LOST',
  /** an SIS ID Excel replaced: stored as written */
  'EXCEL_CHANGED_SIS_ID',
  /** an SIS ID holding an invisible character: stored as written */
  'INVISIBLE_SIS_ID',
  /** a header name rosterd does not know (line 1): its values were ignored */
  'UNKNOWN_COLUMN',
  /** a column rosterd knows of but does not read, such as Enrollment Status (line 1) */
  'UNREAD_COLUMN',
  /** status values other than active and inactive (Enrolled, Withdrawn): read as blank (line 1, one for the file) */
  'STATUS_NOT_READ',
  /** columns without a name in the header row (line 1) */
  'UNNAMED_COLUMNS',
  /** a data line that repeats the header row: skipped */
  'HEADER_REPEATED',
  /** groups.csv lines repeating an earlier line: each membership added once */
  'LINES_REPEATED',
  /** a new user whose password cell is blank */
  'NEW_USER_WITHOUT_PASSWORD',
  /** a delta's `add` of an inactive user, which reactivates it */
  'ADD_REACTIVATED',
  /** a delta's `update` of an inactive user, which stays inactive */
  'UPDATE_INACTIVE',
  /** a delta's `update` (or `add` of an inactive user) whose blank cells clear stored values */
  'UPDATE_CLEARS',
  /** a new user whose SIS ID another user has: a renamed username makes a new account */
  'NEW_USER_SIS_ID_TAKEN',
  /** groups.csv: a membership of an inactive user */
  'GROUP_USER_INACTIVE',
  /** groups.csv: an owner given for a group that has another one */
  'GROUP_OWNER_IGNORED',
] as const;
export type WarningCode = (typeof WARNING_CODES)[number];

const WARNING_CODE_SET: ReadonlySet<string> = new Set(WARNING_CODES);

/** A code as stored; anything else (NULL, or a code of a later version) is no code. */
export function warningCode(stored: string | null | undefined): WarningCode | undefined {
  return stored !== null && stored !== undefined && WARNING_CODE_SET.has(stored) ? (stored as WarningCode) : undefined;
}

/** One problem in a file. `line` is the spreadsheet line (header = 1); 0 for a whole-file problem. */
export interface ImportIssue {
  line: number;
  column: string;
  value?: string;
  message: string;
  /**
   * The username of the row the issue is about, as written in the file (trimmed), by which an
   * administrator finds the row in the SIS; none for an issue about the whole file, a row whose
   * username is blank, or one whose values may be out of place with a password among them.
   */
  username?: string;
  /** a warning's code (see WARNING_CODES); errors have none */
  code?: WarningCode;
}

/** A warning as rosterd makes it: with what it is about. */
export type CodedWarning = ImportIssue & { code: WarningCode };

export interface SchoolRef {
  id: string;
  name: string;
  ncesId: string | null;
  stateId: string | null;
}

export interface UserRow {
  line: number;
  username: string;
  /** lower-cased username: a user's identity within the tenant */
  usernameKey: string;
  password: string | undefined;
  email: string | null | undefined;
  firstName: string | null | undefined;
  lastName: string | null | undefined;
  schoolId: string | null | undefined;
  graduationYear: number | null | undefined;
  accessType: AccessType | null | undefined;
  role: Role | null | undefined;
  sisId: string | null | undefined;
  /**
   * The SIS ID cell held what Excel left of one (1.23457E+17, #REF!): sisId is null, and the user
   * keeps the SIS ID it has (a new user gets none), as with a password Excel changed.
   */
  keepSisId: boolean;
  /**
   * The `status` cell says `inactive` (PRODUCT.md §7: the export's column): the user is listed but
   * ends up inactive. False for a blank, `active` or any other status, for a file without the
   * column, and for a `delete` row, whose status is not read.
   */
  inactive: boolean;
  /** undefined in full sync (no action column) */
  action: RowAction | undefined;
}

/**
 * What the reader yields for each data line: a valid row, or the fact that a line was invalid
 * (its errors are in the reader's error list) with its username as written when one could be
 * read, so that a user whose row was invalid is never deactivated. It is not lower-cased here:
 * Postgres compares it with the lower() of the users index, as it does the valid rows' usernames.
 */
export type ReadItem = { kind: 'valid'; row: UserRow } | { kind: 'invalid'; line: number; username: string | null };

/**
 * A groups.csv line. Usernames are as written: Postgres compares them ignoring case, with the
 * lower() of the users index (a key lower-cased here could differ from it for non-ASCII letters).
 * An invalid line (already reported) keeps only its username, if it has one, so that a full sync
 * leaves that user's memberships alone, as it does for a line the database finds in error.
 */
export type GroupRow =
  | { valid: true; line: number; username: string; owner: string | null; group: string | null }
  | { valid: false; line: number; username: string | null };

export interface ImportCounts {
  rows: number;
  created: number;
  updated: number;
  unchanged: number;
  deactivated: number;
  reactivated: number;
  errors: number;
  warnings: number;
}

export function emptyCounts(): ImportCounts {
  return { rows: 0, created: 0, updated: 0, unchanged: 0, deactivated: 0, reactivated: 0, errors: 0, warnings: 0 };
}

/** A whole-file failure: the import fails with this one message and nothing is applied. */
export class FileRejectedError extends Error {
  constructor(
    message: string,
    readonly line: number = 0,
  ) {
    super(message);
    this.name = 'FileRejectedError';
  }
}
