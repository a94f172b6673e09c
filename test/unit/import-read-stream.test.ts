/**
 * Streaming: a 200,000-row file is read with bounded memory (checked loosely, not timed), in
 * batches of about 1000, with exact line numbers and counts at the end.
 */
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { readUsers } from '../../src/import/read/users-reader.js';
import { NOW, SCHOOLS } from '../fixtures/csv/helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const ROWS = 200_000;

/** Generates the file lazily, so the test itself holds nothing: every 1000th row is invalid. */
function generated(): Readable {
  function* lines(): Generator<string> {
    yield 'username,password,email,first name,last name,school,graduation year,role,sis id\r\n';
    for (let i = 0; i < ROWS; i++) {
      const username = i % 1000 === 999 ? 'bad' : `student${i}`;
      yield `${username},Passw0rd${i},student${i}@lincoln.k12.ca.us,"First ${i}",Last${i},Lincoln High,${2027 + (i % 12)},student,S${i}\r\n`;
    }
  }
  return Readable.from(lines(), { objectMode: false });
}

describe('a 200,000-row file', () => {
  it('streams in batches with bounded memory', { timeout: 120_000 }, async () => {
    gc();
    const before = process.memoryUsage().heapUsed;
    const result = readUsers(generated(), { schools: SCHOOLS, now: NOW, maxErrors: 10 });
    let items = 0;
    let valid = 0;
    let lastLine = 0;
    let largestBatch = 0;
    let peakGrowth = 0;
    for await (const batch of result.items) {
      items += batch.length;
      largestBatch = Math.max(largestBatch, batch.length);
      for (const item of batch) {
        if (item.kind === 'valid') valid++;
        lastLine = item.kind === 'valid' ? item.row.line : item.line;
      }
      if (items % 50_000 === 0) {
        gc();
        peakGrowth = Math.max(peakGrowth, process.memoryUsage().heapUsed - before);
      }
    }
    const summary = result.summary();
    expect(items).toBe(ROWS);
    expect(valid).toBe(ROWS - ROWS / 1000);
    expect(lastLine).toBe(ROWS + 1);
    expect(largestBatch).toBe(1000);
    expect(summary).toMatchObject({ rows: ROWS, errorCount: ROWS / 1000 });
    expect(summary.errors).toHaveLength(10);
    expect(summary.errors[0]).toMatchObject({ line: 1001, column: 'username' });
    // The file is ~25 MB and its rows ~100 MB as objects: holding either would show here.
    expect(peakGrowth).toBeLessThan(15 * 1024 * 1024);
  });
});
