/**
 * The part users.csv and groups.csv share: header, blank lines, ragged rows, batching, and the
 * whole-file checks that can only be made at the end (empty, header only, mostly ragged).
 */
import { createReadStream } from 'node:fs';
import type { CodedWarning, ImportMode } from '../types.js';
import { checkRagged, cutOff, emptyFile, extrasNotTheStyle, headerOnly, isPowerShellTypeLine, valueSpansLines } from './csv-guard.js';
import { csvRecords, type ByteSource } from './csv-records.js';
import { detectFileEncoding, type EncodingChoice, type FileEncoding } from './decode.js';
import { unwrapExcelText } from './excel-text.js';
import { matchHeader, normalizeHeaderName, type ColumnSpec, type HeaderMatch } from './headers.js';
import { BATCH_SIZE, IssueLog, shownValue, type ReadSummary } from './summary.js';

export interface RowHandler<T> {
  /**
   * a data row with as many values as the header (trailing blank extras allowed); `longer` when it
   * has more values than the first data row, blank ones: an unquoted comma may have moved its
   * values one column to the right, so its values are not to be shown
   */
  row(line: number, fields: readonly string[], longer: boolean): T | undefined;
  /** a ragged row, already reported; `moved` as for rowPlaces, when its values may be out of place */
  ragged(line: number, fields: readonly string[], moved?: Moved): T | undefined;
  /** after the last row: what can only be told of the rows together */
  end?(): void;
}

/** Where a row's issue is: its line, and the username its row gives (see rowPlaces). */
export interface RowAt {
  line: number;
  username?: string;
}

/** How a line's values may be out of place (see rowPlaces). */
export type Moved = 'left' | 'right' | undefined;

/**
 * Where a line's issues are: its line, and its username cell as written (trimmed, shortened as
 * values are, a line break shown as ↵), by which the administrator finds the row in the SIS; none
 * when the cell is blank. `moved`: a line with too few values may lack one before the username,
 * which moves the later values to the left; one with too many may hold an unquoted comma before
 * it, which moves them to the right. Then the username is not given if the password's column is
 * one its value could have come from: the password would be shown as the username.
 */
export function rowPlaces<C extends string>(header: HeaderMatch<C>): (line: number, fields: readonly string[], moved?: Moved) => RowAt {
  const username = (header.index as ReadonlyMap<string, number>).get('username');
  const mayHoldPassword = passwordMayMove(header);
  return (line, fields, moved) => {
    if (username === undefined || mayHoldPassword(moved)) return { line };
    const written = (fields[username] ?? '').trim();
    return written === '' ? { line } : { line, username: shownValue('username', written.replace(LINE_BREAKS, '↵')) };
  };
}

/** Whether a line whose values moved this way may hold the password in the username's column. */
export function passwordMayMove<C extends string>(header: HeaderMatch<C>): (moved: Moved) => boolean {
  const columns: ReadonlyMap<string, number> = header.index;
  const username = columns.get('username');
  const password = columns.get('password');
  return (moved) =>
    username !== undefined &&
    password !== undefined &&
    ((moved === 'left' && password > username) || (moved === 'right' && password < username));
}

export interface TableRead<C extends string, T> {
  spec: ColumnSpec<C>;
  log: IssueLog;
  /** opens the bytes; called once, when iteration starts */
  open(): Promise<{ input: ByteSource; encoding: EncodingChoice }>;
  /** called once the header is known; returns what turns fields into items */
  onHeader(header: HeaderMatch<C>): RowHandler<T>;
}

/** `open` for a file on disk: UTF-8 is validated in a streamed pre-pass (unless the encoding is given), so it is known before row 1. */
export function openFile(path: string, encoding: EncodingChoice | undefined): TableRead<string, unknown>['open'] {
  return async () => ({
    encoding: encoding ?? (await detectFileEncoding(path)),
    input: createReadStream(path, { highWaterMark: 1 << 16 }),
  });
}

export interface TableState {
  mode: ImportMode;
  encoding: FileEncoding;
  rows: number;
  columns: string[];
}

export function summaryOf(state: TableState, log: IssueLog): ReadSummary {
  return {
    mode: state.mode,
    encoding: state.encoding,
    rows: state.rows,
    errors: log.errors.slice(),
    warnings: log.warnings.slice(),
    errorCount: log.errorCount,
    warningCount: log.warningCount,
    columns: state.columns.slice(),
  };
}

function isBlank(fields: readonly string[]): boolean {
  return fields.every((f) => f.trim() === '');
}

/**
 * More values than columns where the extras are blank (`a,b,c,`) are how some exporters end every
 * line, and also how a row looks whose unquoted comma split a value in two when its last column
 * was blank (`ann,Ann,Lee, Jr,Secret1,`: every value after the comma one column to the right, the
 * password in the SIS ID). The first data row tells which: extras are accepted only in a file
 * whose first row has them (and checked at the end to be most rows, see extrasNotTheStyle), and
 * no more of them than it has: in such a file, a line split by an unquoted comma ends in one blank
 * extra more than the others (`ann,Lee, Jr,Secret1,,` where the email is blank), and read as
 * written its password would be the email, which the report shows as the value in error.
 *
 * A header padded with columns without a name (`username,email,,,,`: a spreadsheet's used range)
 * shows the file's style itself, and says nothing of how many of them each row carries: a row
 * needs values for the named columns only, and blank ones past the header are fine.
 */
function isRagged(fields: readonly string[], header: HeaderMatch<string>, maxValues: number): boolean {
  const { width, namedWidth } = header;
  if (fields.length === width) return false;
  if (fields.length < namedWidth) return true;
  if (namedWidth < width) return fields.length > width && fields.slice(width).some((f) => f.trim() !== '');
  if (fields.length > maxValues) return true;
  return fields.slice(width).some((f) => f.trim() !== '');
}

/** Per file, memoised by the number of values: a header may have thousands of columns, and every line may be short. */
function raggedMessages(header: HeaderMatch<string>): (values: number) => string {
  const memo = new Map<number, string>();
  return (values) => {
    let message = memo.get(values);
    if (message === undefined) memo.set(values, (message = raggedMessage(values, header)));
    return message;
  };
}

function raggedMessage(values: number, header: HeaderMatch<string>): string {
  // A short line is measured against the named columns: a spreadsheet shows no others.
  const width = values < header.namedWidth ? header.namedWidth : header.width;
  const counted = `This line has ${values.toLocaleString('en-US')} value${values === 1 ? '' : 's'} but the header row has ${width.toLocaleString('en-US')} columns`;
  if (values > width) return `${counted}: a value with a comma, such as "Lee, Jr", must be in double quotes`;
  return `${counted}: ${shortLineAdvice(header.names.slice(values, width), values)}`;
}

/**
 * A line with too few values has no value for the last columns of the header: Excel leaves empty
 * values out at the end of some lines when it saves a CSV (past the last column it considers
 * used). The line is not padded: a value missing in the middle would put the password in a name.
 */
function shortLineAdvice(missing: readonly string[], values: number): string {
  const names = missing.map((raw) => {
    const name = raw.replace(/^\uFEFF/, '').trim();
    return name === '' ? '' : `'${name}'`;
  });
  const n = missing.length;
  const commas = n === 1 ? 'a comma' : `${n.toLocaleString('en-US')} commas, one for each`;
  const which = n === 1 ? 'the last column' : `the last ${n.toLocaleString('en-US')} columns`;
  const named = names.map((name, k) => (name === '' ? `column ${values + k + 1} (no name)` : name));
  const listed = names.every((name) => name === '')
    ? `${which}, which ${n === 1 ? 'has' : 'have'} no name in the header row`
    : `${named.length <= 4 ? joinAnd(named) : `${named.slice(0, 3).join(', ')} and ${named.length - 3} more`} (${which})`;
  return (
    `it has no value for ${listed}. If ${n === 1 ? 'it is' : 'they are'} empty, end the line with ${commas}: ` +
    'Excel leaves empty values out of some lines when it saves a CSV, so export the file from your SIS again rather than ' +
    'saving it in Excel. If a value is missing elsewhere on the line, add it where it belongs'
  );
}

function joinAnd(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/**
 * Checks of each data line against the header, prepared once per file (they run on every line):
 *
 * `raggedMessage`: the row error of a line with the wrong number of values.
 *
 * `repeatsHeader`: a line naming the same columns as the header, in the same places (a BOM of a
 * joined file aside).
 *
 * `checkLineBreaks`: no column of users.csv or groups.csv holds a line break. One inside a quoted
 * value may be a quote that is not closed where it should be, which swallows the lines after it up
 * to the next quote: their users would be missing from the roster, deactivated, and their values
 * (passwords) shown in the report as one long value. So when what follows a line break looks like
 * a row of this file (as many commas as the header has named columns, less one), or the header is
 * too narrow to tell, the file fails whole, quoting nothing; in a column rosterd reads, so does a
 * line break followed by any comma. Otherwise it is a line break typed in the cell (Alt+Enter in
 * Excel, a two-line name in the SIS): in a column rosterd reads, the row's error, returned as that
 * column; an unknown column (an address, say) may hold one.
 */
function lineChecks<C extends string>(header: HeaderMatch<C>) {
  const named = [...header.index.values()].map((i): [number, string] => [i, normalizeHeaderName(header.names[i] ?? '')]);
  const columnAt = new Map([...header.index.entries()].map(([column, i]): [number, C] => [i, column]));
  return {
    raggedMessage: raggedMessages(header),
    repeatsHeader(fields: readonly string[]): boolean {
      return named.length > 0 && named.every(([i, name]) => normalizeHeaderName(fields[i] ?? '') === name);
    },
    checkLineBreaks(line: number, fields: readonly string[]): C | undefined {
      let typed: C | undefined;
      fields.forEach((value, i) => {
        if (!LINE_BREAK.test(value)) return;
        const parts = value.split(LINE_BREAK);
        const rest = parts.slice(1);
        const tellable = header.namedWidth >= 3;
        const looksLikeRows = tellable && rest.some((p) => p.split(',').length >= header.namedWidth);
        const column = columnAt.get(i);
        // In a column rosterd reads, even a part of a row swallowed (`amy1,Secret2"`, its quote
        // closing the value) is no typed line break: that user would be missing, its password shown.
        const typedInCell = tellable && !rest.some((p) => p.includes(','));
        if (looksLikeRows || (column !== undefined && !typedInCell)) throw valueSpansLines(line, i + 1, parts.length);
        typed ??= column;
      });
      return typed;
    },
  };
}

const LINE_BREAK = /\r\n|\r|\n/;
const LINE_BREAKS = new RegExp(LINE_BREAK.source, 'g');

const LINE_BREAK_IN_VALUE =
  'The value holds a line break (shown as ↵: a new line inside the cell, as Alt+Enter makes in Excel), which this column ' +
  'cannot have. Remove it in your SIS and upload the file again';

/** Whether a row has a value in a column without a name: one among the named ones, or after the last. */
function hasUnnamedValue(fields: readonly string[], inside: readonly number[], namedWidth: number): boolean {
  for (const i of inside) if ((fields[i] ?? '').trim() !== '') return true;
  for (let i = namedWidth; i < fields.length; i++) if ((fields[i] ?? '').trim() !== '') return true;
  return false;
}

export async function* readTable<C extends string, T>(read: TableRead<C, T>, state: TableState): AsyncGenerator<T[]> {
  const { input, encoding } = await read.open();
  const source = csvRecords(input, encoding);
  let header: HeaderMatch<C> | undefined;
  let handler: RowHandler<T> | undefined;
  let checks: ReturnType<typeof lineChecks<C>> | undefined;
  let place: ReturnType<typeof rowPlaces<C>> = (line) => ({ line });
  let ragged = 0;
  let batch: T[] = [];
  /** The last data line, when it had too few values. */
  let lastShort: { line: number; values: number } | null = null;
  /** Whether lines may end in blank extra values, as the first data line does, and how many values a line may have (see isRagged). */
  let blankExtras: { allowed: boolean; firstLine: number; rows: number; maxValues: number } | undefined;
  /** the header's warnings, held until the rows are read; whether a row has a value in a column without a name */
  let unnamed: { warnings: CodedWarning[]; inside: number[]; used: boolean } = { warnings: [], inside: [], used: false };

  for await (const records of source.records) {
    for (const { line, fields } of records) {
      if (isBlank(fields)) continue;
      if (header === undefined || handler === undefined || checks === undefined) {
        if (isPowerShellTypeLine(fields)) continue; // see isPowerShellTypeLine: its line still counts
        header = matchHeader(fields, read.spec, line);
        // The rows after it need only the named columns (see isRagged); the header's own chunk is split already.
        if (header.namedWidth < header.width) source.dropBlankTails(header.namedWidth);
        checks = lineChecks(header);
        place = rowPlaces(header);
        // The header's warnings are logged once the rows are read (at the top, where they were):
        // columns without a name are told of only if a row has a value in one. Excel pads a header
        // with them, and a warning every night about columns that hold nothing teaches the
        // district to skip the warnings.
        unnamed = {
          warnings: header.warnings,
          inside: header.names.flatMap((n, i) => (i < (header?.namedWidth ?? 0) && n.replace(/^\uFEFF/, '').trim() === '' ? [i] : [])),
          // Nothing to look for in the rows when every column has a name.
          used: !header.warnings.some((w) => w.code === 'UNNAMED_COLUMNS'),
        };
        state.columns = [...header.index.entries()].sort((a, b) => a[1] - b[1]).map(([c]) => c);
        handler = read.onHeader(header);
        continue;
      }
      if (checks.repeatsHeader(fields)) {
        // Per-school exports joined into one file: each part brings its header. Read as a row,
        // it would create a user "username" with the password "password".
        read.log.warning({
          line,
          column: '',
          code: 'HEADER_REPEATED',
          message: 'This line repeats the header row (files joined together?); it was skipped',
        });
        continue;
      }
      if (!unnamed.used) unnamed.used = hasUnnamedValue(fields, unnamed.inside, header.namedWidth);
      unwrapExcelText(fields);
      // Only a record csv-parse read can hold a quoted line break; the others were split at commas.
      const lineBreakIn = source.parsed(fields) ? checks.checkLineBreaks(line, fields) : undefined;
      state.rows++;
      let item: T | undefined;
      lastShort = fields.length < header.namedWidth ? { line, values: fields.length } : null;
      blankExtras ??= {
        allowed: fields.length > header.width,
        firstLine: line,
        rows: 0,
        maxValues: Math.max(fields.length, header.width),
      };
      if (blankExtras.allowed && fields.length > header.width) blankExtras.rows++;
      if (isRagged(fields, header, blankExtras.maxValues)) {
        ragged++;
        const moved = fields.length < header.namedWidth ? 'left' : 'right';
        read.log.error({ ...place(line, fields, moved), column: '', message: checks.raggedMessage(fields.length) });
        item = handler.ragged(line, fields, moved);
      } else if (lineBreakIn !== undefined) {
        const value = fields[header.index.get(lineBreakIn) as number] ?? '';
        // shown on one line, the break where it is
        const shown = shownValue(lineBreakIn, value.replace(LINE_BREAKS, '↵'));
        read.log.error({ ...place(line, fields), column: lineBreakIn, value: shown, message: LINE_BREAK_IN_VALUE });
        item = handler.ragged(line, fields);
      } else {
        item = handler.row(line, fields, fields.length > blankExtras.maxValues);
      }
      if (item !== undefined) batch.push(item);
      if (batch.length >= BATCH_SIZE) {
        yield batch;
        batch = [];
      }
    }
  }

  state.encoding = source.encoding();
  const told = unnamed.warnings.filter((w) => unnamed.used || w.code !== 'UNNAMED_COLUMNS');
  [...told].reverse().forEach((w) => read.log.warning(w, true));
  handler?.end?.();
  if (header === undefined) throw emptyFile();
  if (state.rows === 0) throw headerOnly();
  if (lastShort !== null && !source.endsWithLineBreak()) throw cutOff(lastShort.line, lastShort.values, header.namedWidth);
  checkRagged(ragged, state.rows, header.namedWidth);
  const padded = header.namedWidth < header.width;
  if (!padded && blankExtras?.allowed && blankExtras.rows * 2 <= state.rows) throw extrasNotTheStyle(blankExtras.firstLine, header.width);
  if (state.encoding === 'mixed') {
    const { first, count } = source.recodedLines();
    const which = count === 1 ? `Line ${first[0]} is` : `${count} lines are`;
    const listed = count === 1 ? '' : ` (line${first.length === 1 ? '' : 's'} ${first.join(', ')}${count > first.length ? ', …' : ''})`;
    read.log.warning(
      {
        line: 0,
        column: '',
        code: 'ENCODING_MIXED',
        message:
          `${which} not valid UTF-8, although the rest of the file is${listed}: ${count === 1 ? 'it was' : 'they were'} read as ` +
          'Windows-1252 (Western European), the rest as UTF-8. Check the names on those lines, and save the whole file as ' +
          '"CSV UTF-8 (Comma delimited)" next time. (Line numbers as a text editor counts them.)',
      },
      true,
    );
  }
  if (state.encoding === 'windows-1252') {
    read.log.warning(
      {
        line: 0,
        column: '',
        code: 'ENCODING_WINDOWS_1252',
        message:
          'The file is not valid UTF-8, so it was read as Windows-1252 (Western European). If accented names look wrong, ' +
          'save the file as "CSV UTF-8 (Comma delimited)" next time.',
      },
      true,
    );
  }
  if (batch.length > 0) yield batch;
}
