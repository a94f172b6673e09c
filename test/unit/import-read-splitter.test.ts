/**
 * The hand-written record splitter (src/import/read/csv-records.ts) against csv-parse itself: on
 * random inputs and random chunkings, the same records, the same line numbers and the same
 * whole-file errors as a plain csv-parse stream with the same options.
 */
import { Readable, type TransformCallback } from 'node:stream';
import { Parser } from 'csv-parse';
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

async function reference(chunks: Buffer[]): Promise<{ records: CsvRecord[]; error?: string }> {
  const parser = new Reference({ ...CSV_OPTIONS });
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('error', reject);
      parser.on('finish', resolve);
      for (const c of chunks) parser.write(c);
      parser.end();
    });
    return { records: parser.records };
  } catch (err) {
    return { records: parser.records, error: (toFileError(err, parser.nextLine) as Error).message };
  }
}

async function split(chunks: Buffer[]): Promise<{ records: CsvRecord[]; error?: string }> {
  const records: CsvRecord[] = [];
  try {
    for await (const batch of csvRecords(Readable.from(chunks), 'utf-8').records) records.push(...batch);
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

const PIECES = ['a', 'bc', ',', ',', '"', '"', '""', '\r', '\n', '\r\n', ' ', 'é', '😀', 'x"y', '","'];

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
      const chunks = chunked(text, rnd);
      const [want, got] = [await reference(chunks), await split(chunks)];
      expect({ round, text, ...got }).toEqual({ round, text, ...want, records: want.error ? got.records : want.records });
      if (!want.error) expect(got.error).toBeUndefined();
    }
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
});
