/**
 * CSV for attachments that a school administrator opens in a spreadsheet: RFC 4180 quoting, CRLF,
 * a UTF-8 BOM (so Excel reads accents right) and no cell that a spreadsheet would run as a formula
 * (OWASP "CSV injection"): a cell starting with = + - @ tab or CR, also after leading blanks, gets a
 * leading apostrophe, which spreadsheets show as text.
 */

const FORMULA_START = /^(?:[\t\r]|\s*[=+\-@])/;
const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;

export type CsvValue = string | number | null | undefined;

export function csvCell(value: CsvValue): string {
  let text = value === null || value === undefined ? '' : String(value);
  if (FORMULA_START.test(text)) text = `'${text}`;
  return NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(header: readonly string[], rows: Iterable<readonly CsvValue[]>): string {
  return boundedCsv(header, rows, Infinity).content;
}

/**
 * Most mail servers refuse messages over 10 MB (Postfix's and Exchange's defaults), and base64
 * makes an attachment a third larger: a report's attachment holds rows up to this many bytes, so
 * that the report of any import fits (the body says when it holds only the first ones).
 */
export const MAX_ATTACHMENT_BYTES = 2_000_000;

/** toCsv of the first rows that fit in `maxBytes` (UTF-8), and how many that is. */
export function boundedCsv(
  header: readonly string[],
  rows: Iterable<readonly CsvValue[]>,
  maxBytes = MAX_ATTACHMENT_BYTES,
): { content: string; rows: number } {
  const lines = [header.map(csvCell).join(',')];
  let bytes = Buffer.byteLength(lines[0] ?? '') + 5;
  let n = 0;
  for (const row of rows) {
    const line = row.map(csvCell).join(',');
    bytes += Buffer.byteLength(line) + 2;
    if (bytes > maxBytes) break;
    lines.push(line);
    n++;
  }
  return { content: `\uFEFF${lines.join('\r\n')}\r\n`, rows: n };
}
