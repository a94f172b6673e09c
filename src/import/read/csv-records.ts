/**
 * Decoded, parsed CSV records with the spreadsheet line each one starts on.
 *
 * Line numbers are counted here rather than taken from csv-parse's `info.lines`, which counts a
 * CRLF inside a quoted field as two lines: every physical line yields a record (blank lines are
 * records of one empty field, skipped by the readers), so a record starts on the line after the
 * previous one ends, and it ends as many lines later as its fields hold line breaks.
 */
import { pipeline, type Readable, type TransformCallback } from 'node:stream';
import { CsvError, Parser } from 'csv-parse';
import { FileRejectedError } from '../types.js';
import { MAX_RECORD_CHARS, quoteNotClosed, recordTooLong } from './csv-guard.js';
import { DecodeStream, type EncodingChoice, type FileEncoding } from './decode.js';

export interface CsvRecord {
  /** spreadsheet line (1-based) where the record starts */
  line: number;
  /** cells as written (unquoted, not trimmed) */
  fields: string[];
}

export interface RecordSource {
  /** records in file order, in arrays of any size */
  records: AsyncIterable<CsvRecord[]>;
  /** what the file was read as; final once `records` is exhausted */
  encoding(): FileEncoding;
}

export type ByteSource = NodeJS.ReadableStream | Readable;

function lineBreaks(fields: readonly string[]): number {
  let n = 0;
  for (const f of fields) {
    if (f.includes('\n') || f.includes('\r')) n += f.match(/\r\n|\r|\n/g)?.length ?? 0;
  }
  return n;
}

function toFileError(err: unknown, line: number): unknown {
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

/**
 * Numbers records as csv-parse pushes them, so `nextLine` is exact even when an error then
 * discards records still buffered in the stream (the line of an unclosed quote), and passes them on
 * as one array per input chunk rather than one stream item per record (cheaper than `on_record`,
 * which builds an info object per record, and than an await per record).
 */
class LineNumberingParser extends Parser {
  nextLine = 1;
  private pending: CsvRecord[] | undefined;

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (!Array.isArray(chunk)) {
      this.flushPending();
      return super.push(chunk, encoding);
    }
    const fields = chunk as string[];
    const line = this.nextLine;
    this.nextLine = line + 1 + lineBreaks(fields);
    const record: CsvRecord = { line, fields };
    if (this.pending !== undefined) {
      this.pending.push(record);
      return true;
    }
    return super.push([record]);
  }

  override _transform(buf: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending = [];
    super._transform(buf, encoding, (err?: Error | null) => {
      this.flushPending();
      callback(err);
    });
  }

  override _flush(callback: TransformCallback): void {
    this.pending = [];
    super._flush((err?: Error | null) => {
      this.flushPending();
      callback(err);
    });
  }

  private flushPending(): void {
    const batch = this.pending;
    this.pending = undefined;
    if (batch !== undefined && batch.length > 0) super.push(batch);
  }
}

/** The streams are built when iteration starts, and torn down when it stops (early or not). */
export function csvRecords(input: ByteSource, encoding: EncodingChoice): RecordSource {
  const decoder = new DecodeStream(encoding);
  async function* records(): AsyncGenerator<CsvRecord[]> {
    const parser = new LineNumberingParser({
      relax_column_count: true, // ragged rows are judged by the readers, row by row
      relax_quotes: true, // `O"Brien` unquoted is kept as written
      max_record_size: MAX_RECORD_CHARS,
      record_delimiter: ['\r\n', '\n', '\r'],
    });
    pipeline(input, decoder, parser, () => {
      // errors reach the consumer through the parser's iterator
    });
    try {
      for await (const batch of parser as AsyncIterable<CsvRecord[]>) yield batch;
    } catch (err) {
      throw toFileError(err, parser.nextLine);
    }
  }
  return { records: records(), encoding: () => decoder.encoding() };
}
