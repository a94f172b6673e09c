/**
 * Renders an import report (PRODUCT.md §6) into a mail message: subject, text and HTML bodies,
 * and CSV attachments (all errors; the warnings when the body cannot list them all; for a held import,
 * the users it would deactivate).
 * Pure: no I/O, no clock.
 */
import type { ImportIssue } from '../import/types.js';
import { toCsv } from './csv.js';
import { renderHtml } from './html.js';
import { buildModel, maskIssue } from './model.js';
import { renderText } from './text.js';
import type { MailAttachment, MailMessage, ReportInput } from './types.js';

export function renderReport(input: ReportInput): MailMessage {
  const model = buildModel(input);
  const attachments: MailAttachment[] = [];
  const issues = (name: string | null, list: readonly ImportIssue[]): void => {
    if (!name) return;
    attachments.push({
      filename: name,
      contentType: 'text/csv; charset=utf-8',
      content: toCsv(
        ['line', 'column', 'value', 'message'],
        list.map(maskIssue).map((i) => [i.line, i.column, i.value, i.message]),
      ),
    });
  };
  issues(model.errorsAttachment, input.import.errors);
  issues(model.warningsAttachment, input.import.warnings);
  if (model.deactivateAttachment && input.wouldDeactivate) {
    attachments.push({
      filename: model.deactivateAttachment,
      contentType: 'text/csv; charset=utf-8',
      content: toCsv(
        ['username', 'email', 'first name', 'last name', 'sis id'],
        input.wouldDeactivate.map((u) => [u.username, u.email, u.firstName, u.lastName, u.sisId]),
      ),
    });
  }
  return {
    from: input.from,
    to: [...input.tenant.adminEmails],
    subject: model.subject,
    text: renderText(model),
    html: renderHtml(model),
    attachments,
    headers: {
      'Auto-Submitted': 'auto-generated',
      'X-Rosterd-Tenant': input.tenant.subdomain,
      'X-Rosterd-Import': input.import.id,
    },
  };
}
