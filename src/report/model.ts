/**
 * The content of an import report, decided once and then written out as text and as HTML, so the
 * two bodies never say different things. Everything here is plain strings; escaping is the job of
 * each writer.
 */
import { DateTime } from 'luxon';
import { holdFacts } from '../import/hold.js';
import type { ImportCounts, ImportIssue } from '../import/types.js';
import { assertNever, PASSWORD_MASK } from '../types.js';
import type { ReportInput } from './types.js';

/** How many errors the body shows; the attachment has all of them. */
export const ERRORS_IN_BODY = 20;
const VALUE_IN_BODY = 80;

export interface ReportModel {
  subject: string;
  /** one sentence: what happened */
  headline: string;
  /** label → value: file, size, SHA-256, arrival, … */
  facts: Array<[string, string]>;
  counts: Array<[string, number]>;
  /** the first errors, values shortened */
  errors: ImportIssue[];
  totalErrors: number;
  warnings: ImportIssue[];
  /** paragraphs: what to do now */
  next: string[];
  /** names of the attachments, so the body can point at them */
  errorsAttachment: string | null;
  deactivateAttachment: string | null;
}

const COUNT_LABELS: Array<[keyof ImportCounts, string]> = [
  ['rows', 'Rows read'],
  ['created', 'Created'],
  ['updated', 'Updated'],
  ['unchanged', 'Unchanged'],
  ['deactivated', 'Deactivated'],
  ['reactivated', 'Reactivated'],
  ['errors', 'Errors'],
  ['warnings', 'Warnings'],
];

export function buildModel(input: ReportInput): ReportModel {
  const { import: record, tenant } = input;
  const counts = record.counts;
  const base = record.file.replace(/\.csv$/i, '');
  const totalErrors = Math.max(counts.errors, record.errors.length);
  const errorsAttachment = record.errors.length > 0 ? `${base}-errors.csv` : null;
  const deactivateAttachment =
    record.status === 'held' && input.wouldDeactivate !== undefined && input.wouldDeactivate.length > 0
      ? `${base}-would-deactivate.csv`
      : null;
  const outcome = describeOutcome(input, { errorsAttachment, deactivateAttachment });

  const facts: Array<[string, string]> = [
    ['District', `${tenant.name} (${tenant.subdomain})`],
    ['File', record.file],
    ['Size', formatBytes(record.bytes)],
    ['SHA-256', record.sha256],
    ['Received', formatInstant(record.receivedAt, tenant.timezone)],
    ['Import ID', record.id],
  ];
  if (record.mode) facts.push(['Mode', record.mode === 'full' ? 'full sync (the file is the whole roster)' : 'delta (action column)']);
  if (record.encoding && record.encoding.toLowerCase() !== 'utf-8') {
    facts.push([
      'Encoding',
      `${record.encoding}: the file is not valid UTF-8, so it was read as Windows-1252; save it as UTF-8 if names with accents look wrong`,
    ]);
  }
  if (record.durationMs !== undefined && record.durationMs !== null) facts.push(['Duration', formatDuration(record.durationMs)]);

  return {
    subject: oneLine(`[rosterd] ${tenant.subdomain}: ${outcome.subject}`),
    headline: outcome.headline,
    facts,
    counts: COUNT_LABELS.map(([key, label]) => [label, key === 'errors' ? totalErrors : counts[key]]),
    errors: record.errors.slice(0, ERRORS_IN_BODY).map((e) => shorten(maskIssue(e))),
    totalErrors,
    warnings: record.warnings.map((w) => shorten(maskIssue(w))),
    next: outcome.next,
    errorsAttachment,
    deactivateAttachment,
  };
}

interface Outcome {
  subject: string;
  headline: string;
  next: string[];
}

function describeOutcome(input: ReportInput, files: { errorsAttachment: string | null; deactivateAttachment: string | null }): Outcome {
  const { import: record } = input;
  const c = record.counts;
  const file = record.file;
  const errors = Math.max(c.errors, record.errors.length);
  const changes = `${c.created} created, ${c.updated} updated, ${c.deactivated} deactivated${c.reactivated > 0 ? `, ${c.reactivated} reactivated` : ''}`;
  const reason = record.message ? oneLine(record.message) : '';
  const fixErrors =
    errors > 0
      ? `The rows with errors were skipped. Correct them in your student information system (${
          files.errorsAttachment ? `the first ones are listed above; ${files.errorsAttachment} has all of them` : 'see the list above'
        }) and upload the file again; rows that are already right are left as they are.`
      : '';
  switch (record.status) {
    case 'succeeded':
      return {
        subject: `${file} imported — ${changes}`,
        headline: `${file} was imported: ${changes}.`,
        next: ['Nothing to do.'],
      };
    case 'completed_with_errors':
      return {
        subject: `${file} imported with ${plural(errors, 'error')} — ${changes}`,
        headline: `${file} was imported, but ${skippedRows(record, errors)} skipped (${plural(errors, 'error')}): ${changes}.`,
        next: [fixErrors],
      };
    case 'failed':
      return {
        subject: `${file} failed — nothing imported${errors > 0 ? `, ${plural(errors, 'error')}` : ''}`,
        headline: `${file} was not imported${reason ? `: ${reason}` : '.'} Nothing was changed.`,
        next: [
          `Correct the file${reason ? ' as the message above says' : ''} and upload it again; it will be imported in the next night window.`,
        ],
      };
    case 'held':
      return {
        subject: `${file} held for approval — would deactivate ${plural(c.deactivated, 'user')}`,
        headline: `${file} was held and nothing has been changed yet: ${
          holdFacts(reason) ?? `it would deactivate ${plural(c.deactivated, 'user')}, more than this district's safety limit.`
        }`,
        next: [
          files.deactivateAttachment
            ? `Check the users it would deactivate in ${files.deactivateAttachment}.`
            : 'Check which users are missing from the file.',
          `If they really left, ask your rosterd operator to approve the import: rosterd import approve ${record.id}`,
          `If not (an export that missed a school is the usual cause), fix the export and upload it again, and ask the operator to reject this one: rosterd import reject ${record.id}`,
        ],
      };
    case 'rejected':
      return {
        subject: `${file} rejected — nothing imported`,
        headline: `${file} was held and then rejected by the operator. Nothing was changed.`,
        next: ['Upload a corrected file; it will be imported in the next night window.'],
      };
    case 'validated':
      return {
        subject: `${file} validated (dry run) — would have ${changes}${errors > 0 ? `, ${plural(errors, 'error')}` : ''}`,
        headline: `${file} was checked without applying anything. It would have ${changes}.`,
        next: fixErrors ? [fixErrors] : ['The file is ready to be uploaded.'],
      };
    case 'superseded':
      return {
        subject: `${file} superseded — not imported`,
        headline: `${file} was not imported because a newer ${file} arrived before it was imported; the newer one is imported instead.`,
        next: ['Nothing to do.'],
      };
    case 'pending':
    case 'running':
      throw new Error(`an import that is ${record.status} has no report yet`);
    default:
      return assertNever(record.status, 'upload status');
  }
}

/** Passwords never appear: the records mask them already; this is the second lock. */
export function maskIssue(issue: ImportIssue): ImportIssue {
  if (issue.value !== undefined && issue.column.replace(/[\s_-]/g, '').toLowerCase() === 'password') {
    return { ...issue, value: PASSWORD_MASK };
  }
  return issue;
}

function shorten(issue: ImportIssue): ImportIssue {
  const out: ImportIssue = { line: issue.line, column: oneLine(issue.column), message: oneLine(issue.message) };
  if (issue.value !== undefined) {
    const value = oneLine(issue.value);
    out.value = value.length > VALUE_IN_BODY ? `${value.slice(0, VALUE_IN_BODY - 1)}…` : value;
  }
  return out;
}

/** Control characters (CR, LF, tab, …) from a file must not break a line or a header. */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ');
}

/**
 * "3 rows were" — counted from the distinct lines of the errors listed; a row can have several
 * errors. When the list was cut short, only the error count is exact.
 */
function skippedRows(record: { errors: readonly { line: number }[] }, errors: number): string {
  const lines = new Set(record.errors.map((e) => e.line).filter((l) => l > 0)).size;
  if (lines === 0 || record.errors.length < errors) return 'rows with errors were';
  return `${plural(lines, 'row')} with errors ${lines === 1 ? 'was' : 'were'}`;
}

export function plural(n: number, word: string): string {
  return `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
}

export function formatBytes(bytes: number): string {
  const exact = `${bytes.toLocaleString('en-US')} bytes`;
  if (bytes < 1024) return exact;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit] ?? 'B'} (${exact})`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  return h > 0 ? `${h} h ${m} min ${s} s` : `${m} min ${s} s`;
}

/** e.g. "Saturday, November 21, 2026, 7:02:11 PM CST (America/Chicago)" */
export function formatInstant(instant: Date | string, zone: string): string {
  const dt = (typeof instant === 'string' ? DateTime.fromISO(instant, { setZone: true }) : DateTime.fromJSDate(instant)).setZone(zone);
  if (!dt.isValid) return String(instant);
  return `${dt.toFormat('cccc, LLLL d, yyyy, h:mm:ss a ZZZZ', { locale: 'en-US' })} (${zone})`;
}
