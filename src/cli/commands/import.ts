import os from 'node:os';
import type { Command } from 'commander';
import { RosterdError } from '../../errors.js';
import type { ImportContext } from '../../import/execute.js';
import { getImportRecord, listImportRecords, recordJson, type ImportRecord } from '../../import/records.js';
import { approveImport, rejectImport, type OnOutcome } from '../../import/run-import.js';
import { deliverDue, type DeliveryResult } from '../../report/delivery.js';
import { createMailer } from '../../report/mailer.js';
import { enqueueImportReport } from '../../report/import-report.js';
import { withNextTick } from '../../schedule/next-tick.js';
import { withOperatorView, type ImportView } from '../../schedule/operator-view.js';
import { getTenant } from '../../store/tenants.js';
import { systemClock } from '../../types.js';
import { interruptedBy, intOption, leaf, table, type CliContext } from '../context.js';
import { signalExitCode } from '../signals.js';

/** Issues shown in text output; --json has them all. */
const SHOWN_ISSUES = 50;

export function importContext(ctx: CliContext): ImportContext {
  return { pool: ctx.pool, logger: ctx.logger, clock: systemClock, config: ctx.config };
}

/** Who runs the command, for the record of an approval, a rejection or an import run --now. */
export function operator(opts: Record<string, unknown> = {}): string {
  if (typeof opts.by === 'string' && opts.by.trim() !== '') return opts.by.trim();
  return `${process.env.SUDO_USER ?? os.userInfo().username}@${os.hostname()}`;
}

/** The report is queued in the transaction that records the outcome (so neither exists without the other). */
function queueReport(ctx: CliContext): OnOutcome {
  return (client, record) =>
    enqueueImportReport(client, record, { from: ctx.config.MAIL_FROM, now: systemClock.now() }).then(() => undefined);
}

/** What became of the reports an operator's command queued. */
export interface CliDelivery extends DeliveryResult {
  /** reports left in the outbox for `rosterd serve` to send */
  queued: number;
}

/**
 * The command's own reports: those queued after `mark` (outboxMark, taken before the command's
 * work) for the uploads it handled. The outbox may hold others, a daemon's or an earlier run's,
 * which are not this command's to count.
 */
export interface OwnReports {
  mark: string;
  uploadIds: readonly string[];
}

/** The outbox's last id now: reports queued later are newer. */
export async function outboxMark(ctx: CliContext): Promise<string> {
  const { rows } = await ctx.pool.query<{ id: string }>('SELECT coalesce(max(id), 0)::text AS id FROM outbox');
  return rows[0]?.id ?? '0';
}

/**
 * Sends the reports waiting in the outbox as the operator's command finishes, but only through an
 * SMTP_URL given to the command itself. Without one, this shell's settings say nothing about the
 * daemon's: writing the reports as .eml files here would mark them sent while the daemon, which
 * may have a mail server, never mails them. They stay queued, and `rosterd serve` sends them
 * within seconds (DELIVERY_POLL_MS), through its own settings. Counts only the command's own.
 */
export async function sendReports(ctx: CliContext, own: OwnReports): Promise<CliDelivery> {
  if (ctx.config.SMTP_URL !== undefined) {
    const mailer = createMailer(ctx.config);
    // Ctrl-C stops before the next message; the ones not begun stay queued for rosterd serve.
    await deliverDue(importContext(ctx), mailer, ctx.interrupted ? { signal: ctx.interrupted } : {}).finally(() => mailer.close());
  }
  // Not tried yet: queued (interrupted, or past deliverDue's batch); tried and refused: retried later.
  const { rows } = await ctx.pool.query<CliDelivery>(
    `SELECT count(*) FILTER (WHERE status = 'sent')::int AS sent,
            count(*) FILTER (WHERE status = 'pending' AND attempts > 0)::int AS failed,
            count(*) FILTER (WHERE status = 'pending' AND attempts = 0)::int AS queued
       FROM outbox WHERE id > $1::bigint AND upload_id = ANY($2::uuid[])`,
    [own.mark, own.uploadIds],
  );
  return rows[0] ?? { sent: 0, failed: 0, queued: 0 };
}

/** The line that tells the operator where the reports went. */
export function describeDelivery(mail: CliDelivery): string | null {
  if (mail.queued > 0) {
    const sent = mail.sent + mail.failed > 0 ? `${mail.sent} sent, ` : '';
    return `reports: ${sent}${mail.queued} queued; rosterd serve sends them within seconds (as .eml files in DATA_DIR/outbox without SMTP_URL)`;
  }
  if (mail.sent + mail.failed === 0) return null;
  return `reports: ${mail.sent} sent${mail.failed ? `, ${mail.failed} not sent (retried later)` : ''}`;
}

/** Import records with when the scheduler of `rosterd serve`, on this configuration, takes them. */
function operatorView(ctx: CliContext, records: ImportRecord[]): Promise<ImportView[]> {
  return withNextTick(ctx.config.SCHEDULE_CRON, (nextTick) =>
    withOperatorView(ctx.pool, records, systemClock.now(), { nextTick, settleMs: ctx.config.SETTLE_SECONDS * 1000 }),
  );
}

/** `import list | show | approve | reject`; returns the `import` command so `import run` can join it. */
export function registerImportCommands(program: Command): Command {
  const imp = program.command('import').description('imports: list, show, approve or reject held ones');

  leaf(
    imp
      .command('list')
      .description('imports, newest first')
      .option('--tenant <subdomain>', 'only this tenant')
      .option('--limit <n>', 'at most this many (default 50)'),
    async (ctx, _args, opts) => {
      if (typeof opts.tenant === 'string') await getTenant(ctx.pool, opts.tenant);
      const found = await listImportRecords(ctx.pool, {
        ...(typeof opts.tenant === 'string' ? { tenant: opts.tenant } : {}),
        limit: intOption(opts.limit, '--limit', 1) ?? 50,
      });
      const records = await operatorView(ctx, found);
      return {
        json: records.map(recordJson),
        text: records.length === 0 ? 'no imports yet' : listTable(records),
      };
    },
  );

  leaf(imp.command('show <id>').description('one import: counts, errors and warnings'), async (ctx, [id]) => {
    const found = await getImportRecord(ctx.pool, id ?? '');
    if (!found) throw new RosterdError('IMPORT_NOT_FOUND', `no import has the ID "${id}"; "rosterd import list" shows them`);
    const [record] = await operatorView(ctx, [found]);
    return { json: recordJson(record ?? found), text: describeRecord(record ?? found) };
  });

  leaf(
    imp
      .command('approve <id>')
      .description('apply a held import, computed against the roster as it stands now')
      .option('--by <name>', 'who approves (default: the operating system user)'),
    async (ctx, [id], opts) => {
      const mark = await outboxMark(ctx);
      let record: ImportRecord;
      try {
        record = await approveImport(importContext(ctx), id ?? '', {
          approvedBy: operator(opts),
          onOutcome: queueReport(ctx),
          ...(ctx.interrupted ? { signal: ctx.interrupted } : {}),
        });
      } catch (err) {
        const signal = interruptedBy(ctx);
        if (!(err instanceof RosterdError && err.code === 'IMPORT_INTERRUPTED') || signal === undefined) throw err;
        // A Ctrl-C before the approval found the import says nothing of its status: read it.
        const status = await getImportRecord(ctx.pool, id ?? '').then(
          (r) => r?.status ?? null,
          () => undefined,
        );
        const now =
          status === 'held'
            ? `it is still held, and "rosterd import approve ${id}" applies it`
            : status === null
              ? 'no import has this ID'
              : status === undefined
                ? `"rosterd import show ${id}" shows its status`
                : `it is ${status}`;
        return {
          json: { id, ...(status ? { status } : {}), interruptedBy: signal },
          text: `interrupted (${signal}): import ${id} was not approved, nothing was changed; ${now}`,
          exitCode: signalExitCode(signal),
        };
      }
      // Interrupted after the approval committed: it stands; the report not sent stays queued for rosterd serve.
      const mail = await sendReports(ctx, { mark, uploadIds: [record.id] });
      const signal = interruptedBy(ctx);
      const text = [
        `approved by ${record.approvedBy ?? '?'}`,
        describeRecord(record),
        describeDelivery(mail),
        signal === undefined ? null : `interrupted (${signal}) after the approval: the import above is done`,
      ];
      return {
        json: { ...recordJson(record), reports: mail, ...(signal === undefined ? {} : { interruptedBy: signal }) },
        text: text.filter((l) => l !== null).join('\n'),
        ...(signal === undefined ? {} : { exitCode: signalExitCode(signal) }),
      };
    },
    // the received copy is read from DATA_DIR; Ctrl-C rolls the approval back at once (src/import/interrupt.ts)
    { dataDir: 'exist', interruptible: true },
  );

  leaf(
    imp
      .command('reject <id>')
      .description('discard a held import; nothing is applied')
      .option('--by <name>', 'who rejects (default: the operating system user)'),
    async (ctx, [id], opts) => {
      const mark = await outboxMark(ctx);
      const record = await rejectImport(importContext(ctx), id ?? '', {
        by: operator(opts),
        onOutcome: queueReport(ctx),
      });
      const mail = await sendReports(ctx, { mark, uploadIds: [record.id] });
      const text = [`rejected by ${record.rejectedBy ?? '?'}: nothing was applied`, describeRecord(record), describeDelivery(mail)];
      return { json: { ...recordJson(record), reports: mail }, text: text.filter((l) => l !== null).join('\n') };
    },
  );
  return imp;
}

function listTable(records: ImportView[]): string {
  return [rows(records), ...whyNoNextRun(records)].join('\n');
}

/**
 * Under the table, why each pending upload without a NEXT RUN has none (a suspended tenant, a held
 * users.csv to decide, a SCHEDULE_CRON that never fires inside the window). Its "-" alone read
 * like a finished import's, and the reason was only in --json and `import show`.
 */
function whyNoNextRun(records: ImportView[]): string[] {
  const waiting = records.filter((r) => r.status === 'pending' && r.schedule.nextRunAt === null && r.schedule.note !== null);
  return waiting.length === 0 ? [] : ['', ...waiting.map((r) => `${r.id}: ${r.schedule.note ?? ''}`)];
}

function rows(records: ImportView[]): string {
  return table(
    [
      'ID',
      'TENANT',
      'FILE',
      'RECEIVED',
      'STATUS',
      'WINDOW',
      'NEXT RUN',
      'REPORT',
      'MODE',
      'COUNTS OF',
      'ROWS',
      'CREATED',
      'UPDATED',
      'UNCHANGED',
      'DEACT',
      'REACT',
      'ERRORS',
      'WARNINGS',
    ],
    records.map((r) => [
      r.id,
      r.tenant,
      r.file,
      r.receivedAt,
      r.status,
      `${r.schedule.window} ${r.schedule.windowOpen ? 'open' : 'closed'}`,
      r.schedule.nextRunAt,
      r.report ? `${r.report.status}${r.report.attempts > 1 ? ` (${r.report.attempts} tries)` : ''}` : null,
      r.mode,
      r.counted,
      r.counts.rows,
      r.counts.created,
      r.counts.updated,
      r.counts.unchanged,
      r.counts.deactivated,
      r.counts.reactivated,
      r.counts.errors,
      r.counts.warnings,
    ]),
  );
}

/** A person's view of one import record (also what `validate` prints). */
export function describeRecord(r: ImportRecord | ImportView, title = `import ${r.id}`): string {
  const c = r.counts;
  const lines = [
    `${title}  ${r.tenant}  ${r.file}`,
    `status:    ${r.status}${r.mode ? ` (${r.mode} sync)` : ''}`,
    `file:      ${r.bytes} bytes, sha256 ${r.sha256}${r.encoding ? `, read as ${r.encoding}` : ''}`,
    `received:  ${r.receivedAt}`,
  ];
  if (r.finishedAt) lines.push(`finished:  ${r.finishedAt}${r.durationMs !== null ? ` (${r.durationMs} ms)` : ''}`);
  if (r.requestedBy) lines.push(`run now:   by ${r.requestedBy} (rosterd import run --now, whatever the window)`);
  if (r.approvedBy) lines.push(`approved:  by ${r.approvedBy} at ${r.approvedAt ?? '?'}`);
  if (r.rejectedBy) lines.push(`rejected:  by ${r.rejectedBy} at ${r.rejectedAt ?? '?'}`);
  if (r.supersededBy) lines.push(`replaced:  by the newer import ${r.supersededBy}`);
  // A file refused whole applied nothing: a row of zeros would read as a file of no users.
  if (r.status === 'failed')
    lines.push(`counts:    nothing applied${c.rows > 0 ? ` (${c.rows} rows read before the file was refused)` : ''}`);
  else
    lines.push(
      r.counted === 'memberships'
        ? `counts:    rows ${c.rows}, memberships added ${c.created}, unchanged ${c.unchanged}, removed ${c.deactivated}, ` +
            `errors ${c.errors}, warnings ${c.warnings} (a groups.csv creates and deactivates no user)`
        : `counts:    rows ${c.rows}, created ${c.created}, updated ${c.updated}, unchanged ${c.unchanged}, ` +
            `deactivated ${c.deactivated}, reactivated ${c.reactivated}, errors ${c.errors}, warnings ${c.warnings}`,
    );
  if ('schedule' in r) {
    lines.push(`window:    ${r.schedule.window} ${r.schedule.timezone} (${r.schedule.windowOpen ? 'open now' : 'closed now'})`);
    if (r.schedule.note) lines.push(`next:      ${r.schedule.note}`);
    if (r.report) {
      const rep = r.report;
      lines.push(
        `report:    ${rep.status} to ${rep.to.join(', ')}` +
          (rep.sentAt ? ` at ${rep.sentAt}` : '') +
          (rep.status === 'pending' && rep.nextAttemptAt ? `, next attempt ${rep.nextAttemptAt}` : '') +
          (rep.lastError ? ` (last error: ${rep.lastError})` : ''),
      );
    }
  }
  if (r.attempts > 0 && r.lastAttemptError) lines.push(`attempts:  ${r.attempts} failed (last: ${r.lastAttemptError})`);
  // The error that refused the file is its message, said once, with its line.
  const fileError = r.message ? r.errors.find((i) => i.message === r.message) : undefined;
  if (r.message) lines.push('', fileError !== undefined && fileError.line > 0 ? `line ${fileError.line}: ${r.message}` : r.message);
  // Once approved, the counts say what was done: the list was what the file would have done then.
  const undecided =
    r.status === 'held' ? 'would deactivate' : r.status === 'rejected' || r.status === 'superseded' ? 'would have deactivated' : null;
  if (undecided !== null && r.heldDeactivations && r.heldDeactivations.length > 0) {
    const shown = r.heldDeactivations.slice(0, SHOWN_ISSUES);
    lines.push(
      '',
      `${undecided} (${r.heldDeactivations.length}): ${shown.join(', ')}${shown.length < r.heldDeactivations.length ? ', …' : ''}`,
    );
    // A school missing from the export shows at once, as in the held report.
    if (r.heldBySchool && r.heldBySchool.length > 0)
      lines.push(`by school: ${r.heldBySchool.map(({ school, users }) => `${school ?? 'no school'} ${users}`).join(', ')}`);
  }
  if (undecided !== null && r.heldRemovals && r.heldRemovals.length > 0) {
    const shown = r.heldRemovals.slice(0, SHOWN_ISSUES).map((m) => `${m.username} from ${m.group}`);
    const verb = r.status === 'held' ? 'would remove' : 'would have removed';
    lines.push('', `${verb} (${r.heldRemovals.length}): ${shown.join(', ')}${shown.length < r.heldRemovals.length ? ', …' : ''}`);
  }
  for (const [title, issues] of [
    ['errors', r.errors.filter((i) => i !== fileError)],
    ['warnings', r.warnings],
  ] as const) {
    if (issues.length === 0) continue;
    lines.push(
      '',
      `${title}:`,
      table(
        ['LINE', 'USERNAME', 'COLUMN', 'VALUE', 'MESSAGE'],
        // Line 0 is the whole file, as the report email shows it.
        issues.slice(0, SHOWN_ISSUES).map((i) => [i.line > 0 ? i.line : 'file', i.username, i.column, i.value, i.message]),
      ),
    );
    const total = title === 'errors' ? c.errors - (fileError ? 1 : 0) : c.warnings;
    if (total > SHOWN_ISSUES) lines.push(`… ${total - Math.min(SHOWN_ISSUES, issues.length)} more (--json lists ${issues.length})`);
  }
  return lines.join('\n');
}
