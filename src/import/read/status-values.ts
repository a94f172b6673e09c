/**
 * The `status` values rosterd does not read: anything but blank, active or inactive. An SIS
 * export's Status column holds Enrolled, Withdrawn, Pre-registered; such a value is read as blank
 * (the listed user ends up active, as before the column was read), never as a row error, or files
 * that imported before would stop importing. One warning for the file names the values and says
 * what to do instead, so that a district learns its withdrawn students were not deactivated.
 */
import type { CodedWarning, ImportMode } from '../types.js';
import type { HeaderMatch, UserColumn } from './headers.js';
import { detachedString } from './summary.js';
import { isReadStatus } from './users-rules.js';

/** Values the warning names, those on the most lines first; the others are counted. */
const NAMED = 5;
/** Distinct values kept, so memory stays bounded whatever a file holds. */
const KEPT = 1000;
/** A value is kept and named up to this many characters (longer ones sharing them are one value). */
const VALUE_CHARS = 40;

export class StatusValues {
  /** position of the status column, or -1 */
  private readonly at: number;
  /** the column as written in the header */
  private readonly name: string;
  private readonly headerLine: number;
  /** by lower-cased value: the value as first written, and its lines */
  private readonly values = new Map<string, { value: string; lines: number }>();
  private more = false;
  private lines = 0;

  constructor(
    header: HeaderMatch<UserColumn>,
    private readonly mode: ImportMode,
  ) {
    this.at = header.index.get('status') ?? -1;
    this.name = (header.names[this.at] ?? '').replace(/^\uFEFF/, '').trim();
    this.headerLine = header.line;
  }

  /** A valid row's fields; not a `delete` row's, whose status is not read. */
  see(fields: readonly string[]): void {
    if (this.at < 0) return;
    const cell = (fields[this.at] ?? '').trim();
    if (isReadStatus(cell)) return;
    this.lines++;
    const value = cell.length > VALUE_CHARS ? `${cell.slice(0, VALUE_CHARS)}…` : cell;
    const key = value.toLowerCase();
    const seen = this.values.get(key);
    if (seen !== undefined) seen.lines++;
    // Copied: a cell is a slice of its file chunk, which it would keep alive.
    else if (this.values.size < KEPT) this.values.set(detachedString(key), { value: detachedString(value), lines: 1 });
    else this.more = true;
  }

  /** After the last row: the file's one warning, or undefined when every status was read. */
  warning(): CodedWarning | undefined {
    if (this.lines === 0) return undefined;
    // Stable: values on as many lines stay in the order they first appear.
    const values = [...this.values.values()].sort((a, b) => b.lines - a.lines);
    const named = values.slice(0, NAMED).map((v) => `'${v.value}' (${lineCount(v.lines)})`);
    const others = values.length - named.length;
    const list =
      others === 0 && !this.more
        ? named.join(', ')
        : `${named.join(', ')} and ${this.more ? 'at least ' : ''}${others.toLocaleString('en-US')} more`;
    const full = this.mode === 'full';
    const read = `those lines were imported as if their status were blank${full ? ', so the users they list are active after the import' : ''}`;
    const instead = full
      ? 'To deactivate a user, give them status inactive, or leave their row out of the file.'
      : 'To deactivate a user, send their row with action delete, or give them status inactive.';
    return {
      line: this.headerLine,
      column: 'status',
      code: 'STATUS_NOT_READ',
      message:
        `Column '${this.name}' has values other than active and inactive on ${lineCount(this.lines)}: ${list}. ` +
        `Only active and inactive are read in it: ${read}. ${instead}`,
    };
  }
}

function lineCount(n: number): string {
  return `${n.toLocaleString('en-US')} line${n === 1 ? '' : 's'}`;
}
