/**
 * The content of an import report, decided once and then written out as text and as HTML, so the
 * two bodies never say different things. Everything here is plain strings; escaping is the job of
 * each writer.
 */
import { DateTime } from 'luxon';
import { countBySchool, countMostFirst, holdFacts } from '../import/hold.js';
import { GROUPS_SPEC, normalizeHeaderName, USERS_SPEC } from '../import/read/headers.js';
import { avoidExcel, LETTERS_LOST_ADVICE } from '../import/read/users-rules.js';
import { isGroupsFile, type ImportCounts, type ImportIssue, type ImportMode, type WarningCode } from '../import/types.js';
import { assertNever, PASSWORD_MASK } from '../types.js';
import type { ReportImport, ReportInput } from './types.js';

/** How many errors the body shows; the attachment has all that the record kept. */
export const ERRORS_IN_BODY = 20;
/**
 * How many row warnings the body shows. Warnings about the whole file (line 0: the encoding; line
 * 1: the header's unknown columns) are always shown: there are few, and they matter to every row.
 */
export const WARNINGS_IN_BODY = 20;
const VALUE_IN_BODY = 80;

/** A list of issues as the body shows it. */
export interface IssueList {
  /** e.g. "Errors (first 20 of 60,000)" */
  title: string;
  /** the issues shown, values shortened, passwords masked */
  shown: ImportIssue[];
  /** after the list: where the others are, if any */
  note: string | null;
}

export interface ReportModel {
  subject: string;
  /** one paragraph: what happened */
  headline: string;
  /** label → value: file, size, SHA-256, arrival, … */
  facts: Array<[string, string]>;
  /** "Counts", or for an import that was not applied, a title that says so */
  countsTitle: string;
  counts: Array<[string, number]>;
  errors: IssueList | null;
  warnings: IssueList | null;
  /** paragraphs: what to do now */
  next: string[];
  /** names of the attachments, so the body can point at them */
  errorsAttachment: string | null;
  warningsAttachment: string | null;
  deactivateAttachment: string | null;
}

/** One number format everywhere (subject, body, notes): en-US thousands separators. */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** What the counts mean depends on the file: users.csv counts users, groups.csv memberships. */
interface Vocabulary {
  countLabels(applied: boolean): Array<[keyof ImportCounts, string]>;
  /** "3 created, 1 updated, 0 deactivated" */
  changes(c: ImportCounts): string;
  /** "would create 3, update 1, deactivate 0" */
  wouldChange(c: ImportCounts): string;
  /** "would deactivate 57 users" */
  wouldRemove(n: number): string;
  mode(mode: ImportMode): string;
}

const USERS: Vocabulary = {
  countLabels: (applied) => [
    ['rows', 'Rows read'],
    ['created', applied ? 'Created' : 'Would create'],
    ['updated', applied ? 'Updated' : 'Would update'],
    ['unchanged', applied ? 'Unchanged' : 'Would leave unchanged'],
    ['deactivated', applied ? 'Deactivated' : 'Would deactivate'],
    ['reactivated', applied ? 'Reactivated' : 'Would reactivate'],
    ['errors', 'Errors'],
    ['warnings', 'Warnings'],
  ],
  changes: (c) =>
    `${formatCount(c.created)} created, ${formatCount(c.updated)} updated, ${formatCount(c.deactivated)} deactivated${
      c.reactivated > 0 ? `, ${formatCount(c.reactivated)} reactivated` : ''
    }`,
  wouldChange: (c) =>
    `would create ${formatCount(c.created)}, update ${formatCount(c.updated)}, deactivate ${formatCount(c.deactivated)}${
      c.reactivated > 0 ? `, reactivate ${formatCount(c.reactivated)}` : ''
    }`,
  wouldRemove: (n) => `would deactivate ${plural(n, 'user')}`,
  mode: (mode) => (mode === 'full' ? 'full sync (the file is the whole roster)' : 'delta (action column)'),
};

// src/import/apply-groups.ts: created = memberships added, unchanged = memberships already there,
// deactivated = memberships removed; updated and reactivated are not used.
const GROUPS: Vocabulary = {
  countLabels: (applied) => [
    ['rows', 'Rows read'],
    ['created', applied ? 'Memberships added' : 'Would add memberships'],
    ['unchanged', 'Memberships already there'],
    ['deactivated', applied ? 'Memberships removed' : 'Would remove memberships'],
    ['errors', 'Errors'],
    ['warnings', 'Warnings'],
  ],
  changes: (c) => `${plural(c.created, 'membership')} added, ${plural(c.deactivated, 'membership')} removed`,
  wouldChange: (c) => `would add ${plural(c.created, 'membership')}, remove ${plural(c.deactivated, 'membership')}`,
  wouldRemove: (n) => `would remove ${plural(n, 'membership')}`,
  mode: (mode) =>
    mode === 'full'
      ? 'full sync (the file lists every group membership; memberships it no longer lists are removed)'
      : 'delta (action column)',
};

/**
 * How many issues of each list fit in its attachment (src/report/render.ts keeps an email under
 * the size mail servers accept); undefined: all of them.
 */
export interface AttachedRows {
  errors?: number | undefined;
  warnings?: number | undefined;
}

export function buildModel(input: ReportInput, attached: AttachedRows = {}): ReportModel {
  const { import: record, tenant } = input;
  const counts = record.counts;
  const words = isGroupsFile(record.file) ? GROUPS : USERS;
  const base = record.file.replace(/\.csv$/i, '');
  const totalErrors = Math.max(counts.errors, record.errors.length);
  const errorsAttachment = record.errors.length > 0 ? `${base}-errors.csv` : null;
  const warnings = warningsInBody(
    record.warnings,
    Math.max(counts.warnings, record.warnings.length),
    `${base}-warnings.csv`,
    attached.warnings,
  );
  const deactivateAttachment =
    record.status !== 'held'
      ? null
      : input.wouldDeactivate !== undefined && input.wouldDeactivate.length > 0
        ? `${base}-would-deactivate.csv`
        : input.wouldRemove !== undefined && input.wouldRemove.length > 0
          ? `${base}-would-remove.csv`
          : null;
  const outcome = describeOutcome(
    input,
    words,
    { errorsAttachment, warningsAttachment: warnings.attachment, deactivateAttachment },
    attached,
  );

  const facts: Array<[string, string]> = [
    ['District', `${oneLine(tenant.name)} (${tenant.subdomain})`], // a name stored before line breaks were refused
    ['File', record.file],
    ['Size', formatBytes(record.bytes)],
    ['SHA-256', record.sha256],
    ['Received', formatInstant(record.receivedAt, tenant.timezone)],
    ['Import ID', record.id],
  ];
  // A file imported in the day, or at once after its upload: the district's administrator sees why.
  if (record.requestedBy) facts.push(['Run', "at once, at your rosterd operator's request, not by the nightly schedule"]);
  if (record.mode) facts.push(['Mode', words.mode(record.mode)]);
  if (record.encoding === 'mixed') {
    facts.push(['Encoding', 'UTF-8, except some lines that are not and were read as Windows-1252 (the warnings name them)']);
  } else if (isUtf16(record.encoding)) {
    // Read whole and exactly: said, as the other encodings are, but nothing to do about it.
    facts.push(['Encoding', `UTF-16 (${record.encoding === 'utf-16be' ? 'big' : 'little'}-endian), read as such`]);
  } else if (record.encoding && record.encoding.toLowerCase() !== 'utf-8') {
    facts.push([
      'Encoding',
      `${record.encoding}: the file is not valid UTF-8, so it was read as Windows-1252; save it as UTF-8 if names with accents look wrong`,
    ]);
  }
  if (record.durationMs !== undefined && record.durationMs !== null) facts.push(['Duration', formatDuration(record.durationMs)]);
  const bySchool = deactivationsBySchool(input);
  if (bySchool !== null) facts.push(['Would deactivate, by school', bySchool]);
  const byGroup = removalsByGroup(input);
  if (byGroup !== null) facts.push(['Would remove, by group', byGroup]);
  const replaced = replacedFacts(input);
  facts.push(...replaced.facts);

  const applied = !['held', 'rejected', 'validated'].includes(record.status);
  const extra = [...(replaced.advice === null ? [] : [replaced.advice]), ...stillHeldNote(input)];
  return {
    subject: oneLine(`[rosterd] ${tenant.subdomain}: ${outcome.subject}`),
    headline: outcome.headline,
    facts,
    countsTitle: countsTitle(record.status),
    counts: words.countLabels(applied).map(([key, label]) => [label, key === 'errors' ? totalErrors : counts[key]]),
    errors: errorsInBody(record.errors, totalErrors, errorsAttachment, attached.errors),
    warnings: warnings.list,
    next: extra.length === 0 ? outcome.next : [...outcome.next.filter((n) => n !== NOTHING_TO_DO), ...extra],
    errorsAttachment,
    warningsAttachment: warnings.attachment,
    deactivateAttachment,
  };
}

const NOTHING_TO_DO = 'Nothing to do.';

/** ": this file would deactivate 30 of 100 active users (30%), more than …" without its full stop, or nothing. */
function heldBecause(reason: string): string {
  const facts = holdFacts(reason);
  return facts === null ? '' : ` because ${groupDigits(facts.replace(/^this file /, 'it ').replace(/\.$/, ''))},`;
}

/** Schools (or groups) named one by one in a held report's breakdown; more are counted. */
const BREAKDOWN_LISTED = 5;

/** A held roster's would-be deactivations by school (countBySchool), in one line; null when none has a school. */
function deactivationsBySchool(input: ReportInput): string | null {
  const list = input.import.status === 'held' ? input.wouldDeactivate : undefined;
  const named = countBySchool((list ?? []).map((u) => (u.school ? oneLine(u.school) : null)));
  if (named.length === 0) return null;
  const shown = named.slice(0, BREAKDOWN_LISTED).map(({ school, users }) => `${school ?? 'no school'} ${formatCount(users)}`);
  const more = named.slice(BREAKDOWN_LISTED).reduce((sum, { users }) => sum + users, 0);
  return more > 0 ? `${shown.join(', ')}, and ${plural(more, 'more user')} (the attachment has them all)` : shown.join(', ');
}

/**
 * A held groups.csv's would-be removals counted by group, most first: "Algebra 1 30, Band 12". A
 * truncated export shows as whole groups gone (every group after where it stopped); a new term as
 * a spread over the old classes.
 */
function removalsByGroup(input: ReportInput): string | null {
  const list = input.import.status === 'held' ? input.wouldRemove : undefined;
  if (list === undefined || list.length === 0) return null;
  const named = countMostFirst(list.map((m) => oneLine(m.group)));
  const shown = named.slice(0, BREAKDOWN_LISTED).map(([group, n]) => `${group ?? ''} ${formatCount(n)}`);
  const more = named.slice(BREAKDOWN_LISTED);
  if (more.length === 0) return shown.join(', ');
  const rest = more.reduce((sum, [, n]) => sum + n, 0);
  return `${shown.join(', ')}, and ${plural(rest, 'more membership')} in ${plural(more.length, 'other group')} (the attachment has them all)`;
}

/** Replaced uploads listed one by one; more are counted. */
const REPLACED_LISTED = 5;

/**
 * The earlier uploads this one replaced. A pending one was never imported, and this report is the
 * only word of it, so it is named; if its content differed, the district is told to send what it
 * held again: a delta's changes, or the staff sent apart from the students, are not in this file.
 */
function replacedFacts(input: ReportInput): { facts: Array<[string, string]>; advice: string | null } {
  const { import: record, tenant } = input;
  const all = input.replaced ?? [];
  const facts: Array<[string, string]> = all
    .filter((r) => r.wasHeld)
    .map((held) => [
      'Replaces',
      `the held import ${held.id} received ${formatInstant(held.receivedAt, tenant.timezone)}: it needs no decision any more`,
    ]);
  const pending = all.filter((r) => !r.wasHeld);
  for (const r of pending.slice(-REPLACED_LISTED).reverse()) {
    const same = r.sha256 === record.sha256 ? ', the same content as this one' : '';
    facts.push([
      'Replaces',
      `${record.file} received ${formatInstant(r.receivedAt, tenant.timezone)} (${formatBytes(r.bytes)}${same}): not imported`,
    ]);
  }
  const unlisted = pending.length - REPLACED_LISTED;
  if (unlisted > 0) facts.push(['Replaces', `${unlisted} earlier ${unlisted === 1 ? 'one' : 'ones'}, not imported`]);
  const differing = pending.filter((r) => r.sha256 !== record.sha256).length;
  const one = differing === 1;
  const advice =
    differing === 0
      ? null
      : `This ${record.file} replaced ${one ? 'an earlier one' : `${differing} earlier ones`} that arrived before the import ran; ` +
        `${one ? 'it was' : 'they were'} not imported, as only the newest ${record.file} waiting is. If ${one ? 'it' : 'they'} held ` +
        `anything this one does not (people sent in a separate file, or the changes of a file with an action column), upload ` +
        `${one ? 'it' : 'them'} again combined with this one into one file.`;
  return { facts, advice };
}

function countsTitle(status: ReportImport['status']): string {
  switch (status) {
    case 'held':
      return 'Counts (what the file would do; nothing has been applied yet)';
    case 'rejected':
      return 'Counts (what the file would have done; nothing was applied)';
    case 'validated':
      return 'Counts (what the file would do; nothing was applied)';
    case 'failed':
      // A file refused whole may have rows read and errors counted (one none of whose rows could
      // be used): zeros for created and the rest are what happened, not what the file holds.
      return 'Counts (the file was not applied)';
    default:
      return 'Counts';
  }
}

/**
 * When the attachment holds only some (the record kept only some, or the email could not hold
 * more): "the first 50,000 of 60,000", the word, and why; else null.
 */
function keptOnly(kept: number, attached: number | undefined, total: number): { first: string; why: string } | null {
  const rows = Math.min(kept, attached ?? kept);
  if (rows >= total) return null;
  const operator = kept < total ? `the first ${formatCount(kept)}` : 'all of them';
  const why =
    rows < kept
      ? `an email cannot hold more; your rosterd operator can list ${operator} with "rosterd import show"`
      : 'rosterd keeps no more';
  return { first: `the first ${formatCount(rows)} of ${formatCount(total)}`, why };
}

/** "the first 50,000 of 60,000 errors (rosterd keeps no more)": the note under a list. */
function keptOnlyNote(kept: number, attached: number | undefined, total: number, word: string): string | null {
  const only = keptOnly(kept, attached, total);
  return only ? `${only.first} ${word}s (${only.why})` : null;
}

function listTitle(word: string, shown: number, total: number): string {
  return `${word} (${shown < total ? `first ${formatCount(shown)} of ${formatCount(total)}` : formatCount(total)})`;
}

function errorsInBody(
  errors: readonly ImportIssue[],
  total: number,
  attachment: string | null,
  attached: number | undefined,
): IssueList | null {
  if (errors.length === 0) return null;
  const shown = errors.slice(0, ERRORS_IN_BODY).map((e) => shorten(maskIssue(e)));
  const partial = keptOnlyNote(errors.length, attached, total, 'error');
  let note: string | null = null;
  if (attachment) {
    note = partial ? `${attachment} (attached) has ${partial}.` : `All errors: ${attachment} (attached).`;
  }
  return { title: listTitle('Errors', shown.length, total), shown, note };
}

/**
 * The file's own warnings, then the first row warnings. The full list goes in a CSV of its own
 * rather than in the errors CSV with a `kind` column: errors are rows that were skipped and must be
 * fixed, warnings are rows that were applied and at most need telling someone (a trimmed password).
 * An administrator opening users-errors.csv gets exactly the rows to fix, and opening
 * users-warnings.csv exactly the rows to check, without first filtering a column; and the name of
 * each file keeps saying what is in it. It is attached only when the body cannot list them all.
 */
function warningsInBody(
  warnings: readonly ImportIssue[],
  total: number,
  name: string,
  attached: number | undefined,
): { list: IssueList | null; attachment: string | null } {
  if (warnings.length === 0) return { list: null, attachment: null };
  const fileLevel = warnings.filter((w) => w.line <= 1);
  const rows = warnings.filter((w) => w.line > 1);
  const shown = [...fileLevel, ...rows.slice(0, WARNINGS_IN_BODY)].map((w) => shorten(maskIssue(w)));
  const attachment = warnings.length > shown.length ? name : null;
  const more = total - shown.length;
  const partial = keptOnlyNote(warnings.length, attached, total, 'warning');
  let note: string | null = null;
  if (attachment) {
    note = partial
      ? `…and ${formatCount(more)} more; ${attachment} (attached) has ${partial}.`
      : `…and ${formatCount(more)} more in ${attachment} (attached).`;
  } else if (more > 0) {
    note = `…and ${formatCount(more)} more, not kept by rosterd.`;
  }
  return { list: { title: listTitle('Warnings', shown.length, total), shown, note }, attachment };
}

interface Outcome {
  subject: string;
  headline: string;
  next: string[];
}

interface AttachmentNames {
  errorsAttachment: string | null;
  warningsAttachment: string | null;
  deactivateAttachment: string | null;
}

function describeOutcome(input: ReportInput, words: Vocabulary, files: AttachmentNames, attached: AttachedRows): Outcome {
  const { import: record } = input;
  const c = record.counts;
  const file = record.file;
  const errors = Math.max(c.errors, record.errors.length);
  const changes = words.changes(c);
  const reason = record.message ? oneLine(record.message) : '';
  const fixErrors = errors > 0 ? fixErrorsAdvice(record, errors, files.errorsAttachment, attached.errors) : '';
  const advice = warningAdvice(record, files.warningsAttachment);
  const approval = approvalSentence(record, input.tenant.timezone);
  switch (record.status) {
    case 'succeeded':
      return {
        subject: `${file} imported — ${changes}`,
        headline: `${file} was imported: ${changes}.${approval}`,
        next: advice.length > 0 ? advice : [NOTHING_TO_DO],
      };
    case 'completed_with_errors':
      return {
        subject: `${file} imported with ${plural(errors, 'error')} — ${changes}`,
        headline: `${file} was imported, but ${skippedRows(record, errors)} skipped (${plural(errors, 'error')}): ${changes}.${approval}`,
        next: [fixErrors, ...advice],
      };
    case 'failed':
      return failed(record, errors, reason, listedErrors(record, errors, files.errorsAttachment, attached.errors));
    case 'held':
      return {
        subject: `${file} held for approval — ${words.wouldRemove(c.deactivated)}`,
        headline: `${file} was held and nothing has been changed yet: ${groupDigits(
          holdFacts(reason) ?? `it ${words.wouldRemove(c.deactivated)}, more than this district's safety limit.`,
        )}`,
        next: isGroupsFile(record.file)
          ? [
              files.deactivateAttachment
                ? `Check the memberships it would remove in ${files.deactivateAttachment}.`
                : 'Check which memberships are missing from the file.',
              `If they really ended (a new term's classes, for example), ask your rosterd operator to approve the import: rosterd import approve ${record.id}`,
              `If not (an export cut short, or taken from the wrong report, is the usual cause), fix the export and upload the corrected ` +
                `${file}, with every membership: it replaces this one when it is imported, in the next night window, and this one is then ` +
                `never applied. Only if no corrected file is coming, ask the operator to reject this one: rosterd import reject ${record.id}`,
            ]
          : [
              files.deactivateAttachment
                ? `Check the users it would deactivate in ${files.deactivateAttachment}.`
                : 'Check which users are missing from the file.',
              `If they really left, ask your rosterd operator to approve the import: rosterd import approve ${record.id}`,
              // A newer whole roster supersedes a held one when it is imported (src/import/run-import.ts),
              // so the fix needs no rejection; one only closes a hold that nothing will replace. A delta
              // (an action column) replaces nothing: a held delta's fix is its rejection and the
              // corrected changes.
              record.mode === 'delta'
                ? `If not, ask the operator to reject this one (rosterd import reject ${record.id}) and upload the corrected changes: ` +
                  `a ${file} with an action column does not replace a held one. A whole ${file} without an action column does, ` +
                  'when it is imported, and this one is then never applied.'
                : `If not (an export that missed a school is the usual cause), fix the export and upload the corrected ${file}, ` +
                  `the whole roster without an action column: it replaces this one when it is imported, in the next night window, ` +
                  `and this one is then never applied. Only if no corrected file is coming, ask the operator to reject this one: ` +
                  `rosterd import reject ${record.id}`,
              ...waitingGroupsNote(input),
            ],
      };
    case 'rejected':
      return {
        subject: `${file} rejected — nothing imported`,
        // Why it was held, again: the held report may be days old, and this one closes it.
        headline: `${file} was held${heldBecause(reason)} and then rejected by ${
          record.rejectedBy ? `${oneLine(record.rejectedBy)}${when(record.rejectedAt, input.tenant.timezone)}` : 'the operator'
        }. Nothing was changed.`,
        next: [
          isGroupsFile(file)
            ? `Upload a corrected ${file}, with every membership (an export cut short, or taken from the wrong report, is the usual cause); it will be imported in the next night window.`
            : record.mode === 'delta'
              ? `Upload the corrected changes; they will be imported in the next night window.`
              : `Upload a corrected ${file}, the whole roster (an export that missed a school is the usual cause); it will be imported in the next night window.`,
        ],
      };
    case 'validated': {
      const would = words.wouldChange(c);
      return {
        subject: `${file} validated (dry run) — ${would}${errors > 0 ? `, ${plural(errors, 'error')}` : ''}`,
        headline: `${file} was checked without applying anything. It ${would}.`,
        next: fixErrors || advice.length > 0 ? [...(fixErrors ? [fixErrors] : []), ...advice] : ['The file is ready to be uploaded.'],
      };
    }
    case 'superseded':
      return {
        subject: `${file} superseded — not imported`,
        headline: `${file} was not imported because a newer ${file} arrived before it was imported; the newer one is imported instead.`,
        next: [NOTHING_TO_DO],
      };
    case 'pending':
    case 'running':
      throw new Error(`an import that is ${record.status} has no report yet`);
    default:
      return assertNever(record.status, 'upload status');
  }
}

/**
 * A failed import. A file-level failure (a FileRejectedError: the file's fault, or its stored copy
 * lost) has a message for the administrator. An import that failed after repeated attempts
 * (src/schedule/claims.ts endAttempts) was rosterd's problem: its message carries the internal
 * error, which is the operator's to read (`rosterd import show`), so the report says it plainly.
 */
function failed(record: ReportImport, errors: number, reason: string, listed: string): Outcome {
  const file = record.file;
  const subject = `${file} failed — nothing imported${errors > 0 ? `, ${plural(errors, 'error')}` : ''}`;
  if (isAttemptsFailure(record)) {
    const attempts = record.attempts ?? 0;
    return {
      subject,
      headline:
        `${file} was not imported: rosterd could not finish importing it after ${plural(attempts, 'attempt')}, ` +
        'because of an error on the rosterd server, not in your file. Nothing was changed.',
      next: [
        `Upload the file again; it will be imported in the next night window. If it fails again, ask your rosterd operator to look at the logs (rosterd import show ${record.id}).`,
      ],
    };
  }
  const message = reason ? ` ${asSentence(reason)}` : '';
  // A full sync none of whose rows could be used (src/import/unusable-file.ts) keeps its rows'
  // errors: the message says why the file was refused, the list which rows to fix.
  const rows = record.errors.some((e) => e.message !== record.message);
  return {
    subject,
    headline: `${file} was not imported.${message}${NOTHING_CHANGED.test(reason) ? '' : ' Nothing was changed.'}`,
    next: [
      rows
        ? `Correct the rows in your student information system (${listed}) and upload the file again; it will be imported in the next night window.`
        : `${reason ? 'Do what the message above says and upload' : 'Upload'} the file again; it will be imported in the next night window.`,
    ],
  };
}

const NOTHING_CHANGED = /\bNothing was (changed|applied|imported)\b/i;

/**
 * endAttempts records the last attempt's error and a message quoting it; a file-level failure after
 * an attempt that crashed has attempts > 0 too, but its own message, which does not quote it.
 */
function isAttemptsFailure(record: ReportImport): boolean {
  const last = record.lastAttemptError;
  if (record.status !== 'failed' || (record.attempts ?? 0) === 0 || !last) return false;
  return !record.message || record.message.includes(last.slice(0, 500));
}

/** A message as a sentence of its own: capitalised, ending in a full stop. */
function asSentence(text: string): string {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/**
 * Where the errors are: "the first ones are listed above; users-errors.csv has all of them". It
 * goes in brackets in the advice; why the attachment holds only the first ones is said in the note
 * under the list, and said again here it put brackets within brackets in the one paragraph that
 * says what to do.
 */
function listedErrors(record: ReportImport, errors: number, attachment: string | null, attached: number | undefined): string {
  const partial = keptOnly(record.errors.length, attached, errors);
  return attachment ? `the first ones are listed above; ${attachment} has ${partial?.first ?? 'all of them'}` : 'see the list above';
}

function fixErrorsAdvice(record: ReportImport, errors: number, attachment: string | null, attached: number | undefined): string {
  const where = listedErrors(record, errors, attachment, attached);
  // A delta file's rows that worked were applied: sent again, each `add` would be an error
  // ("already exists"), so only the corrected rows go back.
  const c = record.counts;
  const applied = c.created + c.updated + c.unchanged + c.deactivated + c.reactivated;
  if (record.mode === 'delta' && applied === 0) {
    return `No row could be applied: every row has an error. Correct them in your student information system (${where}) and upload the file again.`;
  }
  if (record.mode === 'delta') {
    return (
      `The rows with errors were skipped; the other rows were applied. Correct them in your student information system (${where}) ` +
      `and upload a ${record.file} with only the corrected rows: sent again, the rows that worked would be reported as errors (an "add" of a user that now exists).`
    );
  }
  return (
    `The rows with errors were skipped. Correct them in your student information system (${where}) ` +
    'and upload the file again; rows that are already right are left as they are.'
  );
}

/**
 * What the warnings ask of the administrator; empty when there are none. Keyed on each warning's
 * code, given where the warning is made, never on its wording.
 *
 * Warnings stored before codes were (migration 009) have none, and need no fallback: advice is
 * given only in the report of an import just made or approved, or of a dry run, whose warnings
 * were all made by this version (an approval reads the held file again and replaces its issues).
 * The reports of holds, rejections and failures give none, and a report queued before is sent as
 * it was rendered then. Should a report ever be rendered again from such a record, its warnings
 * count as others, and the report still says to check them.
 */
function warningAdvice(record: ReportImport, attachment: string | null): string[] {
  const total = Math.max(record.counts.warnings, record.warnings.length);
  if (total === 0) return [];
  const has = (...codes: WarningCode[]): boolean => record.warnings.some((w) => w.code !== undefined && codes.includes(w.code));
  const out: string[] = [];
  const encoding = (record.encoding ?? 'utf-8').toLowerCase();
  if (has('ENCODING_WINDOWS_1252', 'ENCODING_MIXED') || (encoding !== 'utf-8' && !isUtf16(encoding))) {
    out.push('Save the file as UTF-8 ("CSV UTF-8 (Comma delimited)" in Excel) next time, and check that names with accents look right.');
  }
  if (has('LETTERS_LOST')) {
    out.push(
      'Some names have a question mark where an accented letter should be (Mu?oz for Muñoz): the file was saved in an encoding ' +
        `without accented letters. Users rosterd already had keep their names; new users have them as written. ${LETTERS_LOST_ADVICE}.`,
    );
  }
  if (has('UPDATE_CLEARS')) {
    out.push(
      `Some update rows ${record.status === 'validated' ? 'would clear' : 'cleared'} values rosterd had (an email, a name), because their cells were blank (see the warnings). ` +
        'If your system sends only the values that changed, send whole rows instead, or leave out the columns it does not fill: ' +
        'a column the file does not have is left as it is.',
    );
  }
  if (has('NEW_USER_SIS_ID_TAKEN')) {
    out.push(
      'Some new users have the SIS ID of an existing user (see the warnings): usually a username your system changed. ' +
        "Each is a new account, without the old one's password or groups. If the usernames were not meant to change, " +
        'change them back in your system and upload the file again.',
    );
  }
  // The reader's warning of a trimmed password; the database's of a new user without one is another.
  if (has('PASSWORD_TRIMMED')) {
    out.push(
      `Some passwords started or ended with spaces, which were removed: tell those users to sign in without the spaces (their lines are listed ${
        attachment ? `in ${attachment}` : 'above'
      }).`,
    );
  }
  if (has('EXCEL_CHANGED_PASSWORD', 'EXCEL_CHANGED_SIS_ID')) {
    out.push(
      `Excel changed some values (see the warnings); they were not used, and those users keep their current ones. ${avoidExcel('those columns', true)}.`,
    );
  }
  // A column whose warning explains itself (`Active`, UNREAD_COLUMN) needs no advice here, and
  // columns without a name (UNNAMED_COLUMNS) have nothing to rename.
  if (has('UNKNOWN_COLUMN')) {
    const spec = isGroupsFile(record.file) ? GROUPS_SPEC : USERS_SPEC;
    out.push(
      'Columns with names rosterd does not know were ignored (see the warnings). If one of them was meant to be read, ' +
        `rename it as its warning says, or to one of ${spec.columns.join(', ')}, and upload the file again: its values are read then.`,
    );
  }
  const advised: ReadonlySet<WarningCode | undefined> = new Set<WarningCode>([
    'ENCODING_WINDOWS_1252',
    'ENCODING_MIXED',
    'LETTERS_LOST',
    'UPDATE_CLEARS',
    'NEW_USER_SIS_ID_TAKEN',
    'PASSWORD_TRIMMED',
    'EXCEL_CHANGED_PASSWORD',
    'EXCEL_CHANGED_SIS_ID',
    'UNKNOWN_COLUMN',
  ]);
  const others = record.warnings.filter((w) => !advised.has(w.code)).length + (total - record.warnings.length);
  if (others > 0) out.push(out.length > 0 ? 'Check the other warnings above.' : 'Check the warnings above.');
  return out;
}

function isUtf16(encoding: string | null | undefined): boolean {
  return encoding === 'utf-16le' || encoding === 'utf-16be';
}

/** A held users.csv keeps the groups.csv pushed with it waiting (src/schedule/claims.ts). */
function waitingGroupsNote(input: ReportInput): string[] {
  const waiting = input.waitingGroups ?? [];
  if (waiting.length === 0) return [];
  const received = waiting.map((g) => formatInstant(g.receivedAt, input.tenant.timezone)).join(', ');
  const files = waiting.length === 1 ? `The groups.csv received ${received} waits` : `The groups.csv files received ${received} wait`;
  return [
    `${files} until this import is approved, rejected or replaced by a corrected users.csv: ${waiting.length === 1 ? 'it is' : 'they are'} ` +
      'imported at the first run after that, against the users as they are then.',
  ];
}

/** An applied delta left the tenant's held users.csv held (only a whole roster replaces one). */
function stillHeldNote(input: ReportInput): string[] {
  return (input.stillHeld ?? []).map(
    (held) =>
      `The users.csv received ${formatInstant(held.receivedAt, input.tenant.timezone)} (import ${held.id}) is still held for approval: ` +
      'this file has an action column, so it changed only the users it lists and did not replace that one. It is applied only if ' +
      'your rosterd operator approves it; a corrected users.csv without an action column (the whole roster) replaces it.',
  );
}

function approvalSentence(record: ReportImport, zone: string): string {
  if (!record.approvedBy) return '';
  return ` It had been held for approval and was approved by ${oneLine(record.approvedBy)}${when(record.approvedAt, zone)}.`;
}

function when(at: Date | string | null | undefined, zone: string): string {
  return at ? ` on ${formatInstant(at, zone)}` : '';
}

/** The hold reason comes from src/import/hold.ts with plain integers: "10000 of 40000". */
function groupDigits(text: string): string {
  return text.replace(/(?<![\d.,])\d{4,}(?![\d.,]\d)/g, (digits) => formatCount(Number(digits)));
}

function isPasswordColumn(column: string): boolean {
  return normalizeHeaderName(column) === 'password';
}

/** Passwords never appear: the records mask them already; this is the second lock. */
export function maskIssue(issue: ImportIssue): ImportIssue {
  if (issue.value !== undefined && isPasswordColumn(issue.column)) {
    return { ...issue, value: PASSWORD_MASK };
  }
  return issue;
}

function shorten(issue: ImportIssue): ImportIssue {
  const out: ImportIssue = { line: issue.line, column: oneLine(issue.column), message: shortenedWords(oneLine(issue.message)) };
  if (issue.value !== undefined) out.value = shortened(issue.value);
  if (issue.username !== undefined) out.username = shortened(issue.username);
  return out;
}

function shortened(text: string): string {
  const line = oneLine(text);
  return line.length > VALUE_IN_BODY ? `${line.slice(0, VALUE_IN_BODY - 1)}…` : line;
}

/**
 * A message that quotes a value (the school rule quotes the whole cell, up to 10,000 characters)
 * showed in the body, after the value shortened in its own column, all of it again: a screenful of
 * one word before the next error. A word longer than a value may be (words run between spaces and
 * quotes, so the quotes around a value stay) is shortened like the value; the attachment keeps it.
 */
function shortenedWords(message: string): string {
  return message.replace(new RegExp(`[^\\s'"]{${VALUE_IN_BODY + 1},}`, 'g'), (word) => `${word.slice(0, VALUE_IN_BODY - 1)}…`);
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
  return `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;
}

export function formatBytes(bytes: number): string {
  const exact = `${formatCount(bytes)} bytes`;
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
