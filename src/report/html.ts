import { formatCount, type ReportModel } from './model.js';

/** Everything that comes from a file or an operator passes through here before it reaches HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const TD = 'style="padding:2px 12px 2px 0;vertical-align:top"';
/**
 * A cell that holds a value: from the file (a username, a value, a message quoting one) or a long
 * fact (a SHA-256 is one word of 64 characters). A value can be one long word (a name pasted twice,
 * an ID run together) that, unbreakable, set the width of the whole error table: wider than a
 * phone's screen, with the Message column, the one that says what to fix, pushed out of sight and
 * squeezed to a word a line. Here it may break anywhere. Not on labels, line numbers and column
 * names: once the table is narrow they would break needlessly ("Distri" "ct"). word-break is
 * there for the mail clients that do not know overflow-wrap:anywhere yet.
 */
const TD_VALUE = 'style="padding:2px 12px 2px 0;vertical-align:top;overflow-wrap:anywhere;word-break:break-word"';
/** Outside a table the same only breaks a word where it would overflow: for paragraphs and lists. */
const BLOCK = 'style="overflow-wrap:anywhere;word-break:break-word"';
const TH = 'style="padding:2px 12px 2px 0;text-align:left;border-bottom:1px solid #ccc"';

/** The HTML body: the same content as the text body, in tables. */
export function renderHtml(model: ReportModel): string {
  const e = escapeHtml;
  const parts: string[] = [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8"><title>' + e(model.subject) + '</title></head>',
    '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222">',
    `<p ${BLOCK}><strong>${e(model.headline)}</strong></p>`,
    '<table>',
    ...model.facts.map(([label, value]) => `<tr><th ${TD} align="left">${e(label)}</th><td ${TD_VALUE}>${e(value)}</td></tr>`),
    '</table>',
    `<h3>${e(model.countsTitle)}</h3>`,
    '<table>',
    ...model.counts.map(([label, n]) => `<tr><td ${TD}>${e(label)}</td><td ${TD} align="right">${e(formatCount(n))}</td></tr>`),
    '</table>',
  ];
  if (model.errors) {
    parts.push(
      `<h3>${e(model.errors.title)}</h3>`,
      `<table><tr><th ${TH}>Line</th><th ${TH}>Username</th><th ${TH}>Column</th><th ${TH}>Value</th><th ${TH}>Message</th></tr>`,
      ...model.errors.shown.map(
        (x) =>
          `<tr><td ${TD}>${x.line > 0 ? e(String(x.line)) : 'file'}</td><td ${TD_VALUE}>${e(x.username ?? '')}</td><td ${TD}>${e(x.column)}</td>` +
          `<td ${TD_VALUE}>${e(x.value ?? '')}</td><td ${TD_VALUE}>${e(x.message)}</td></tr>`,
      ),
      '</table>',
    );
    if (model.errors.note) parts.push(`<p ${BLOCK}>${e(model.errors.note)}</p>`);
  }
  if (model.warnings) {
    parts.push(
      `<h3>${e(model.warnings.title)}</h3>`,
      `<ul ${BLOCK}>`,
      ...model.warnings.shown.map(
        (w) =>
          `<li>${w.line > 0 ? `line ${e(String(w.line))}${w.username === undefined ? '' : ` (${e(w.username)})`}, ` : ''}` +
          `${w.column ? `${e(w.column)}: ` : ''}${e(w.message)}</li>`,
      ),
      '</ul>',
    );
    if (model.warnings.note) parts.push(`<p ${BLOCK}>${e(model.warnings.note)}</p>`);
  }
  parts.push('<h3>What to do next</h3>', ...model.next.map((p) => `<p ${BLOCK}>${e(p)}</p>`));
  parts.push(
    '<p style="color:#777;font-size:12px">rosterd, the nightly roster import. Reply to your rosterd operator, not to this address.</p>',
  );
  parts.push('</body></html>', '');
  return parts.join('\n');
}
