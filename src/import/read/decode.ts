/**
 * Bytes → UTF-8 bytes for the CSV parser: BOM stripped, the start of the file sniffed for things
 * that are not CSV, NUL bytes refused, and Windows-1252 transcoded.
 *
 * Encoding detection (PRODUCT.md §3: "a file that is not valid UTF-8 is read as Windows-1252"):
 * - For a file on disk, `detectFileEncoding` validates the whole file as UTF-8 in a streamed
 *   pre-pass (1 MiB chunks, `buffer.isUtf8`, i.e. simdutf: far cheaper than parsing). The
 *   encoding is therefore known before the first row is yielded, and the applier never sees a row
 *   that a later byte would have decoded differently. This costs one extra sequential read of a
 *   file that was just written (in the page cache) and is why `readUsersFile` is the primary entry.
 * - A file that is UTF-8 (it has accented letters in valid UTF-8) except for some lines that are
 *   not (a row typed or pasted in another program) is `mixed`: read line by line, each line as
 *   UTF-8 if it is valid UTF-8, else as Windows-1252, and the report names those lines. Read whole
 *   as Windows-1252, every correct accented name and password of the file would change (Renée
 *   would become RenÃ©e, and a student's password would no longer be what they type).
 * - For a stream that cannot be re-read (`encoding: 'auto'`), bytes are validated as they pass.
 *   When the first invalid byte comes after nothing but ASCII, everything already passed on decodes
 *   identically in Windows-1252, so the decoder switches in place with nothing to redo (this is
 *   what a real Windows-1252 export looks like: its first non-ASCII byte is invalid UTF-8). When
 *   valid multi-byte UTF-8 came first (a file mixing encodings), rows already yielded would change,
 *   so the file is rejected with a clear message.
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import iconv from 'iconv-lite';
import { assertNever } from '../../types.js';
import { FileRejectedError } from '../types.js';
import { sniffHead, utf16Of } from './csv-guard.js';

/**
 * What a file was read as. UTF-16 is what Windows PowerShell's `>` and `Out-File` write (and
 * Notepad's "Unicode"): an IT script's export, whole and lossless, so it is read, not refused.
 */
export type FileEncoding = 'utf-8' | 'windows-1252' | 'mixed' | 'utf-16le' | 'utf-16be';
export type EncodingChoice = FileEncoding | 'auto';

const HEAD_BYTES = 512;
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Length of the prefix of `buf` that does not end inside a UTF-8 sequence (the rest is carried over). */
export function completeUtf8Length(buf: Buffer): number {
  const n = buf.length;
  for (let i = 1; i <= Math.min(3, n); i++) {
    const b = buf[n - i] ?? 0;
    if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back for the lead byte
    if (b >= 0xc0) {
      const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return need > i ? n - i : n;
    }
    return n; // ASCII
  }
  return n; // only continuation bytes: let the validator judge them
}

/** Longest line kept whole while classifying lines; a longer one is judged by its parts. */
const MAX_LINE_BYTES = 16 << 20;

/**
 * Streams the file once: `utf-8` if it is all valid UTF-8, `mixed` if it has both lines of valid
 * UTF-8 with accented letters and lines that are not UTF-8, else `windows-1252`. Bounded memory.
 * Line breaks never occur inside a UTF-8 sequence, so lines can be judged one by one.
 */
export async function detectFileEncoding(path: string): Promise<FileEncoding> {
  let carry = Buffer.alloc(0);
  let multiByte = false;
  let invalid = false;
  const judge = (part: Buffer) => {
    if (isAscii(part)) return;
    if (isUtf8(part)) {
      multiByte = true;
      return;
    }
    // Some line here is not UTF-8: which of the others are, with accented letters?
    for (const line of lines(part)) {
      if (isAscii(line)) continue;
      if (isUtf8(line)) multiByte = true;
      else invalid = true;
    }
  };
  let first = true;
  let offset = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    if (first) {
      first = false;
      const utf16 = utf16Of((chunk as Buffer).subarray(0, HEAD_BYTES * 2));
      if (utf16 !== undefined) return utf16;
    }
    // NUL bytes fail the file (DecodeStream), whose message names the first one's line: found here
    // at the cost of a memchr per chunk, and its line counted only then. A workbook or an archive
    // (full of NUL bytes) is first told as what it is, from the head DecodeStream sniffs.
    const nul = (chunk as Buffer).indexOf(0);
    if (nul !== -1) {
      if (offset === 0) sniffHead(withoutBom((chunk as Buffer).subarray(0, FILE_HEAD_BYTES)));
      throw binaryData(await lineOfByte(path, offset + nul));
    }
    offset += (chunk as Buffer).length;
    const data = carry.length === 0 ? (chunk as Buffer) : Buffer.concat([carry, chunk as Buffer]);
    const end = completeLinesLength(data, false);
    judge(data.subarray(0, end));
    carry = Buffer.from(data.subarray(end));
    if (multiByte && invalid) return 'mixed';
  }
  judge(carry);
  return invalid ? (multiByte ? 'mixed' : 'windows-1252') : 'utf-8';
}

/** The head DecodeStream sniffs of a file on disk: the first chunk of its read stream (openFile). */
const FILE_HEAD_BYTES = 1 << 16;

function withoutBom(head: Buffer): Buffer {
  return head.subarray(0, 3).equals(UTF8_BOM) ? head.subarray(3) : head;
}

/** The line (as a text editor counts them: LF, CRLF or a lone CR) holding the byte at `at`. */
async function lineOfByte(path: string, at: number): Promise<number> {
  let line = 1;
  let afterCr = false;
  for await (const chunk of createReadStream(path, { end: at, highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer;
    // The LF of a CRLF split between chunks was counted with its CR.
    let i: number = afterCr && buf[0] === 0x0a ? 1 : 0;
    afterCr = false;
    for (;;) {
      const lf = buf.indexOf(0x0a, i);
      const cr = buf.indexOf(0x0d, i);
      if (lf === -1 && cr === -1) break;
      line++;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        afterCr = cr + 1 === buf.length;
        i = buf[cr + 1] === 0x0a ? cr + 2 : cr + 1;
      } else {
        i = lf + 1;
      }
    }
  }
  return line;
}

/**
 * Length of the prefix of `data` made of whole lines (all of it at the end of the file); the rest
 * is carried over. A line longer than MAX_LINE_BYTES is cut where no UTF-8 sequence is split.
 */
function completeLinesLength(data: Buffer, final: boolean): number {
  if (final) return data.length;
  // A CR at the very end may be the first half of a CRLF: it waits for the next chunk.
  const lf = data.lastIndexOf(0x0a);
  const cr = data.length >= 2 ? data.lastIndexOf(0x0d, data.length - 2) : -1;
  const end = Math.max(lf, cr) + 1;
  return end === 0 && data.length > MAX_LINE_BYTES ? completeUtf8Length(data) : end;
}

/**
 * The lines of `buf`, each with its line break (LF, CRLF or a lone CR: old Mac files). The next LF
 * and CR are found with indexOf (native) and kept until passed: a file has one kind, and a byte
 * loop in JavaScript doubled the time of the encoding pre-pass.
 */
function* lines(buf: Buffer): Generator<Buffer> {
  let start = 0;
  let lf = buf.indexOf(0x0a);
  let cr = buf.indexOf(0x0d);
  for (;;) {
    if (lf !== -1 && lf < start) lf = buf.indexOf(0x0a, start);
    if (cr !== -1 && cr < start) cr = buf.indexOf(0x0d, start);
    let end: number;
    if (cr !== -1 && (lf === -1 || cr < lf)) end = buf[cr + 1] === 0x0a ? cr + 2 : cr + 1;
    else if (lf !== -1) end = lf + 1;
    else break;
    yield buf.subarray(start, end);
    start = end;
  }
  if (start < buf.length) yield buf.subarray(start);
}

/** Whether a line from lines() ends with a line break. */
function endsLine(line: Buffer): boolean {
  const last = line[line.length - 1];
  return last === 0x0a || last === 0x0d;
}

/** Lines of a `mixed` file read as Windows-1252: the first few, and how many. */
export interface RecodedLines {
  first: number[];
  count: number;
}

/**
 * Transform: raw bytes in, UTF-8 bytes out (csv-parse works on bytes). `encoding()` tells what the
 * file was read as once the stream has ended.
 */
export class DecodeStream extends Transform {
  private mode: EncodingChoice;
  private head: Buffer[] = [];
  private headLength = 0;
  private started = false;
  private sawNonAscii = false;
  private carry = Buffer.alloc(0);
  /** `mixed`: the number of the next line (as a text editor counts them), and the lines recoded. */
  private nextLine = 1;
  private readonly recoded: RecodedLines = { first: [], count: 0 };
  /** UTF-16: keeps a character split between chunks (and drops the byte order mark). */
  private utf16: iconv.DecoderStream | undefined;

  constructor(choice: EncodingChoice) {
    super();
    this.mode = choice;
  }

  /** What the bytes were read as ('auto' resolves to utf-8 unless it switched). */
  encoding(): FileEncoding {
    return this.mode === 'auto' ? 'utf-8' : this.mode;
  }

  /** In a `mixed` file, the lines that were not UTF-8 and were read as Windows-1252. */
  recodedLines(): RecodedLines {
    return this.recoded;
  }

  override _transform(input: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      const chunk = this.holdEofMarks(input);
      if (!this.started) {
        this.head.push(chunk);
        this.headLength += chunk.length;
        if (this.headLength < HEAD_BYTES) return done();
        this.startWith(Buffer.concat(this.head));
      } else {
        this.pass(chunk);
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  /**
   * Ctrl-Z (0x1A) at the very end of a file is the end-of-file mark of DOS-era programs, which
   * some SIS exports still write: held back from each chunk until more data shows it was not the
   * end, and dropped at the end. Elsewhere it is passed on like any character.
   */
  private heldEofMarks = 0;

  private holdEofMarks(chunk: Buffer): Buffer {
    let data = chunk;
    if (this.heldEofMarks > 0) {
      data = Buffer.concat([Buffer.alloc(this.heldEofMarks, 0x1a), chunk]);
      this.heldEofMarks = 0;
    }
    let end = data.length;
    while (end > 0 && data[end - 1] === 0x1a) end--;
    this.heldEofMarks = data.length - end;
    return end === data.length ? data : data.subarray(0, end);
  }

  override _flush(done: TransformCallback): void {
    try {
      if (!this.started) this.startWith(Buffer.concat(this.head));
      if (this.mode === 'mixed') this.passLines(Buffer.alloc(0), true); // the last line, without a line break
      const rest = this.utf16?.end();
      if (rest) this.pushText(rest); // an odd last byte: U+FFFD
      if (this.carry.length > 0) {
        // The file ends inside a multi-byte sequence: not valid UTF-8.
        const rest = this.carry;
        this.carry = Buffer.alloc(0);
        this.invalidUtf8(rest);
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private startWith(head: Buffer): void {
    this.started = true;
    this.head = [];
    if (this.mode === 'auto') this.mode = utf16Of(head) ?? 'auto';
    if (this.mode === 'utf-16le' || this.mode === 'utf-16be') {
      this.utf16 = iconv.getDecoder(this.mode);
      // Judged as text, as any other file: a workbook or web page saved as UTF-16 is still not CSV.
      const text = this.utf16.write(head);
      sniffHead(Buffer.from(text, 'utf8'));
      this.pushText(text);
      return;
    }
    const body = withoutBom(head);
    sniffHead(body);
    this.pass(body);
  }

  private pushText(text: string): void {
    if (text.includes('\0')) throw binaryData();
    if (text.length > 0) this.push(Buffer.from(text, 'utf8'));
  }

  private pass(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.utf16 !== undefined) return this.pushText(this.utf16.write(chunk));
    if (chunk.indexOf(0) !== -1) throw binaryData();
    switch (this.mode) {
      case 'windows-1252':
        this.push(Buffer.from(iconv.decode(chunk, 'win1252'), 'utf8'));
        return;
      case 'utf-8':
        // Validated by the pre-pass (detectFileEncoding), or trusted by the caller.
        this.push(chunk);
        return;
      case 'auto':
        this.passAuto(chunk);
        return;
      case 'mixed':
        this.passLines(chunk, false);
        return;
      case 'utf-16le':
      case 'utf-16be':
        throw new Error('UTF-16 is decoded from the first chunk on (startWith)');
      default:
        assertNever(this.mode, 'encoding');
    }
  }

  /** `mixed`: each complete line as UTF-8 if it is valid UTF-8, else as Windows-1252. */
  private passLines(chunk: Buffer, final: boolean): void {
    const data = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
    const end = completeLinesLength(data, final);
    this.carry = Buffer.from(data.subarray(end));
    const whole = data.subarray(0, end);
    if (isUtf8(whole)) {
      // Most of a mixed file: passed on at once, only its lines counted.
      for (const line of lines(whole)) if (endsLine(line)) this.nextLine++;
      if (whole.length > 0) this.push(whole);
      return;
    }
    // Runs of UTF-8 lines go on as one piece each; the lines between them are recoded.
    let run = 0;
    let at = 0;
    for (const line of lines(whole)) {
      if (!isUtf8(line)) {
        if (at > run) this.push(whole.subarray(run, at));
        this.push(Buffer.from(iconv.decode(line, 'win1252'), 'utf8'));
        if (this.recoded.first.length < 20) this.recoded.first.push(this.nextLine);
        this.recoded.count++;
        run = at + line.length;
      }
      at += line.length;
      if (endsLine(line)) this.nextLine++;
    }
    if (at > run) this.push(whole.subarray(run, at));
  }

  private passAuto(chunk: Buffer): void {
    const data = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
    this.carry = Buffer.alloc(0);
    if (isAscii(data)) {
      this.push(data);
      return;
    }
    const end = completeUtf8Length(data);
    const complete = data.subarray(0, end);
    if (!isUtf8(complete)) {
      this.invalidUtf8(data);
      return;
    }
    if (!this.sawNonAscii && !isAscii(complete)) this.sawNonAscii = true;
    this.push(complete);
    this.carry = Buffer.from(data.subarray(end));
  }

  /** `data` (not yet passed on) holds invalid UTF-8. */
  private invalidUtf8(data: Buffer): void {
    if (this.mode !== 'auto') return; // utf-8 mode only reaches here on a truncated tail: pass as is
    if (this.sawNonAscii) {
      throw new FileRejectedError(
        'The file mixes two character encodings: part of it is UTF-8 and part of it is not. ' +
          'Save it again as "CSV UTF-8 (Comma delimited)" and upload it again.',
      );
    }
    // Everything passed on so far was ASCII, which Windows-1252 decodes identically.
    this.mode = 'windows-1252';
    this.pass(data);
  }
}

/** `line`: where the first NUL byte is, when known (a file on disk: see detectFileEncoding). */
function binaryData(line?: number): FileRejectedError {
  const where = line === undefined ? '' : `, the first on line ${line.toLocaleString('en-US')} (as a text editor counts lines)`;
  return new FileRejectedError(
    `The file contains binary data (NUL bytes)${where}, so it is not a CSV text file. ` +
      'Export the roster as CSV (comma-separated values) and upload it again.',
  );
}
