/**
 * The staging tables of one users.csv import. They are UNLOGGED tables rather than TEMP ones:
 * Postgres scans a temporary table only in the session's own process, never with parallel
 * workers, and the join of a million staged rows with the roster is the largest cost of an
 * unchanged re-import after staging (see apply-users.ts). Like temporary tables they write no WAL.
 *
 * They are created inside the import's transaction and dropped before it commits (dropStagingTables),
 * so other sessions never see them; a rollback, or a crash before the commit, takes them away with
 * the transaction. Their names carry the upload id: imports of different tenants, which run at
 * the same time, never wait for one another on a name.
 */
import type { PoolClient } from 'pg';

export interface StagingTables {
  /** the file's rows, one per line */
  rows: string;
  /** 64-bit hashes of the keys that occur more than once */
  dupHashes: string;
  /** duplicate keys */
  dups: string;
  /** the plan: what changes, row by row */
  changes: string;
}

/** The quoted names of an import's staging tables. */
export function stagingTables(client: PoolClient, uploadId: string): StagingTables {
  // Upload ids are UUIDs: 32 hex digits keep every name within Postgres's 63 bytes.
  const id = uploadId
    .toLowerCase()
    .replace(/[^0-9a-z]/g, '')
    .slice(0, 32);
  const name = (what: string) => client.escapeIdentifier(`import_${what}_${id}`);
  return { rows: name('rows'), dupHashes: name('dup_hashes'), dups: name('dups'), changes: name('changes') };
}

/** Drops what the import created of its staging tables (before its transaction commits). */
export async function dropStagingTables(client: PoolClient, t: StagingTables): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS ${t.changes}, ${t.dups}, ${t.dupHashes}, ${t.rows}`);
}
