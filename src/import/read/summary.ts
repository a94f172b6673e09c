/** What a reader tells about a file besides its rows: mode, encoding, counts, errors, warnings. */
import { PASSWORD_MASK } from '../../types.js';
import type { CodedWarning, ImportIssue, ImportMode } from '../types.js';
import type { FileEncoding } from './decode.js';

export interface ReadSummary {
  mode: ImportMode;
  encoding: FileEncoding;
  /** data rows read (blank lines not counted), valid and invalid */
  rows: number;
  /** the first `maxErrors` errors in file order */
  errors: ImportIssue[];
  /** the first `maxErrors` warnings in file order */
  warnings: ImportIssue[];
  /** exact, even when `errors` was capped */
  errorCount: number;
  warningCount: number;
  /** canonical names of the known columns present, in file order */
  columns: string[];
}

export interface ReadResult<T> {
  /** batches of about 1000 items, in file order; single use; throws FileRejectedError for whole-file failures */
  items: AsyncIterable<T[]>;
  /** the summary so far; complete once `items` is exhausted */
  summary(): ReadSummary;
}

export const DEFAULT_MAX_ERRORS = 50_000;
export const BATCH_SIZE = 1000;

/** Keeps the first `max` issues of each kind, counts all of them. */
export class IssueLog {
  readonly errors: ImportIssue[] = [];
  readonly warnings: ImportIssue[] = [];
  errorCount = 0;
  warningCount = 0;

  constructor(private readonly max: number) {}

  error(issue: ImportIssue): void {
    this.errorCount++;
    if (this.errors.length < this.max) this.errors.push(detached(issue));
  }

  /** Every warning says what it is about: the report's advice is keyed on its code. */
  warning(issue: CodedWarning, first = false): void {
    this.warningCount++;
    if (first) this.warnings.unshift(detached(issue));
    else if (this.warnings.length < this.max) this.warnings.push(detached(issue));
    if (this.warnings.length > this.max) this.warnings.pop();
  }
}

/**
 * Cells are slices of the decoded file chunk they came from, and V8 keeps the whole chunk alive as
 * long as a slice of it lives. Kept issues outlive their chunk, so their strings are copied.
 */
export function detachedString(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
}

function detached(issue: ImportIssue): ImportIssue {
  const copy: ImportIssue = { line: issue.line, column: detachedString(issue.column), message: detachedString(issue.message) };
  if (issue.value !== undefined) copy.value = detachedString(issue.value);
  if (issue.username !== undefined) copy.username = detachedString(issue.username);
  if (issue.code !== undefined) copy.code = issue.code;
  return copy;
}

/** Longest value kept in an issue, so that 50,000 issues stay small. */
const MAX_SHOWN = 300;

/** A cell as written, shortened for the report; passwords are never shown. */
export function shownValue(column: string, raw: string): string {
  if (column === 'password') return PASSWORD_MASK;
  return raw.length > MAX_SHOWN ? `${raw.slice(0, MAX_SHOWN)}…` : raw;
}
