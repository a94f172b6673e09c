/**
 * Renders an import report (PRODUCT.md §6) into a mail message: subject, text and HTML bodies,
 * and CSV attachments (all errors; the warnings when the body cannot list them all; for a held import,
 * the users it would deactivate, or the memberships a held groups.csv would remove).
 * Pure: no I/O, no clock.
 */
import type { ImportIssue } from '../import/types.js';
import { boundedCsv, type CsvValue } from './csv.js';
import { renderHtml } from './html.js';
import { buildModel, maskIssue } from './model.js';
import { renderText } from './text.js';
import type { MailAttachment, MailMessage, ReportInput } from './types.js';

export function renderReport(input: ReportInput): MailMessage {
  // The username next to the line: what the administrator looks the row up by in the SIS.
  const header = ['line', 'username', 'column', 'value', 'message'];
  // An issue about the whole file (line 0: its encoding, a file refused whole) is on line "file", as
  // the body and `rosterd validate` say: a line 0 is in no spreadsheet.
  const issueRows = (list: readonly ImportIssue[]): Array<readonly CsvValue[]> =>
    list.map(maskIssue).map((i) => [i.line > 0 ? i.line : 'file', i.username, i.column, i.value, i.message]);
  const errors = boundedCsv(header, issueRows(input.import.errors));
  const warnings = boundedCsv(header, issueRows(input.import.warnings));
  const model = buildModel(input, { errors: errors.rows, warnings: warnings.rows });
  const attachments: MailAttachment[] = [];
  const attach = (name: string | null, content: string): void => {
    if (name) attachments.push({ filename: name, contentType: 'text/csv; charset=utf-8', content });
  };
  attach(model.errorsAttachment, errors.content);
  attach(model.warningsAttachment, warnings.content);
  if (model.deactivateAttachment && input.wouldDeactivate) {
    // The hold's own list: cut, the body's advice to check it still holds for what it shows.
    const list = boundedCsv(
      ['username', 'email', 'first name', 'last name', 'school', 'sis id'],
      input.wouldDeactivate.map((u) => [u.username, u.email, u.firstName, u.lastName, u.school, u.sisId]),
    );
    attach(model.deactivateAttachment, list.content);
  }
  if (model.deactivateAttachment && input.wouldRemove) {
    const list = boundedCsv(
      ['group', 'owner', 'username'],
      input.wouldRemove.map((m) => [m.group, m.owner, m.username]),
    );
    attach(model.deactivateAttachment, list.content);
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
