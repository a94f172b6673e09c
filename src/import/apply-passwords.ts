/**
 * Hashing the passwords that changed, after the plan has decided which ones did (a password whose
 * keyed check matches the stored one is never hashed again; see password.ts). Sealed passwords
 * are read from the staging table in batches with a cursor, hashed on the worker pool and the
 * hashes kept in import_hashes for the write step. Memory stays bounded by the batch size.
 */
import type { PoolClient } from 'pg';
import type { PasswordHasher } from './hash-pool.js';
import type { PasswordSealer } from './password.js';

/** Enough passwords per batch to keep every worker busy, few enough to bound memory. */
const BATCH = 256;

export async function hashChangedPasswords(
  client: PoolClient,
  hasher: PasswordHasher | undefined,
  sealer: PasswordSealer,
  expected: number,
  /** the query giving (line, pw_sealed) of each password to hash */
  source: string,
): Promise<number> {
  await client.query('CREATE TEMP TABLE import_hashes (line integer PRIMARY KEY, hash text NOT NULL) ON COMMIT DROP');
  if (expected === 0) return 0; // the usual night: no password changed, nothing to read
  await client.query(`DECLARE import_passwords NO SCROLL CURSOR FOR ${source}`);
  let hashed = 0;
  for (;;) {
    const batch = await client.query<{ line: number; pw_sealed: Buffer }>(`FETCH ${BATCH} FROM import_passwords`);
    if (batch.rows.length === 0) break;
    if (!hasher) throw new Error('passwords changed but no password hasher was given');
    const hashes = await hasher.hash(batch.rows.map((r) => sealer.open(r.pw_sealed)));
    await client.query('INSERT INTO import_hashes (line, hash) SELECT * FROM unnest($1::integer[], $2::text[])', [
      batch.rows.map((r) => r.line),
      hashes,
    ]);
    hashed += hashes.length;
  }
  await client.query('CLOSE import_passwords');
  return hashed;
}
