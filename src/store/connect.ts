import type pg from 'pg';
import type { Config } from '../config/config.js';
import { RosterdError } from '../errors.js';
import type { Logger } from '../types.js';
import { createPool, endPool, type PoolOptions } from './db.js';
import { startEmbeddedPostgres } from './embedded.js';

export interface Database {
  pool: pg.Pool;
  /** true when the embedded Postgres in DATA_DIR is in use */
  embedded: boolean;
  /** The embedded Postgres started again if it stopped (embedded.ts revive); false for DATABASE_URL. */
  revive(): Promise<boolean>;
  close(): Promise<void>;
  /**
   * For a forced exit: lets go of the embedded Postgres (stopped if no other process uses it),
   * without waiting for connections in use to be given back as close does.
   */
  abandon(): Promise<void>;
}

/** DATABASE_URL, or the embedded Postgres kept in DATA_DIR when it is unset. */
export async function openDatabase(config: Config, logger: Logger, poolSize = 10, options: PoolOptions = {}): Promise<Database> {
  const embedded = config.DATABASE_URL ? undefined : await startEmbeddedPostgres(config.DATA_DIR, logger);
  const url = config.DATABASE_URL ?? embedded?.url;
  if (!url) throw new RosterdError('DATABASE_UNAVAILABLE', 'no database configured');
  const pool = createPool(url, logger, poolSize, options);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    await embedded?.release();
    throw new RosterdError(
      'DATABASE_UNAVAILABLE',
      `cannot connect to Postgres (${(err as Error).message}). Check DATABASE_URL and that the server is running.`,
      { cause: err },
    );
  }
  let closed = false;
  return {
    pool,
    embedded: embedded !== undefined,
    revive: async () => (closed || embedded === undefined ? false : embedded.revive()),
    close: async () => {
      if (closed) return;
      closed = true;
      await endPool(pool).catch(() => undefined);
      await embedded?.release();
    },
    abandon: async () => {
      closed = true;
      void pool.end().catch(() => undefined);
      await embedded?.release();
    },
  };
}
