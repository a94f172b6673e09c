import os from 'node:os';
import type { Command } from 'commander';
import { DateTime } from 'luxon';
import { RosterdError } from '../../errors.js';
import { holdFacts } from '../../import/hold.js';
import type { ImportRecord } from '../../import/records.js';
import { isGroupsFile } from '../../import/types.js';
import { formatCount, plural } from '../../report/model.js';
import { isSuspendedSkip, isTakenBack, processPending, type ProcessedUpload, type ProcessSummary } from '../../schedule/process.js';
import { interruptedBy, leaf } from '../context.js';
import { signalExitCode } from '../signals.js';
import { describeDelivery, importContext, operator, outboxMark, sendReports, type CliDelivery } from './import.js';

/**
 * `rosterd import run [--tenant T] [--now]`: what one scheduler tick does, on demand: import the
 * pending uploads of tenants whose window is open (all of them with --now), then send the reports.
 */
export function registerImportRunCommand(imp: Command): void {
  leaf(
    imp
      .command('run')
      .description('import pending uploads of tenants whose night window is open, then send the reports')
      .option('--tenant <subdomain>', 'only this tenant')
      .option('--now', 'import at once whatever the time (an operator action, recorded with each import as such)')
      .option('--by <name>', 'who runs it, recorded with each import --now runs (default: the operating system user)'),
    async (ctx, _args, opts) => {
      if (opts.by !== undefined && opts.now !== true) {
        throw new RosterdError(
          'USAGE',
          "--by names who runs import run --now, recorded with each import it runs; without --now the imports are the schedule's and record no one",
        );
      }
      const requestedBy = operator(opts);
      const mark = await outboxMark(ctx);
      // What each import did, for its line: told by the scheduler as each outcome is recorded.
      const outcomes: Outcomes = new Map();
      const summary = await processPending(
        {
          ...importContext(ctx),
          claimedBy: `cli:${os.hostname()}:${process.pid}`,
          onImported: (record) => outcomes.set(record.id, { counts: record.counts, message: record.message }),
        },
        {
          ...(typeof opts.tenant === 'string' ? { tenant: opts.tenant } : {}),
          now: opts.now === true,
          requestedBy,
          // Ctrl-C: the running import rolls back and its upload is pending again, not a failed
          // attempt (left claimed, it would wait CLAIM_TTL_SECONDS and count toward IMPORT_MAX_ATTEMPTS).
          ...(ctx.interrupted ? { signal: ctx.interrupted, interruptRunning: true } : {}),
        },
      );
      // Interrupted while importing, the operator wants out: the reports of what was done stay
      // queued for rosterd serve (sendReports begins none). Interrupted while sending them, the
      // ones not sent do.
      const duringImports = interruptedBy(ctx);
      const handled = [...summary.imported, ...summary.superseded, ...summary.retried, ...summary.failed, ...summary.interrupted];
      const mail = await sendReports(ctx, { mark, uploadIds: handled.map((u) => u.id) });
      const signal = duringImports ?? interruptedBy(ctx);
      if (signal !== undefined) {
        const last =
          duringImports !== undefined
            ? describeInterruption(signal, summary)
            : `interrupted (${signal}) while sending reports: the imports above are done; the reports not sent stay queued for rosterd serve`;
        const text = [describe(summary, mail, outcomes, duringImports !== undefined), last].join('\n');
        return { json: { ...summary, reports: mail, interruptedBy: signal }, text, exitCode: signalExitCode(signal) };
      }
      // A named tenant that is suspended imports nothing: the operator asked for something not done.
      const suspended = summary.skipped.some(isSuspendedSkip);
      // An import whose file was refused whole changed nothing, nor did an attempt of this run
      // that ended without an outcome, or failed for good, as a script calling this must see.
      // Another process's attempts this run found ended (a killed importer's, of any tenant) are
      // said, not counted. Held, or completed with row errors, an import did what an import does:
      // its report says the rest.
      const refused = summary.imported.some((i) => i.status === 'failed');
      const ended = [...summary.retried, ...summary.failed].some((u) => !isTakenBack(u));
      const failed = summary.errors.length > 0 || suspended || refused || ended;
      return { json: { ...summary, reports: mail }, text: describe(summary, mail, outcomes), exitCode: failed ? 1 : 0 };
    },
    { dataDir: 'exist', interruptible: true }, // the received copies are read from DATA_DIR
  );
}

/** The last line after a Ctrl-C: what became of the import it stopped. */
function describeInterruption(signal: NodeJS.Signals, s: ProcessSummary): string {
  const stopped = s.interrupted.map((i) => `import ${i.id} (${i.tenant} ${i.file})`);
  return stopped.length > 0
    ? `interrupted (${signal}): ${stopped.join(', ')} rolled back, nothing changed; ` +
        'the upload is pending again and will be imported at the next run'
    : `interrupted (${signal}): stopped before the next upload; the uploads not imported stay pending and will be imported at the next run`;
}

function describe(s: ProcessSummary, mail: CliDelivery, outcomes: Outcomes, interrupted = false): string {
  const lines: string[] = [];
  for (const i of s.imported) {
    lines.push(`${i.status.padEnd(21)} ${i.id}  ${i.tenant}  ${i.file}  ${outcomeInBrief(i, outcomes.get(i.id))}`.trimEnd());
  }
  for (const i of s.superseded) lines.push(`${'superseded'.padEnd(21)} ${i.id}  ${i.tenant}  ${i.file}`);
  const why = (i: ProcessedUpload) => (i.reason === undefined ? '' : `  (${i.reason})`);
  for (const i of s.retried) lines.push(`${'will retry'.padEnd(21)} ${i.id}  ${i.tenant}  ${i.file}${why(i)}`);
  for (const i of s.failed) lines.push(`${'failed (attempts)'.padEnd(21)} ${i.id}  ${i.tenant}  ${i.file}${why(i)}`);
  for (const k of s.skipped) lines.push(`${k.tenant}: nothing imported: ${k.reason}`);
  for (const r of s.running) lines.push(`${r.tenant}: nothing imported: ${describeRunning(r)}`);
  for (const w of s.waiting) {
    const opens = DateTime.fromJSDate(w.opensAt, { zone: w.timezone }).toFormat('yyyy-MM-dd HH:mm ZZZZ');
    lines.push(`${w.tenant}: ${w.pending} pending, waiting for its window (opens ${opens}); --now imports them at once`);
  }
  for (const w of s.onHold)
    lines.push(
      `${w.tenant}: ${w.pending} pending, waiting until the held users.csv is decided ("rosterd import approve ${w.heldId}" or "rosterd import reject ${w.heldId}")`,
    );
  for (const w of s.settling) {
    // In the tenant's zone, as the window's opening above is: the operator compares it with the district's night.
    const after = DateTime.fromJSDate(w.until, { zone: w.timezone }).toFormat('yyyy-MM-dd HH:mm:ss ZZZZ');
    lines.push(`${w.tenant}: ${w.pending} pending, still arriving; taken after ${after}`);
  }
  for (const e of s.errors) lines.push(`${e.tenant}: could not import: ${e.message}`);
  if (lines.length === 0 && !interrupted) lines.push('nothing pending');
  const reports = describeDelivery(mail);
  if (reports !== null) lines.push(reports);
  return lines.join('\n');
}

/**
 * What an import did, on its line: its counts, or why it was refused or held (without the
 * commands of the hold message: import show and the report give those). `import show ID` has the rest.
 */
function outcomeInBrief(i: ProcessedUpload, outcome: Outcome | undefined): string {
  const message = outcome?.message ?? null;
  const c = outcome?.counts ?? null;
  if (i.status === 'failed' || c === null) return message ? oneLine(message) : '';
  if (i.status === 'held') return message ? oneLine(holdFacts(message) ?? message) : '';
  // The counts that are not zero, as the report words them (plural: 1 membership, 2 memberships).
  const kept = (parts: Array<[number, string]>) =>
    parts
      .filter(([n]) => n > 0)
      .map(([n, what]) => `${formatCount(n)} ${what}`)
      .join(', ');
  const changes = isGroupsFile(i.file)
    ? kept([
        [c.created, `${c.created === 1 ? 'membership' : 'memberships'} added`],
        [c.unchanged, 'unchanged'],
        [c.deactivated, 'removed'],
      ])
    : kept([
        [c.created, 'created'],
        [c.updated, 'updated'],
        [c.unchanged, 'unchanged'],
        [c.deactivated, 'deactivated'],
        [c.reactivated, 'reactivated'],
      ]);
  const issues = [c.errors > 0 ? plural(c.errors, 'error') : '', c.warnings > 0 ? plural(c.warnings, 'warning') : '']
    .filter(Boolean)
    .join(', ');
  return [`rows ${formatCount(c.rows)}${changes ? `: ${changes}` : ''}`, issues].filter(Boolean).join('; ');
}

type Outcome = Pick<ImportRecord, 'counts' | 'message'>;
type Outcomes = Map<string, Outcome>;

const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

/**
 * An import another process runs: by whom, and until when its claim lasts. A killed process's claim
 * was taken back by this run already; one whose host vanished keeps it until then.
 */
function describeRunning(r: ProcessSummary['running'][number]): string {
  const until = r.claimExpiresAt
    ? `; its claim lasts until ${r.claimExpiresAt.toISOString()} (renewed while it runs; if that process's machine is gone, ` +
      'the upload is retried after then)'
    : '';
  return `an import is running: ${r.file} ${r.id}, claimed by ${r.claimedBy ?? 'an unknown process'}${until}`;
}
