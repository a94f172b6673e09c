/**
 * users.csv → batches of ReadItem (PRODUCT.md §3), streamed with bounded memory.
 *
 * `readUsersFile(path)` is the primary entry: it knows the encoding before the first row (see
 * decode.ts). `readUsers(stream)` reads a stream that cannot be re-read. Whole-file failures are
 * thrown as FileRejectedError from the iteration of `items`, possibly after batches were yielded
 * (the applier commits only once `items` is exhausted). Duplicate usernames are not detected here:
 * the applier does it in SQL after staging, so a 1M-row file needs no 1M-entry map.
 */
import type { Readable } from 'node:stream';
import type { ReadItem, SchoolRef, UserRow } from '../types.js';
import { ActionLookalike } from './action-lookalike.js';
import { MAX_FIELD_CHARS } from './csv-guard.js';
import type { EncodingChoice } from './decode.js';
import { USERS_SPEC, type HeaderMatch, type UserColumn } from './headers.js';
import { StatusValues } from './status-values.js';
import { DEFAULT_MAX_ERRORS, IssueLog, shownValue, type ReadResult } from './summary.js';
import {
  openFile,
  passwordMayMove,
  readTable,
  rowPlaces,
  summaryOf,
  type Moved,
  type RowAt,
  type RowHandler,
  type TableState,
} from './table-reader.js';
import {
  asSeen,
  composed,
  excelDamage,
  failed,
  lostLettersWarning,
  passwordDamageWarning,
  sisIdWarning,
  userRules,
  withoutInvisible,
  type UserCells,
} from './users-rules.js';

export type { ReadResult, ReadSummary } from './summary.js';

export interface UsersReadOptions {
  /** the tenant's schools, for the `school` column */
  schools: SchoolRef[];
  /** cap on the detailed errors (and warnings) kept; counts stay exact. Default 50,000 */
  maxErrors?: number;
  /** for the plausible graduation years. Default: new Date() */
  now?: Date;
  /**
   * How to decode the bytes. `readUsersFile` finds it with a pre-pass unless given; `readUsers`
   * defaults to 'auto' (switches to Windows-1252 in place if only ASCII preceded the first invalid
   * byte, rejects a file that mixes encodings).
   */
  encoding?: EncodingChoice;
}

/** Said instead of a value that may be out of place (see RowHandler.row). */
const NOT_SHOWN =
  'The value is not shown: this line has more values than the first line, so an unquoted comma (in a name, say) may have ' +
  'moved every value after it one column to the right, a password into this column. Check the line for such a comma';

export function readUsers(input: NodeJS.ReadableStream | Readable, opts: UsersReadOptions): ReadResult<ReadItem> {
  return usersReader(async () => ({ input, encoding: opts.encoding ?? 'auto' }), opts);
}

/** Reads a users.csv on disk: UTF-8 is validated in a streamed pre-pass, so the encoding is known before row 1. */
export function readUsersFile(path: string, opts: UsersReadOptions): ReadResult<ReadItem> {
  return usersReader(openFile(path, opts.encoding), opts);
}

function usersReader(
  open: () => Promise<{ input: NodeJS.ReadableStream | Readable; encoding: EncodingChoice }>,
  opts: UsersReadOptions,
): ReadResult<ReadItem> {
  const log = new IssueLog(opts.maxErrors ?? DEFAULT_MAX_ERRORS);
  const state: TableState = { mode: 'full', encoding: 'utf-8', rows: 0, columns: [] };
  const now = opts.now ?? new Date();
  const items = readTable<UserColumn, ReadItem>(
    {
      spec: USERS_SPEC,
      log,
      open,
      onHeader: (header) => {
        state.mode = header.index.has('action') ? 'delta' : 'full';
        return userRowHandler(header, log, opts.schools, now, new StatusValues(header, state.mode));
      },
    },
    state,
  );
  return { items, summary: () => summaryOf(state, log) };
}

function userRowHandler(
  header: HeaderMatch<UserColumn>,
  log: IssueLog,
  schools: readonly SchoolRef[],
  now: Date,
  statuses: StatusValues,
): RowHandler<ReadItem> {
  const columns = [...header.index.entries()];
  const rules = userRules({ columns: new Set(header.index.keys()), schools, now });
  // The line being read: its issues' place (with its username) is found only when it has one,
  // which most lines do not.
  const place = rowPlaces(header);
  const mayHoldPassword = passwordMayMove(header);
  const reading: { line: number; fields: readonly string[]; moved: Moved } = { line: 0, fields: [], moved: undefined };
  const where = (): RowAt => place(reading.line, reading.fields, reading.moved);
  const usernameAt = header.index.get('username') ?? 0;
  const usernameOf = (fields: readonly string[]): string | null => {
    // As the administrator sees it, composed as a valid row's is: it keeps the user its rejected row
    // names from being deactivated, also when the row was rejected for an invisible character in
    // the username (a zero-width space pasted after it: PRODUCT.md §3, an invalid row's user stays).
    const u = withoutInvisible(fields[usernameAt] ?? '').trim();
    return u === '' ? null : asSeen(composed(u));
  };

  // The common case, a valid row, runs the column checks directly; any doubt (a cell too long, a
  // check that fails) sends the row through zod, which runs the same checks and reports them.
  const positions = columns.map(([, i]) => i);
  const checks = columns.map(([c]) => rules.checks[c]);
  const slot = (c: UserColumn): number => columns.findIndex(([column]) => column === c);
  const at = {
    username: slot('username'),
    password: slot('password'),
    email: slot('email'),
    firstName: slot('first name'),
    lastName: slot('last name'),
    school: slot('school'),
    graduationYear: slot('graduation year'),
    accessType: slot('access type'),
    role: slot('role'),
    sisId: slot('sis id'),
    status: slot('status'),
    action: slot('action'),
  };
  const n = columns.length;
  const cells: string[] = new Array<string>(n).fill('');
  const values: unknown[] = new Array<unknown>(n).fill(undefined);
  const value = <T>(i: number): T | undefined => (i < 0 ? undefined : (values[i] as T));
  const fast = (line: number, fields: readonly string[]): UserRow | undefined => {
    for (let k = 0; k < n; k++) {
      const raw = fields[positions[k] as number] ?? '';
      if (raw.length > MAX_FIELD_CHARS) return undefined;
      cells[k] = raw.trim();
    }
    const deleting = at.action >= 0 && (cells[at.action] as string).toLowerCase() === 'delete';
    for (let k = 0; k < n; k++) {
      if (deleting && k !== at.username && k !== at.action) {
        values[k] = undefined;
        continue;
      }
      const v = (checks[k] as (v: string) => unknown)(cells[k] as string);
      if (failed(v)) return undefined;
      values[k] = v;
    }
    // Only now: a row that fails above is read again by slow(), which warns too.
    if (at.password >= 0) passwordSpaces(fields[positions[at.password] as number] ?? '', cells[at.password] as string);
    let keepSisId = false;
    if (!deleting) {
      const sisId = at.sisId < 0 ? '' : (cells[at.sisId] as string);
      keepSisId = valueWarnings(
        at.password < 0 ? '' : (cells[at.password] as string),
        sisId,
        sisId === '' ? '' : (fields[positions[at.sisId] as number] ?? ''),
      );
    }
    if (!deleting) nameWarnings(value(at.firstName), value(at.lastName));
    const username = values[at.username] as string;
    return {
      line,
      username,
      usernameKey: username.toLowerCase(),
      password: value(at.password),
      email: value(at.email),
      firstName: value(at.firstName),
      lastName: value(at.lastName),
      schoolId: value(at.school),
      graduationYear: value(at.graduationYear),
      accessType: value(at.accessType),
      role: value(at.role),
      sisId: keepSisId ? null : value(at.sisId),
      keepSisId,
      inactive: value(at.status) === 'inactive',
      action: value(at.action),
    };
  };

  /**
   * Cells are trimmed, passwords too: a space after a comma in a hand-edited file is far more
   * common than a password meant to start or end with one. But a password is not ours to change
   * silently; the report says so, so the district can tell users.
   */
  function passwordSpaces(raw: string, trimmed: string): void {
    if (trimmed === '' || trimmed.length === raw.length || excelDamage(trimmed) !== undefined) return;
    log.warning({
      ...where(),
      column: 'password',
      value: shownValue('password', raw),
      code: 'PASSWORD_TRIMMED',
      message: 'The password starts or ends with spaces; they were removed, so the user signs in without them',
    });
  }

  /**
   * Values that pass their rule but are not what the SIS holds: a password or SIS ID Excel changed,
   * an invisible character. True if the SIS ID is one Excel changed, which is not used.
   */
  function valueWarnings(password: string, sisId: string, rawSisId: string): boolean {
    const passwordWarning = password === '' ? undefined : passwordDamageWarning(password);
    if (passwordWarning !== undefined)
      log.warning({ ...where(), column: 'password', value: shownValue('password', password), ...passwordWarning });
    const sisWarning = sisId === '' ? undefined : sisIdWarning(sisId);
    if (sisWarning !== undefined) log.warning({ ...where(), column: 'sis id', value: shownValue('sis id', rawSisId), ...sisWarning });
    return sisWarning?.code === 'EXCEL_CHANGED_SIS_ID';
  }

  /** Names whose accented letters the export lost (see lostLettersWarning). */
  function nameWarnings(first: string | null | undefined, last: string | null | undefined): void {
    for (const [column, v] of [
      ['first name', first],
      ['last name', last],
    ] as const) {
      const warning = v ? lostLettersWarning(v) : undefined;
      if (warning !== undefined) log.warning({ ...where(), column, value: shownValue(column, v ?? ''), ...warning });
    }
  }

  const lookalike = new ActionLookalike(header);
  return {
    // A line whose values may have moved the password into the username's column stages no
    // username: staged, it would be shown (a duplicate's value) and could protect a "user" named
    // like the password. Its row's user then has no protection from deactivation (the hold has).
    ragged: (line, fields, moved) => ({ kind: 'invalid', line, username: mayHoldPassword(moved) ? null : usernameOf(fields) }),
    row: (line, fields, longer) => {
      reading.line = line;
      reading.fields = fields;
      reading.moved = longer ? 'right' : undefined;
      lookalike.see(fields);
      const row = fast(line, fields);
      const item = row !== undefined ? { kind: 'valid' as const, row } : slow(line, fields, longer && header.index.has('password'));
      if (item.kind === 'valid' && item.row.action !== 'delete') statuses.see(fields);
      return item;
    },
    end: () => {
      lookalike.check();
      // First: a warning about the whole file, kept however many row warnings fill the list.
      const unread = statuses.warning();
      if (unread !== undefined) log.warning(unread, true);
    },
  };

  /** `hide`: the row's values may be out of place, a password among them (see RowHandler.row): none is shown. */
  function slow(line: number, fields: readonly string[], hide = false): ReadItem {
    const rowAt = where();
    const cells: UserCells = {};
    const tooLong = new Set<UserColumn>();
    for (const [column, i] of columns) {
      const raw = fields[i] ?? '';
      if (raw.length > MAX_FIELD_CHARS) {
        tooLong.add(column);
        log.error({
          ...rowAt,
          column,
          value: shownValue(column, raw),
          message: `The value is longer than ${MAX_FIELD_CHARS.toLocaleString('en-US')} characters`,
        });
      }
      cells[column] = raw.trim();
    }
    const result = rules.validate(cells);
    // Not when the password itself is refused (too short once trimmed): nobody signs in with it.
    const passwordRefused = tooLong.has('password') || (!result.ok && result.issues.some((i) => i.column === 'password'));
    if (cells.password !== undefined && !passwordRefused) {
      passwordSpaces(fields[header.index.get('password') ?? -1] ?? '', cells.password);
    }
    let keepSisId = false;
    if (cells.action?.toLowerCase() !== 'delete') {
      const sisIdRefused = tooLong.has('sis id') || (!result.ok && result.issues.some((i) => i.column === 'sis id'));
      keepSisId = valueWarnings(
        passwordRefused ? '' : (cells.password ?? ''),
        sisIdRefused ? '' : (cells['sis id'] ?? ''),
        fields[header.index.get('sis id') ?? -1] ?? '',
      );
    }
    if (result.ok && tooLong.size === 0) {
      const v = result.values;
      if (v.action !== 'delete') nameWarnings(v['first name'], v['last name']);
      const row: UserRow = {
        line,
        username: v.username,
        usernameKey: v.username.toLowerCase(),
        password: v.password,
        email: v.email,
        firstName: v['first name'],
        lastName: v['last name'],
        schoolId: v.school,
        graduationYear: v['graduation year'],
        accessType: v['access type'],
        role: v.role,
        sisId: keepSisId ? null : v['sis id'],
        keepSisId,
        inactive: v.status === 'inactive',
        action: v.action,
      };
      return { kind: 'valid', row };
    }
    if (!result.ok) {
      const position = (c: UserColumn): number => header.index.get(c) ?? 0;
      const issues = result.issues.slice().sort((a, b) => position(a.column) - position(b.column));
      for (const issue of issues) {
        if (tooLong.has(issue.column)) continue;
        const raw = fields[header.index.get(issue.column) ?? -1] ?? '';
        if (hide) log.error({ ...rowAt, column: issue.column, value: '', message: `${issue.message}. ${NOT_SHOWN}` });
        else log.error({ ...rowAt, column: issue.column, value: shownValue(issue.column, raw), message: issue.message });
      }
    }
    return { kind: 'invalid', line, username: usernameOf(fields) };
  }
}
