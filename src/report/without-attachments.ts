/**
 * A report the mail server refused as too large, made smaller: the same email without its
 * attachments (the error and warning lists, a held import's deactivations), the body saying why
 * and where the lists are (the operator's `rosterd import show`). The body itself is bounded
 * (src/report/model.ts), so it fits where the attachments did not.
 */
import { escapeHtml } from './html.js';
import type { MailMessage } from './types.js';

/** Longest part of the server's reply quoted in the body. */
const REPLY_CHARS = 200;

export function withoutAttachments(message: MailMessage, reply: string, importId: string | null): MailMessage {
  const names = message.attachments.map((a) => a.filename);
  const quoted = reply.replace(/\s+/g, ' ').trim().slice(0, REPLY_CHARS);
  const show = importId === null ? 'can list them' : `can list them with "rosterd import show ${importId}"`;
  const note =
    `This report comes without its attachments (${names.join(', ')}): the mail server refused the email with them as too ` +
    `large ("${quoted}"). Everything they hold was kept: your rosterd operator ${show}.`;
  const leftOut = ' (left out of this email: see the note at the top)';
  let text = message.text;
  let html = message.html;
  for (const name of names) {
    text = text.split(`${name} (attached)`).join(`${name}${leftOut}`);
    html = html.split(`${escapeHtml(name)} (attached)`).join(`${escapeHtml(name)}${escapeHtml(leftOut)}`);
  }
  const notice = `<p style="border:1px solid #c90;padding:6px"><strong>${escapeHtml(note)}</strong></p>`;
  const body = /<body[^>]*>/i.exec(html);
  html = body ? html.slice(0, body.index + body[0].length) + '\n' + notice + html.slice(body.index + body[0].length) : notice + '\n' + html;
  return { ...message, text: `${note}\n\n${text}`, html, attachments: [] };
}
