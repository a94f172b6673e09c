/**
 * Broken-file detection: whatever makes a whole file unreadable as CSV fails the import with one
 * message a school administrator understands, saying what to do (issue 3, step 1).
 */
import { FileRejectedError } from '../types.js';

/** A cell longer than this is a row error (its value is not kept). */
export const MAX_FIELD_CHARS = 10_000;
/**
 * A record (one row, all of its fields) longer than this fails the file: memory stays bounded, and
 * in practice only a quote that is never closed swallows this much.
 */
export const MAX_RECORD_CHARS = 1_000_000;

const SAVE_AS_CSV = 'Open it in Excel (or your SIS) and save it as "CSV UTF-8 (Comma delimited)", then upload that file.';

const UPLOAD_CSV = 'Upload the CSV file itself, not the compressed one.';

/** A CSV file compressed (gzip, or a ZIP archive holding one): unpacked, it may be just right. */
export class CompressedCsvError extends FileRejectedError {}

/** Looks at the first bytes of the file (after a UTF-8 BOM) for things that are not CSV text. */
export function sniffHead(head: Buffer): void {
  const starts = (...bytes: number[]): boolean => bytes.every((b, i) => head[i] === b);
  if (starts(0x50, 0x4b, 0x03, 0x04)) {
    const zip = zipMessage(zipEntries(head));
    throw zip.csv ? new CompressedCsvError(zip.message) : new FileRejectedError(zip.message);
  }
  if (starts(0x1f, 0x8b)) {
    throw new CompressedCsvError(`The file is compressed (gzip, a .gz file) with a .csv name, not a CSV file. ${UPLOAD_CSV}`);
  }
  if (starts(0xd0, 0xcf, 0x11, 0xe0)) {
    throw new FileRejectedError(`The file is an old-format Excel workbook (.xls) saved with a .csv name, not a CSV file. ${SAVE_AS_CSV}`);
  }
  // Read as UTF-16 where it is found first (decode.ts): here only when that was not done.
  if (utf16Of(head) !== undefined) {
    throw new FileRejectedError(`The file is saved as UTF-16 ("Unicode Text"), not as CSV. ${SAVE_AS_CSV}`);
  }
  if (starts(0x25, 0x50, 0x44, 0x46)) {
    throw new FileRejectedError(`The file is a PDF document, not a CSV file. ${SAVE_AS_CSV}`);
  }
  const text = head.subarray(0, 256).toString('latin1').trimStart().toLowerCase();
  if (text.startsWith('{\\rtf')) {
    throw new FileRejectedError(`The file is a Rich Text (RTF) document, not a CSV file. ${SAVE_AS_CSV}`);
  }
  if (text.startsWith('<')) {
    throw new FileRejectedError(
      'The file is a web page (HTML or XML), not a CSV file. It may be an error page saved by mistake. ' +
        'Export the roster from your SIS as CSV (comma-separated values) and upload it again.',
    );
  }
}

/**
 * A ZIP archive is many things: an Excel workbook (.xlsx), a LibreOffice spreadsheet (.ods), an
 * Apple Numbers one (.numbers), or users.csv compressed. Each needs different advice, and the
 * names of the entries at the start of the archive tell them apart.
 */
function zipMessage(zip: ZipHead): { message: string; csv: boolean } {
  const document = documentMessage(zip);
  if (document !== undefined) return { message: document, csv: false };
  // macOS's Compress adds each file's resource fork under __MACOSX/ (as ._NAME), and may add a
  // .DS_Store: neither is something the district put there.
  const files = zip.names.filter((n) => !n.endsWith('/') && !n.startsWith('__MACOSX/') && !/(?:^|\/)\.DS_Store$/.test(n));
  const csv = files.find((n) => /\.(?:csv|txt)$/i.test(n));
  const shown = (name: string): string => (files.length > 1 ? `${name} and other files` : name);
  if (csv !== undefined) {
    const unzipped = csv.slice(csv.lastIndexOf('/') + 1);
    const message = `The file is a ZIP archive (a compressed file) holding ${shown(csv)}, not a CSV file. Unzip it and upload ${unzipped} itself.`;
    return { message, csv: true };
  }
  const holding = files[0] === undefined ? '' : ` holding ${shown(files[0])}`;
  const message =
    `The file is a ZIP archive (a compressed file)${holding}, not a CSV file. Unzip it and upload the roster as a CSV file ` +
    '(a spreadsheet saved as "CSV UTF-8 (Comma delimited)" in Excel).';
  return { message, csv: false };
}

/** What a ZIP archive is when it is a document (a spreadsheet, a Word file), or undefined. */
function documentMessage(zip: ZipHead): string | undefined {
  const { names, mimetype } = zip;
  const odf = 'application/vnd.oasis.opendocument.';
  if (mimetype === `${odf}spreadsheet`) {
    return (
      'The file is an OpenDocument spreadsheet (.ods, as LibreOffice Calc saves it) with a .csv name, not a CSV file. ' +
      'Open it in LibreOffice Calc and save it as "Text CSV (.csv)", with the character set UTF-8 and a comma as the field ' +
      'delimiter, then upload that file.'
    );
  }
  if (mimetype?.startsWith(odf)) {
    return (
      'The file is an OpenDocument file (from LibreOffice or OpenOffice) but not a spreadsheet, and not a CSV file. ' +
      'Export the roster from your SIS as CSV (comma-separated values) and upload it again.'
    );
  }
  if (names.some((n) => n.startsWith('Index/') && n.endsWith('.iwa'))) {
    return (
      'The file is an Apple Numbers spreadsheet (.numbers) with a .csv name, not a CSV file. Open it in Numbers and ' +
      'export it as CSV (File > Export To > CSV, text encoding Unicode (UTF-8)), then upload that file.'
    );
  }
  const officeParts = names.some((n) => n === '[Content_Types].xml' || n.startsWith('_rels/') || n.startsWith('docProps/'));
  if (names.some((n) => n.startsWith('word/')) && !names.some((n) => n.startsWith('xl/'))) {
    return (
      'The file is a Word document (.docx) with a .csv name, not a CSV file. ' +
      'Export the roster from your SIS as CSV (comma-separated values) and upload it again.'
    );
  }
  // An Office file whose part folders start past the head: in a roster's place, a workbook.
  if (officeParts || names.some((n) => n.startsWith('xl/'))) {
    return `The file is an Excel workbook (.xlsx) saved with a .csv name, not a CSV file. ${SAVE_AS_CSV}`;
  }
  return undefined;
}

interface ZipHead {
  /** names of the entries whose headers are in the head, in archive order */
  names: string[];
  /** an OpenDocument file's first entry, `mimetype`, stored uncompressed: what the file is */
  mimetype?: string;
}

const ZIP_ENTRY = Buffer.from([0x50, 0x4b, 0x03, 0x04]);

/**
 * The entries of a ZIP archive that start in `head`, from their local file headers. An entry whose
 * size comes after its data (flag bit 3) is skipped by looking for the next header.
 */
function zipEntries(head: Buffer): ZipHead {
  const out: ZipHead = { names: [] };
  let at = 0;
  while (out.names.length < 50 && at >= 0 && at + 30 <= head.length && head.readUInt32LE(at) === 0x04034b50) {
    const flags = head.readUInt16LE(at + 6);
    const method = head.readUInt16LE(at + 8);
    const size = head.readUInt32LE(at + 18);
    const nameLength = head.readUInt16LE(at + 26);
    const data = at + 30 + nameLength + head.readUInt16LE(at + 28);
    if (at + 30 + nameLength > head.length) break;
    const name = head.subarray(at + 30, at + 30 + nameLength).toString(flags & 0x800 ? 'utf8' : 'latin1');
    if (nameLength === 0 || nameLength > 255 || !/^[^\x00-\x1f\x7f]+$/.test(name)) break;
    if (out.names.length === 0 && name === 'mimetype' && method === 0 && data + size <= head.length) {
      out.mimetype = head.subarray(data, data + size).toString('latin1');
    }
    out.names.push(name);
    at = flags & 0x08 ? head.indexOf(ZIP_ENTRY, data + size) : data + size;
  }
  return out;
}

/**
 * Whether the file is UTF-16, and which byte order: by its byte order mark, or, without one, by
 * its header row, which is ASCII: in UTF-16 every ASCII letter is a NUL byte next to the letter's
 * byte, after it (little-endian, as Windows writes it) or before it.
 */
export function utf16Of(head: Buffer): 'utf-16le' | 'utf-16be' | undefined {
  if (head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  if (head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  const pairs = Math.floor(Math.min(head.length, 1024) / 2);
  if (pairs < 4) return undefined;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < pairs * 2; i += 2) {
    if (head[i] === 0) even++;
    if (head[i + 1] === 0) odd++;
  }
  if (Math.max(even, odd) < pairs / 2 || Math.min(even, odd) > pairs / 10) return undefined;
  return odd > even ? 'utf-16le' : 'utf-16be';
}

const SEPARATORS: ReadonlyArray<[string, string]> = [
  [';', 'semicolons'],
  ['\t', 'tabs'],
  ['|', 'vertical bars (|)'],
];

/**
 * A header read with commas whose fields hide known column names behind another separator
 * (`username;email;password` is one field) is a file saved with the wrong separator. Each name may
 * be quoted: PowerShell's `Export-Csv -UseCulture` in a European locale, and LibreOffice, write
 * `"username";"email"`, which csv-parse reads as one field, quotes and all (a quote that closes
 * before a character other than a comma is kept, as with `"Lee" Jr`).
 */
export function checkSeparator(fields: readonly string[], isKnown: (name: string) => boolean): void {
  for (const [sep, name] of SEPARATORS) {
    for (const field of fields) {
      if (!field.includes(sep)) continue;
      const known = field.split(sep).map(unquoted).filter(isKnown).length;
      if (known >= 2 || (known >= 1 && fields.length === 1)) throw separatedBy(name);
    }
  }
}

/** `"username"` as `username`: a name between double quotes, spaces around them aside. */
function unquoted(name: string): string {
  const quoted = /^\s*"(.*)"\s*$/s.exec(name);
  return quoted === null ? name : (quoted[1] as string).replace(/""/g, '"');
}

function separatedBy(name: string): FileRejectedError {
  return new FileRejectedError(
    `The file is separated by ${name}, not by commas. Save it as comma-separated CSV ` +
      '("CSV UTF-8 (Comma delimited)" in Excel) and upload it again.',
    1,
  );
}

const SEPARATOR_LINE = /^sep=(.)$/is;

/**
 * Whether a file's first record is Excel's separator line, `sep=,`: some exports and hand-made
 * files start with it so that Excel splits the columns at commas whatever its regional settings.
 * Excel takes it as an instruction and does not show it, so it is skipped and not counted: the
 * header is line 1, as in Excel. Read as the header, it made the file fail as having none. A
 * separator line naming another separator (`sep=;`) says the file is not comma-separated.
 */
export function isSeparatorLine(fields: readonly string[]): boolean {
  const found = SEPARATOR_LINE.exec(fields.join(','));
  if (found === null) return false;
  const sep = found[1] as string;
  if (sep === ',') return true;
  throw separatedBy(SEPARATORS.find(([s]) => s === sep)?.[1] ?? `'${sep}'`);
}

const POWERSHELL_TYPE_LINE = /^#TYPE\s+\S/i;

/**
 * Whether a record is the type line Windows PowerShell's `Export-Csv` and `ConvertTo-Csv` write
 * before the header unless told `-NoTypeInformation` (`#TYPE System.Data.DataRow`): an IT script's
 * export starts with it, and the rest is a well-formed CSV. A spreadsheet shows it as its first row,
 * so it is skipped before the header but keeps its line: the header is then line 2, as shown. Read
 * as the header, it failed the file as having none, a message that sent the district looking for a
 * missing header row. No header row begins with `#TYPE `.
 */
export function isPowerShellTypeLine(fields: readonly string[]): boolean {
  return POWERSHELL_TYPE_LINE.test(fields[0] ?? '');
}

export function emptyFile(): FileRejectedError {
  return new FileRejectedError(
    'The file is empty: it has no header row. The first line must name the columns ' +
      '(for example: username,password,email,first name,last name), followed by one line per user.',
  );
}

/**
 * The file stops inside its last line: too few values and no line break after them. That is what
 * a transfer cut off mid-way looks like (a client that still closed the file: Ctrl-C in sftp, a
 * SIS job killed while copying). Importing the rest would treat every user after the cut as gone
 * from the roster, so the whole file fails instead.
 */
export function cutOff(line: number, values: number, width: number): FileRejectedError {
  return new FileRejectedError(
    `The file ends in the middle of line ${line}: it has ${values} of the ${width} values of the header row and no line ` +
      'break after it, as if the upload was cut off. Nothing was changed. Upload the whole file again.',
    line,
  );
}

export function headerOnly(): FileRejectedError {
  return new FileRejectedError(
    'The file has a header row but no data rows. Nothing was imported; check the export from your SIS and upload it again.',
  );
}

export function quoteNotClosed(line: number): FileRejectedError {
  return new FileRejectedError(
    `A quoted value that opens on line ${line} is never closed: a double quote (") is missing. ` +
      `Fix line ${line} and upload the file again.`,
    line,
  );
}

export function recordTooLong(line: number): FileRejectedError {
  return new FileRejectedError(
    `Line ${line} is longer than ${MAX_RECORD_CHARS.toLocaleString('en-US')} characters; ` +
      `most likely a double quote (") opened there is never closed. Fix line ${line} and upload the file again.`,
    line,
  );
}

/**
 * Ragged rows: one row with the wrong number of values is a row error (a stray comma in one
 * record); when more than half of the data rows are ragged, the header does not describe the file
 * and the whole file fails. Decided at the end of the file, which is before the applier commits.
 */
export function checkRagged(ragged: number, rows: number, headerColumns: number): void {
  if (rows > 0 && ragged * 2 > rows) {
    throw new FileRejectedError(
      `Most lines (${ragged} of ${rows}) do not have the same number of values as the header row ` +
        `(${headerColumns} columns), so the file cannot be read reliably. Check that the header row names ` +
        'every column and that values containing commas are in double quotes, then upload the file again.',
    );
  }
}

/**
 * The first data line had more values than the header (blank ones), which made blank extras the
 * file's style, but most lines do not have them: the first line is more likely a value split by
 * an unquoted comma, with every value after it in the wrong column.
 */
export function extrasNotTheStyle(line: number, headerColumns: number): FileRejectedError {
  return new FileRejectedError(
    `Line ${line} has more values than the header row has columns (${headerColumns}), but most lines do not: a value on ` +
      'it with a comma that is not in double quotes (such as Lee, Jr) has probably split in two, putting the values after it ' +
      `in the wrong columns. Nothing was changed. Put such values in double quotes, or remove the extra commas at the end of line ${line}, ` +
      'and upload the file again.',
    line,
  );
}

/** A quoted value with line breaks (see checkLineBreaks in table-reader.ts); its text is not quoted. */
export function valueSpansLines(line: number, column: number, lines: number): FileRejectedError {
  return new FileRejectedError(
    `The value in column ${column} of line ${line} runs over ${lines} lines of the file: a double quote (") opens it and closes ` +
      'only lines later, so the lines in between would be read as one value and their users would be missing. Nothing was changed. ' +
      `Most likely a closing quote is missing on line ${line}, or a value there starts with a quote; fix it and upload the file again.`,
    line,
  );
}
