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
  const lines = [header.map(csvCell).join(',')];
  for (const row of rows) lines.push(row.map(csvCell).join(','));
  return `\uFEFF${lines.join('\r\n')}\r\n`;
}
