/**
 * Decoded, parsed CSV records with the line each one is on as a spreadsheet shows it (PRODUCT.md
 * §7: the header is line 1): one line per record, blank lines included (they are records of one
 * empty field, skipped by the readers, and a spreadsheet shows them as empty rows). A cell holding
 * line breaks does not add lines, so after one the numbers differ from a text editor's: the
 * administrator reading the report has the file open in a spreadsheet.
 *
 * Why a hand-written splitter in front of csv-parse. Parsing was the largest single cost of an
 * import (a profile of staging 1M rows: csv-parse 36%), because csv-parse copies every byte into a
 * resizable buffer and decodes every field separately. Most rows of a roster hold no double quote
 * at all, and such a row has exactly one reading under RFC 4180: split the line at commas. So:
 * - a record with no `"` (and not absurdly long) is split here, straight from the decoded text;
 * - every other record (quotes, quoted line breaks, stray `O"Brien` quotes, over-long records,
 *   an unclosed quote at the end) is handed to csv-parse itself, with the options this file has
 *   always used, so csv-parse stays the one authority on quoting, its relaxations and its errors.
 * To hand csv-parse whole records, the splitter must find record boundaries exactly where
 * csv-parse does: `scanRecord` is a transcription of csv-parse's quote state machine (only its
 * states, not its field building) for these options. Consecutive quoted records go to csv-parse
 * in one call, so a file that quotes every field costs what it always did. The differential test
 * (test/unit/import-read-splitter.test.ts) checks records, lines and errors against csv-parse on
 * random inputs and chunkings.
 *
 * Spaces and tabs around a quoted value are not part of it: `ann,Ann,Lee, "Secret-123",x` holds
 * the password Secret-123 (a hand-edited file, or an exporter that writes `", "`), and a header
 * `"Username" ,"Email"` names its columns. csv-parse reads such a quote as a stray one (the value
 * would be ` "Secret-123"`, quotes and all), and its ltrim/rtrim options would also trim unquoted
 * values (which keep their spaces, so that the reader can tell that a password had them) and make
 * `"Lee" Jr` fail the file. So `unpadQuotes` drops just those blanks from the records it hands to
 * csv-parse, and `scanRecord` lets a quote open a value after them. A record without a quote has
 * none to drop: the fast path is unchanged.
 */
import { pipeline, type Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { CsvError } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import { FileRejectedError } from '../types.js';
import { isSeparatorLine, MAX_RECORD_CHARS, quoteNotClosed, recordTooLong } from './csv-guard.js';
import { DecodeStream, type EncodingChoice, type FileEncoding, type RecodedLines } from './decode.js';

export interface CsvRecord {
  /** line as a spreadsheet numbers rows: one per record, the header is 1 */
  line: number;
  /** cells as written (unquoted, not trimmed) */
  fields: string[];
}

export interface RecordSource {
  /** records in file order, in arrays of any size */
  records: AsyncIterable<CsvRecord[]>;
  /** what the file was read as; final once `records` is exhausted */
  encoding(): FileEncoding;
  /** In a `mixed` file, the lines read as Windows-1252. */
  recodedLines(): RecodedLines;
  /** whether the text ends with a line break (CR or LF); final once `records` is exhausted */
  endsWithLineBreak(): boolean;
  /** whether a record's fields were read by csv-parse: only a quoted value can hold a line break */
  parsed(fields: readonly string[]): boolean;
  /**
   * From the next record on, empty fields that end a record are not kept past the first `keep`
   * (a record with fewer fields keeps them all): a header padded with thousands of commas, as a
   * spreadsheet writes it, would otherwise make each row an array of thousands of empty strings.
   */
  dropBlankTails(keep: number): void;
}

export type ByteSource = NodeJS.ReadableStream | Readable;

/** The csv-parse options of users.csv and groups.csv. */
export const CSV_OPTIONS = {
  relax_column_count: true, // ragged rows are judged by the readers, row by row
  relax_quotes: true, // `O"Brien` unquoted is kept as written
  max_record_size: MAX_RECORD_CHARS,
  record_delimiter: ['\r\n', '\n', '\r'],
};

export function toFileError(err: unknown, line: number): unknown {
  if (err instanceof FileRejectedError) return err;
  if (err instanceof CsvError) {
    switch (err.code) {
      case 'CSV_QUOTE_NOT_CLOSED':
        return quoteNotClosed(line);
      case 'CSV_MAX_RECORD_SIZE':
        return recordTooLong(line);
      default:
        return new FileRejectedError(
          `The file could not be read as CSV at line ${line} (${err.message}). Save it as comma-separated CSV and upload it again.`,
          line,
        );
    }
  }
  return err; // I/O and the like: not the file's fault
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
const TAB = 0x09;
/**
 * Longest quote-free line split here. csv-parse's limit counts bytes (at most 3 per UTF-16 unit),
 * so a line this short can never reach it; longer ones go to csv-parse for its exact verdict.
 */
const FAST_MAX = Math.floor(MAX_RECORD_CHARS / 3) - 1;
/** scanRecord: the text ends before the record does (or before its end can be decided) */
const MORE = -1;

/**
 * Where the record starting at `start` ends: the index of its record delimiter (or `text.length`
 * at the end of the input), or MORE. Mirrors csv-parse's quote handling with relax_quotes and
 * escape = quote: a `"` opens a quoted field only as the first character of a field (spaces and
 * tabs before it aside, see unpadQuotes); inside one, `""` is a quote, and a `"` closes it
 * (followed by a delimiter, a line break or the end; followed by anything else it closes it too
 * and is kept, csv-parse's relaxed reading). Outside quotes, CR and LF end the record.
 */
export function scanRecord(text: string, start: number, final: boolean): number {
  const len = text.length;
  let quoting = false;
  let fieldEmpty = true;
  let i = start;
  while (i < len) {
    const c = text.charCodeAt(i);
    if (quoting) {
      if (c === QUOTE) {
        if (i + 1 >= len) {
          if (!final) return MORE; // `""` or a closing quote: the next chunk decides
          quoting = false;
          i++;
          continue;
        }
        const n = text.charCodeAt(i + 1);
        if (n === QUOTE) {
          i += 2;
          continue;
        }
        quoting = false;
        fieldEmpty = false;
        i++;
        continue;
      }
      i++;
      continue;
    }
    if (c === QUOTE) {
      if (fieldEmpty) quoting = true;
      fieldEmpty = false;
      i++;
      continue;
    }
    if (c === COMMA) {
      fieldEmpty = true;
      i++;
      continue;
    }
    if (c === CR || c === LF) return i;
    if (!isBlank(c)) fieldEmpty = false;
    i++;
  }
  if (quoting && !final) return MORE;
  return final ? len : MORE;
}

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB;
}

/** `"x"  ,` `  "x"` and the like: a space or a tab next to a quote (the only places unpadQuotes drops anything). */
const BLANK_BY_QUOTE = /[ \t]"|"[ \t]/;

/**
 * Whole records (`text` ends where a record does) without the spaces and tabs around their quoted
 * values: between the start of a field and its opening quote, and between the closing quote and
 * the end of the field. The same quote states as scanRecord. Blanks after a closing quote that
 * other text follows (`"Lee" Jr`) are kept: csv-parse keeps such a value as written.
 */
function unpadQuotes(text: string): string {
  if (!BLANK_BY_QUOTE.test(text)) return text;
  const len = text.length;
  let out = '';
  let copied = 0; // text before this index is in `out` (or dropped)
  let quoting = false;
  let fieldStart = 0;
  let fieldEmpty = true;
  let i = 0;
  while (i < len) {
    const c = text.charCodeAt(i);
    if (quoting) {
      if (c !== QUOTE) {
        i++;
        continue;
      }
      if (i + 1 < len && text.charCodeAt(i + 1) === QUOTE) {
        i += 2;
        continue;
      }
      quoting = false;
      fieldEmpty = false;
      i++;
      let j = i;
      while (j < len && isBlank(text.charCodeAt(j))) j++;
      const next = j < len ? text.charCodeAt(j) : -1;
      if (j > i && (next === -1 || next === COMMA || next === CR || next === LF)) {
        out += text.slice(copied, i);
        copied = j;
      }
      i = j;
      continue;
    }
    if (c === QUOTE) {
      if (fieldEmpty) {
        quoting = true;
        if (i > fieldStart) {
          out += text.slice(copied, fieldStart);
          copied = i;
        }
      }
      fieldEmpty = false;
      i++;
      continue;
    }
    if (c === COMMA || c === CR || c === LF) {
      fieldEmpty = true;
      fieldStart = i + 1;
    } else if (!isBlank(c)) {
      fieldEmpty = false;
    }
    i++;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** Length of the record delimiter at `at` (CR LF, LF or CR), MORE when a CR ends the text. */
function delimiterLength(text: string, at: number, final: boolean): number {
  if (at >= text.length) return 0;
  if (text.charCodeAt(at) === LF) return 1;
  if (at + 1 < text.length) return text.charCodeAt(at + 1) === LF ? 2 : 1;
  return final ? 1 : MORE;
}

/**
 * Text in, records out, with line numbers. Push decoded text in order with `final` on the last
 * piece. Throws FileRejectedError for what csv-parse would reject (after the records before it
 * were appended to `out`).
 */
export class RecordSplitter {
  /** line (record number, header = 1) of the next record */
  nextLine = 1;
  /** records read by csv-parse (the others hold no quote, so no line break in a value) */
  readonly parsed = new WeakSet<readonly string[]>();
  /** see RecordSource.dropBlankTails */
  keepFields = Infinity;
  /** whether the first record was read (only it may be Excel's separator line) */
  private firstSeen = false;
  private carry = '';
  private nextCheck = MAX_RECORD_CHARS;

  push(chunk: string, final: boolean, out: CsvRecord[]): void {
    const text = this.carry.length === 0 ? chunk : this.carry + chunk;
    this.carry = '';
    const len = text.length;
    let pos = 0;
    let quote = text.indexOf('"');
    let lf = text.indexOf('\n');
    let cr = text.indexOf('\r');
    while (pos < len) {
      if (lf !== -1 && lf < pos) lf = text.indexOf('\n', pos);
      if (cr !== -1 && cr < pos) cr = text.indexOf('\r', pos);
      if (quote !== -1 && quote < pos) quote = text.indexOf('"', pos);
      const end = lf === -1 ? cr : cr === -1 ? lf : lf < cr ? lf : cr;
      const lineEnd = end === -1 ? len : end;
      if ((quote === -1 || quote > lineEnd) && lineEnd - pos <= FAST_MAX) {
        // No quote in this record: its fields are the line split at commas.
        if (end === -1 && !final) break;
        const dl = delimiterLength(text, lineEnd, final);
        if (dl === MORE) break;
        const fields = this.split(text, pos, lineEnd);
        pos = lineEnd + dl;
        // A `sep=,` first line (see isSeparatorLine) is no record; it holds no quote, so it is always split here.
        if (this.nextLine === 1 && !this.firstSeen && isSeparatorLine(fields)) {
          this.firstSeen = true;
          continue;
        }
        this.firstSeen = true;
        out.push({ line: this.nextLine++, fields });
        continue;
      }
      const next = this.hardRegion(text, pos, final, out);
      if (next === pos) break;
      pos = next;
    }
    if (pos < len) {
      this.carry = text.slice(pos);
      if (this.carry.length >= this.nextCheck) this.checkPending();
    } else {
      this.nextCheck = MAX_RECORD_CHARS;
    }
  }

  /** A quote-free record's fields: the line split at commas, without a blank tail past keepFields. */
  private split(text: string, start: number, end: number): string[] {
    // A line of n characters has at most n + 1 fields.
    if (end - start < this.keepFields) return text.slice(start, end).split(',');
    let last = end;
    while (last > start && text.charCodeAt(last - 1) === COMMA) last--;
    if (last === end) return text.slice(start, end).split(',');
    const fields = text.slice(start, last).split(',');
    const want = Math.min(fields.length + (end - last), this.keepFields);
    while (fields.length < want) fields.push('');
    return fields;
  }

  /** csv-parse's fields of a record, without a blank tail past keepFields (the same array). */
  private trimmed(fields: string[]): string[] {
    while (fields.length > this.keepFields && fields[fields.length - 1] === '') fields.pop();
    return fields;
  }

  /**
   * Records from `start` on that need csv-parse, up to the next record the fast path can take.
   * Returns where the next record starts (`start` when the first record is incomplete).
   */
  private hardRegion(text: string, start: number, final: boolean, out: CsvRecord[]): number {
    const ends: number[] = [];
    let pos = start;
    for (;;) {
      const end = scanRecord(text, pos, final);
      if (end === MORE) break;
      const dl = delimiterLength(text, end, final);
      if (dl === MORE) break;
      pos = end + dl;
      ends.push(pos);
      if (pos >= text.length) break;
      // Stop before a record the fast path can take.
      const lineEnd = nextLineEnd(text, pos);
      const q = text.indexOf('"', pos);
      if ((q === -1 || q > lineEnd) && lineEnd - pos <= FAST_MAX && (lineEnd < text.length || final)) break;
    }
    if (ends.length === 0) {
      if (final) {
        // An unclosed quote runs to the end of the file: csv-parse gives the verdict.
        this.parseRecords(text.slice(start), 1, out);
        return text.length;
      }
      return start;
    }
    this.parseRecords(text.slice(start, pos), ends.length, out);
    return pos;
  }

  /** csv-parse over whole records; on an error, the line of the record it concerns. */
  private parseRecords(region: string, expected: number, out: CsvRecord[]): void {
    let records: string[][];
    try {
      records = parseSync(unpadQuotes(region), CSV_OPTIONS) as string[][];
    } catch (err) {
      // Find the record it concerns: the ones before it parse on their own.
      if (expected > 1) this.parseOneByOne(region, out);
      throw toFileError(err, this.nextLine);
    }
    if (records.length !== expected && !(expected === 1 && records.length === 0)) {
      throw new Error(`CSV splitter out of step with csv-parse (${records.length} records, expected ${expected})`);
    }
    for (const fields of records) {
      this.parsed.add(fields);
      out.push({ line: this.nextLine++, fields: this.trimmed(fields) });
    }
  }

  private parseOneByOne(region: string, out: CsvRecord[]): void {
    let pos = 0;
    while (pos < region.length) {
      const end = scanRecord(region, pos, true);
      const dl = delimiterLength(region, end, true);
      let fields: string[];
      try {
        fields = (parseSync(unpadQuotes(region.slice(pos, end + dl)), CSV_OPTIONS) as string[][])[0] ?? [''];
      } catch (err) {
        throw toFileError(err, this.nextLine);
      }
      this.parsed.add(fields);
      out.push({ line: this.nextLine++, fields: this.trimmed(fields) });
      pos = end + dl;
    }
  }

  /**
   * An incomplete record is being carried over a long way (in practice an unclosed quote): memory
   * stays bounded because csv-parse's record size limit is applied to it as it grows.
   */
  private checkPending(): void {
    try {
      parseSync(unpadQuotes(this.carry), CSV_OPTIONS);
    } catch (err) {
      if (err instanceof CsvError && err.code === 'CSV_MAX_RECORD_SIZE') throw recordTooLong(this.nextLine);
    }
    this.nextCheck = this.carry.length + MAX_RECORD_CHARS;
  }
}

function nextLineEnd(text: string, from: number): number {
  const lf = text.indexOf('\n', from);
  const cr = text.indexOf('\r', from);
  const end = lf === -1 ? cr : cr === -1 ? lf : lf < cr ? lf : cr;
  return end === -1 ? text.length : end;
}

/** The streams are built when iteration starts, and torn down when it stops (early or not). */
export function csvRecords(input: ByteSource, encoding: EncodingChoice): RecordSource {
  const decoder = new DecodeStream(encoding);
  let lastChar = '';
  const push = (splitter: RecordSplitter, piece: string, final: boolean, out: CsvRecord[]): void => {
    if (piece.length > 0) lastChar = piece[piece.length - 1] as string;
    splitter.push(piece, final, out);
  };
  const splitter = new RecordSplitter();
  async function* records(): AsyncGenerator<CsvRecord[]> {
    const text = new StringDecoder('utf8');
    const source = pipeline(input, decoder, () => {
      // errors reach the consumer through the decoder's iterator
    }) as unknown as AsyncIterable<Buffer>;
    let out: CsvRecord[] = [];
    try {
      for await (const chunk of source) {
        push(splitter, text.write(chunk), false, out);
        if (out.length > 0) {
          yield out;
          out = [];
        }
      }
      push(splitter, text.end(), true, out);
    } catch (err) {
      if (out.length > 0) yield out;
      throw toFileError(err, splitter.nextLine);
    }
    if (out.length > 0) yield out;
  }
  return {
    records: records(),
    encoding: () => decoder.encoding(),
    recodedLines: () => decoder.recodedLines(),
    endsWithLineBreak: () => lastChar === '\n' || lastChar === '\r',
    parsed: (fields) => splitter.parsed.has(fields),
    dropBlankTails: (keep) => {
      splitter.keepFields = keep;
    },
  };
}
