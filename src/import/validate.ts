/**
 * `rosterd validate FILE --tenant T` (PRODUCT.md §7): everything an import does except the commit
 * (and the password hashing). A file named groups*.csv is read as groups.csv, any other as users.csv.
 * The file is recorded as a temporary upload and imported in a transaction that is rolled back,
 * so the report is computed by the same code against the roster as it stands; nothing is kept.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { describeFileError, RosterdError } from '../errors.js';
import { getTenant } from '../store/tenants.js';
import { executeImport, loadTarget, recordOutcome, storeRejection, type ImportContext, type Outcome } from './execute.js';
import { getImportRecord, type ImportRecord } from './records.js';
import { FileRejectedError } from './types.js';

export async function validateFile(ctx: ImportContext, opts: { tenant: string; file: string }): Promise<ImportRecord> {
  const file = path.resolve(opts.file);
  const { bytes, sha256 } = await describeFile(file);
  const startedAt = ctx.clock.now();
  const client = await ctx.pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const tenant = await getTenant(client, opts.tenant);
    const id = randomUUID();
    await client.query(
      `INSERT INTO uploads (id, tenant_id, file_name, source, bytes, sha256, stored_path, received_at, status, status_changed_at)
       VALUES ($1, $2, $3, 'validate', $4, $5, $6, $7, 'running', $7)`,
      [id, tenant.id, path.basename(file), bytes, sha256, file, startedAt],
    );
    const target = await loadTarget(client, ctx.config.DATA_DIR, id);
    await client.query('SAVEPOINT read_file');
    let outcome: Outcome;
    try {
      outcome = await executeImport(client, ctx.config, ctx.clock, target, { dryRun: true, overrideThreshold: false, hasher: undefined });
    } catch (err) {
      if (!(err instanceof FileRejectedError)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT read_file');
      outcome = await storeRejection(client, id, err);
    }
    await recordOutcome(client, id, 'running', outcome, { startedAt, finishedAt: ctx.clock.now() });
    const record = await getImportRecord(client, id);
    if (!record) throw new RosterdError('INTERNAL', 'the validation record vanished');
    await client.query('ROLLBACK');
    return record;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/** The file's size and SHA-256; a FILE_NOT_FOUND error whose cause is the file system's error. */
async function describeFile(file: string): Promise<{ bytes: number; sha256: string }> {
  try {
    const info = await stat(file);
    if (info.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    if (!info.isFile()) throw new Error('not a regular file');
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    return { bytes: info.size, sha256: hash.digest('hex') };
  } catch (err) {
    throw new RosterdError('FILE_NOT_FOUND', `cannot read ${file}: ${describeFileError(err)}`, {
      cause: err,
    });
  }
}
