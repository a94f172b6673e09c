/**
 * groups.csv → batches of GroupRow (PRODUCT.md §4), streamed. Only what the file alone can tell is
 * checked here; whether the user and owner exist and may own groups is the applier's (it needs the
 * database). Invalid rows are reported in the summary and yielded as invalid, with their username
 * if they have one (a full sync keeps that user's memberships).
 */
import type { Readable } from 'node:stream';
import * as z from 'zod';
import { FileRejectedError, type GroupRow } from '../types.js';
import { MAX_FIELD_CHARS } from './csv-guard.js';
import type { EncodingChoice } from './decode.js';
import { GROUPS_SPEC, type GroupColumn, type HeaderMatch } from './headers.js';
import { DEFAULT_MAX_ERRORS, IssueLog, shownValue, type ReadResult } from './summary.js';
import { openFile, readTable, rowPlaces, summaryOf, type RowHandler, type TableState } from './table-reader.js';
import { RepeatedLines } from './repeated-lines.js';
import { composed, excelChangedUsername, invisibleCharacter, length, withoutInvisible } from './users-rules.js';

export interface GroupsReadOptions {
  /** cap on the detailed errors (and warnings) kept; counts stay exact. Default 50,000 */
  maxErrors?: number;
  /** see UsersReadOptions.encoding */
  encoding?: EncodingChoice;
}

export function readGroups(input: NodeJS.ReadableStream | Readable, opts: GroupsReadOptions = {}): ReadResult<GroupRow> {
  return groupsReader(async () => ({ input, encoding: opts.encoding ?? 'auto' }), opts);
}

export function readGroupsFile(path: string, opts: GroupsReadOptions = {}): ReadResult<GroupRow> {
  return groupsReader(openFile(path, opts.encoding), opts);
}

function groupsReader(
  open: () => Promise<{ input: NodeJS.ReadableStream | Readable; encoding: EncodingChoice }>,
  opts: GroupsReadOptions,
): ReadResult<GroupRow> {
  const log = new IssueLog(opts.maxErrors ?? DEFAULT_MAX_ERRORS);
  const state: TableState = { mode: 'full', encoding: 'utf-8', rows: 0, columns: [] };
  const items = readTable<GroupColumn, GroupRow>(
    {
      spec: GROUPS_SPEC,
      log,
      open,
      onHeader: (header) => {
        if (!header.index.has('owner') && !header.index.has('group')) throw neitherOwnerNorGroup(header);
        return groupRowHandler(header, log);
      },
    },
    state,
  );
  return { items, summary: () => summaryOf(state, log) };
}

/**
 * Longest group name. Names are unique per tenant ignoring case through a btree index, whose
 * entries Postgres caps at 2,704 bytes: a longer name would fail the whole file, not its line.
 * Usernames and owners are capped as in users.csv (254), where no longer one can exist.
 */
const MAX_GROUP_CHARS = 255;

/**
 * A username or owner holding an invisible character (a zero-width space pasted with it), or changed
 * by Excel (1.23457E+11), names no user: said as such, not as "does not exist" of a user the
 * administrator sees in users.csv.
 */
function visible(label: string, whose: string) {
  return (v: string, ctx: z.RefinementCtx): void => {
    // Excel's scientific notation of a numeric username names no user either: said as such.
    const changed = excelChangedUsername(whose, v);
    if (changed !== undefined) {
      ctx.addIssue({ code: 'custom', message: changed });
      return;
    }
    const invisible = invisibleCharacter(v);
    if (invisible !== undefined) {
      ctx.addIssue({ code: 'custom', message: `${label} ${invisible}, which cannot be seen: type the value again in your SIS` });
    }
  };
}

const groupRow = z
  .object({
    username: z
      .string()
      .min(1, 'Username is required')
      .refine((v) => length(v) <= 254, 'Username must be at most 254 characters: no user has a longer one')
      .superRefine(visible('Username', 'this username')),
    owner: z
      .string()
      .refine((v) => length(v) <= 254, 'Owner must be at most 254 characters: no user has a longer username')
      .superRefine(visible('Owner', "this owner's username")),
    group: z.string().refine((v) => length(v) <= MAX_GROUP_CHARS, `Group name must be at most ${MAX_GROUP_CHARS} characters`),
  })
  .refine((r) => r.owner !== '' || r.group !== '', {
    message: 'Owner and group are both blank: a line needs an owner, a group or both',
    path: ['group'],
  });

/** A file that exports a class list as `username,teacher,class` is told which columns to rename, not only what is missing. */
function neitherOwnerNorGroup(header: HeaderMatch<GroupColumn>): FileRejectedError {
  // The first candidate for each, in header order.
  const renames = header.renames
    .filter((r, k, all) => (r.column === 'owner' || r.column === 'group') && all.findIndex((o) => o.column === r.column) === k)
    .map((r) => `if column '${r.name}' holds the ${r.column}s, rename it '${r.column}'`);
  const missing = 'The header row has neither an owner nor a group column; groups.csv needs at least one of them';
  return new FileRejectedError(
    renames.length === 0
      ? `${missing} (for example: username,owner,group). Add it and upload the file again.`
      : `${missing}. ${capitalize(renames.join('; '))}; then upload the file again.`,
    header.line,
  );
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * A group name as people read it: the invisible characters that take no room dropped, no-break
 * spaces made spaces. A group name is a label nobody types to sign in: "Chess Club" with a
 * zero-width space pasted into it would be a second group that looks the same in every list.
 */
function groupName(raw: string): string {
  return withoutInvisible(raw)
    .replace(/[\u00a0\u202f]/g, ' ')
    .trim();
}

function groupRowHandler(header: HeaderMatch<GroupColumn>, log: IssueLog): RowHandler<GroupRow> {
  const at = (fields: readonly string[], column: GroupColumn): string => {
    const i = header.index.get(column);
    return i === undefined ? '' : (fields[i] ?? '');
  };
  // A line that repeats an earlier one (ignoring case, as the applier compares names) adds the
  // same membership: it changes nothing, but the file is not what the SIS meant to send.
  const earlier = new RepeatedLines();
  let repeats: { count: number; first: number; of: number } | undefined;
  // As the administrator sees it, composed: a full sync keeps this user's memberships.
  const invalid = (line: number, fields: readonly string[]): GroupRow => {
    const username = at(fields, 'username');
    if (username.length > MAX_FIELD_CHARS) return { valid: false, line, username: null };
    const seen = composed(withoutInvisible(username).trim());
    return { valid: false, line, username: seen === '' ? null : seen };
  };
  // groups.csv has no password: a line's username is shown however its values may have moved.
  const place = rowPlaces(header);
  return {
    ragged: invalid,
    row: (line, fields) => {
      let bad = false;
      for (const column of header.index.keys()) {
        const raw = at(fields, column);
        if (raw.length > MAX_FIELD_CHARS) {
          bad = true;
          log.error({
            ...place(line, fields),
            column,
            value: shownValue(column, raw),
            message: `The value is longer than ${MAX_FIELD_CHARS.toLocaleString('en-US')} characters`,
          });
        }
      }
      if (bad) return invalid(line, fields);
      // Composed (NFC) as users.csv's usernames are, so a Mac-saved file names the same users and groups.
      const cells = {
        username: composed(at(fields, 'username').trim()),
        owner: composed(at(fields, 'owner').trim()),
        group: composed(groupName(at(fields, 'group'))),
      };
      const result = groupRow.safeParse(cells);
      if (!result.success) {
        for (const issue of result.error.issues) {
          const column = String(issue.path[0]) as GroupColumn;
          log.error({ ...place(line, fields), column, value: shownValue(column, at(fields, column)), message: issue.message });
        }
        return invalid(line, fields);
      }
      const { username, owner, group } = result.data;
      const of = earlier.seen([username.toLowerCase(), owner.toLowerCase(), group.toLowerCase()], line);
      if (of !== undefined) {
        repeats ??= { count: 0, first: line, of };
        repeats.count++;
      }
      return { valid: true, line, username, owner: owner === '' ? null : owner, group: group === '' ? null : group };
    },
    end: () => {
      if (repeats === undefined) return;
      const { count, first, of } = repeats;
      log.warning({
        line: first,
        column: '',
        code: 'LINES_REPEATED',
        message:
          count === 1
            ? `Line ${first} repeats line ${of} (the same username, owner and group); the membership is added once`
            : `${count.toLocaleString('en-US')} lines repeat an earlier line (the same username, owner and group), the first of them line ${first}, ` +
              `which repeats line ${of}; each membership is added once`,
      });
    },
  };
}
