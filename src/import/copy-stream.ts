/**
 * Streaming rows into Postgres with COPY (text format), honouring backpressure, so that Node keeps
 * parsing the next batch while Postgres ingests the previous one.
 */
import { once } from 'node:events';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

export type CopyValue = string | number | boolean | Buffer | null | undefined;

/** One field in COPY text format: \N for null, backslash escapes for the four special characters. */
export function copyField(value: CopyValue): string {
  if (typeof value === 'string') return SPECIAL.test(value) ? value.replace(SPECIALS, escape) : value;
  if (value === null || value === undefined) return '\\N';
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (typeof value === 'number') return String(value);
  if (Buffer.isBuffer(value)) return '\\\\x' + value.toString('hex');
  return String(value);
}

const SPECIAL = /[\\\t\n\r]/;
const SPECIALS = /[\\\t\n\r]/g;
const escape = (c: string): string => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r');

export function copyLine(values: readonly CopyValue[]): string {
  let out = '';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += '\t';
    out += copyField(values[i]);
  }
  return out + '\n';
}

export interface CopyWriter {
  /** Write pre-encoded lines (see copyLine); resolves when the stream can take more. */
  write(chunk: string): Promise<void>;
  /** Finish the COPY; resolves with the number of rows Postgres stored. */
  end(): Promise<number>;
  /** Give up (the input turned out to be bad): Postgres is told to fail the COPY. */
  abort(reason: Error): Promise<void>;
}

/** Start `COPY table (columns) FROM STDIN` on the client. */
export function startCopy(client: PoolClient, table: string, columns: readonly string[]): CopyWriter {
  const stream = client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN`));
  let failure: Error | undefined;
  stream.on('error', (err: Error) => {
    failure = err;
  });
  const finished = new Promise<number>((resolve, reject) => {
    stream.on('finish', () => resolve(stream.rowCount));
    stream.on('error', reject);
  });
  finished.catch(() => undefined);
  return {
    async write(chunk) {
      if (failure) throw failure;
      if (!stream.write(chunk)) {
        await Promise.race([once(stream, 'drain'), finished]);
      }
    },
    async end() {
      if (failure) throw failure;
      stream.end();
      return finished;
    },
    async abort(reason) {
      stream.destroy(reason);
      await finished.catch(() => undefined);
    },
  };
}
