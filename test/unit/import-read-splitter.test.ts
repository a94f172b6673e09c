/**
 * The hand-written record splitter (src/import/read/csv-records.ts) against csv-parse itself: on
 * random inputs and random chunkings, the same records, the same line numbers and the same
 * whole-file errors as a plain csv-parse stream with the same options. Spaces and tabs around a
 * quoted value are not part of it, which no csv-parse option does alone: such input is compared
 * with csv-parse's ltrim/rtrim reading of the quoted values and its plain reading of the others.
 */
import { Readable, type TransformCallback } from 'node:stream';
import { Parser } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { CSV_OPTIONS, csvRecords, toFileError, type CsvRecord } from '../../src/import/read/csv-records.js';
import { MAX_RECORD_CHARS } from '../../src/import/read/csv-guard.js';

/** The reader before the splitter: csv-parse numbering records as it pushes them. */
class Reference extends Parser {
  nextLine = 1;
  records: CsvRecord[] = [];
  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (!Array.isArray(chunk)) return super.push(chunk, encoding);
    const fields = chunk as string[];
    this.records.push({ line: this.nextLine++, fields });
    return true;
  }
  override _transform(buf: Buffer, enc: BufferEncoding, cb: TransformCallback): void {
    super._transform(buf, enc, cb);
  }
}

async function reference(
  chunks: Buffer[],
  options: object = {},
): Promise<{ records: CsvRecord[]; error?: string; code?: string | undefined }> {
  const parser = new Reference({ ...CSV_OPTIONS, ...options });
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('error', reject);
      parser.on('finish', resolve);
      for (const c of chunks) parser.write(c);
      parser.end();
    });
    return { records: parser.records };
  } catch (err) {
    return { records: parser.records, error: (toFileError(err, parser.nextLine) as Error).message, code: (err as { code?: string }).code };
  }
}

async function split(chunks: Buffer[], keep?: number): Promise<{ records: CsvRecord[]; error?: string }> {
  const records: CsvRecord[] = [];
  try {
    const source = csvRecords(Readable.from(chunks), 'utf-8');
    if (keep !== undefined) source.dropBlankTails(keep);
    for await (const batch of source.records) records.push(...batch);
    return { records };
  } catch (err) {
    return { records, error: (err as Error).message };
  }
}

/** Deterministic pseudo-random numbers, so that a failure reproduces. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    s ^= s >>> 13;
    return (s >>> 0) / 2 ** 32;
  };
}

/** No space or tab next to a quote here (`x y`, not ` `): this is csv-parse's reading unchanged. */
const PIECES = ['a', 'bc', ',', ',', '"', '"', '""', '\r', '\n', '\r\n', 'x y', 'é', '😀', 'x"y', '","'];
/** Blanks everywhere, quotes too. */
const PADDED_PIECES = [' ', ' ', '\t', ',', ',', '"', '"a"', '"b,c"', '""', '"x""y"', '"\n"', 'z', 'é', '\n', '\r\n', 'O"B'];
const BLANK_BY_QUOTE = /[ \t]"|"[ \t]/;

const trimBlanks = (v: string): string => v.replace(/^[ \t]+|[ \t]+$/g, '');

function chunked(text: string, rnd: () => number): Buffer[] {
  const bytes = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const n = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 4 : 40));
    out.push(bytes.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

describe('record splitter', () => {
  it('reads random inputs exactly as csv-parse does, whatever the chunking', async () => {
    const rnd = random(20261121);
    for (let round = 0; round < 3000; round++) {
      let text = 'h1,h2\n';
      const n = Math.floor(rnd() * 40);
      for (let i = 0; i < n; i++) text += PIECES[Math.floor(rnd() * PIECES.length)];
      expect(text).not.toMatch(BLANK_BY_QUOTE);
      const chunks = chunked(text, rnd);
      const [{ code: _, ...want }, got] = [await reference(chunks), await split(chunks)];
      expect({ round, text, ...got }).toEqual({ round, text, ...want, records: want.error ? got.records : want.records });
      if (!want.error) expect(got.error).toBeUndefined();
    }
  });

  it('told to drop blank tails, reads what csv-parse reads, without the empty fields ending a record past the first N', async () => {
    // A header padded with commas (`username,email,,,,`) as a spreadsheet writes it: the rows need
    // no array of thousands of empty strings each.
    const rnd = random(20261123);
    const TAIL_PIECES = [...PIECES, ',,,,', ','.repeat(300), ',,"",,', 'v'];
    for (let round = 0; round < 2000; round++) {
      const keep = 1 + Math.floor(rnd() * 4);
      let text = 'h1,h2\n';
      const n = Math.floor(rnd() * 30);
      for (let i = 0; i < n; i++) text += TAIL_PIECES[Math.floor(rnd() * TAIL_PIECES.length)];
      const chunks = chunked(text, rnd);
      const [{ code: _, ...want }, got] = [await reference(chunks), await split(chunks, keep)];
      const cut = (fields: string[]): string[] => {
        let end = fields.length;
        while (end > keep && fields[end - 1] === '') end--;
        return fields.slice(0, end);
      };
      const expected = (want.error ? got.records : want.records).map((r) => ({ line: r.line, fields: cut(r.fields) }));
      expect({ round, keep, text, ...got }).toEqual({ round, keep, text, ...want, records: expected });
      if (!want.error) expect(got.error).toBeUndefined();
    }
    const { records } = await split([Buffer.from(`username,email${','.repeat(2000)}\nann1,a@x.org${','.repeat(2000)}\nbob1,,\ncy01\n`)], 2);
    expect(records.map((r) => r.fields)).toEqual([['username', 'email'], ['ann1', 'a@x.org'], ['bob1', ''], ['cy01']]);
  });

  it('applies csv-parse record size limit to long quoted and unquoted records', async () => {
    const long = 'x'.repeat(MAX_RECORD_CHARS + 5);
    for (const text of [
      `h\na\n"${long}"\nb\n`,
      `h\na\n${long}\nb\n`,
      `h\na\n"${long}`,
      `h\na\n"${'y'.repeat(MAX_RECORD_CHARS - 10)}"\nb\n`,
      `h\na\n${'y,'.repeat(400_000)}\nb\n`,
    ]) {
      const chunks = chunked(text, () => 0.99);
      const [want, got] = [await reference(chunks), await split(chunks)];
      expect(got.error).toEqual(want.error);
      if (!want.error) expect(got.records).toEqual(want.records);
    }
  });

  it('reads blanks around quotes as csv-parse with ltrim and rtrim does, the quoted values at least', async () => {
    // ltrim/rtrim also trim unquoted values (the splitter keeps their blanks: compared trimmed),
    // refuse text after a closing quote and a blank (`"Lee" Jr`, which the splitter keeps as written,
    // as csv-parse does without them), and read a quote after those blanks as opening the value again.
    const rnd = random(20261122);
    let compared = 0;
    for (let round = 0; round < 3000; round++) {
      let text = 'h1,h2\n';
      const n = Math.floor(rnd() * 30);
      for (let i = 0; i < n; i++) text += PADDED_PIECES[Math.floor(rnd() * PADDED_PIECES.length)];
      const chunks = chunked(text, rnd);
      const [want, got] = [await reference(chunks, { ltrim: true, rtrim: true }), await split(chunks)];
      if (want.code === 'CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE' || /"[ \t]+"/.test(text)) continue;
      compared++;
      // A last line of blanks alone, without a line break, is no record to ltrim (the readers skip it as a blank line).
      const last = got.records[got.records.length - 1];
      if (got.records.length === want.records.length + 1 && last?.fields.length === 1 && trimBlanks(last.fields[0] ?? '') === '') {
        got.records.pop();
      }
      const trimmed = (records: CsvRecord[]) => records.map((r) => ({ line: r.line, fields: r.fields.map(trimBlanks) }));
      expect({ round, text, error: got.error, records: trimmed(got.records) }).toEqual({
        round,
        text,
        error: want.error,
        records: trimmed(want.error ? got.records : want.records),
      });
    }
    expect(compared).toBeGreaterThan(800);
  });

  it('ignores spaces and tabs around a quoted value, keeps those of an unquoted one', async () => {
    const table: Array<[string, string[]]> = [
      ['ann,Ann,Lee, "Secret-123",School', ['ann', 'Ann', 'Lee', 'Secret-123', 'School']],
      ['"Username" ,"Email"', ['Username', 'Email']],
      [' "a,b" ,c', ['a,b', 'c']],
      ['\t"a"\t,\t"b"\t', ['a', 'b']],
      ['x, "" ,y', ['x', '', 'y']],
      ['x, "say ""hi"" now" ,y', ['x', 'say "hi" now', 'y']],
      ['x," a b ",y', ['x', ' a b ', 'y']], // blanks inside the quotes are the value's
      [' a , b ,c', [' a ', ' b ', 'c']], // unquoted: as written (the reader trims, and warns of a password's)
      [' a , "b" , c ', [' a ', 'b', ' c ']],
      ['x,O"Brien ,y', ['x', 'O"Brien ', 'y']], // a stray quote inside a value is a letter
      ['x, O"Brien,y', ['x', ' O"Brien', 'y']],
      ['x,"Lee" Jr,y', ['x', '"Lee" Jr', 'y']], // text after the closing quote: kept as written, as before
      ['x,"Lee"  ', ['x', 'Lee']],
      ['x,,  ,"",y', ['x', '', '  ', '', 'y']],
    ];
    for (const [line, fields] of table) {
      for (const end of ['\n', '\r\n', '']) {
        const { records, error } = await split(chunked(`h\n${line}${end}`, () => 0.3));
        expect({ line, end, error, fields: records[1]?.fields }).toEqual({ line, end, error: undefined, fields });
      }
    }
  });

  it('reads generated rows as written: quoted values without the blanks around them, as csv-parse (trimming) reads each; unquoted ones as csv-parse reads them', async () => {
    const rnd = random(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const blanks = () => Array.from({ length: Math.floor(rnd() * 3) }, () => pick([' ', '\t'])).join('');
    const chars = (set: readonly string[]) => Array.from({ length: Math.floor(rnd() * 6) }, () => pick(set)).join('');
    for (let round = 0; round < 500; round++) {
      const rows: string[][] = [];
      let text = 'h1,h2,h3\n';
      for (let r = 0; r < 1 + Math.floor(rnd() * 8); r++) {
        const values: string[] = [];
        const written: string[] = [];
        for (let f = 0; f < 1 + Math.floor(rnd() * 4); f++) {
          if (rnd() < 0.5) {
            // Unquoted: no quote where it would open a value, no comma or line break.
            const value = `${blanks()}${chars(['a', 'é', '😀', ' ', '-'])}${rnd() < 0.2 ? 'O"B' : ''}${blanks()}`;
            expect(parseSync(value.length > 0 ? value : ',', CSV_OPTIONS)).toEqual([value.length > 0 ? [value] : ['', '']]);
            values.push(value);
            written.push(value);
          } else {
            const value = chars(['a', ' ', ',', '"', '\n', '\r\n', 'é']);
            const field = `${blanks()}"${value.replace(/"/g, '""')}"${blanks()}`;
            expect(parseSync(field, { ...CSV_OPTIONS, ltrim: true, rtrim: true })).toEqual([[value]]);
            values.push(value);
            written.push(field);
          }
        }
        if (values.length === 1 && values[0] === '' && !written[0]?.includes('"')) continue; // a blank line
        rows.push(values);
        text += `${written.join(',')}${pick(['\n', '\r\n'])}`;
      }
      const { records, error } = await split(chunked(text, rnd));
      expect({ round, text, error, rows: records.slice(1).map((r) => r.fields) }).toEqual({ round, text, error: undefined, rows });
    }
  });
});
