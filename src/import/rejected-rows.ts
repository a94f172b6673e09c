/**
 * Why a user that groups.csv names (as a member or an owner) does not exist. Often the district did list the user in
 * users.csv, but the row was rejected (a row error), so the user was never created; groups.csv's
 * error should then say which line to fix, not "add the user to users.csv" (it is there).
 *
 * The row errors of the tenant's last users.csv import are kept in import_issues by line; with
 * their username only since migration 012, and never for a ragged line whose password may have
 * moved into the username's column. The lines of the users asked about are found by reading the
 * stored copy of that file again: only when groups.csv names users that do not exist and that
 * import had errors, and never failing the groups.csv for it (a copy removed by RETENTION_DAYS
 * leaves the plain message).
 */
import path from 'node:path';
import type { PoolClient } from 'pg';
import type { Logger } from '../types.js';
import { receivedInTenantZone } from './issues.js';
import { readUsersFile } from './read/users-reader.js';

export interface LastUsersRows {
  /** the last users.csv import of the tenant that was applied */
  uploadId: string;
  /** when that file was received, in the tenant's zone, for a school administrator */
  received: string;
  /** the lines of that file that list the usernames asked about (as written there) */
  rows: Array<{ username: string; line: number }>;
}

export async function lastUsersRows(
  client: PoolClient,
  opts: { dataDir: string; now: Date; tenantId: number; logger?: Logger },
  usernames: readonly string[],
): Promise<LastUsersRows | undefined> {
  const { rows } = await client.query<{ id: string; stored_path: string; received: string; errors: number }>(
    `SELECT u.id, u.stored_path, (u.counts->>'errors')::integer AS errors,
            ${receivedInTenantZone('u', 't')} AS received
       FROM uploads u JOIN tenants t ON t.id = u.tenant_id
      WHERE u.tenant_id = $1 AND u.file_name = 'users.csv' AND u.status IN ('succeeded', 'completed_with_errors')
      ORDER BY u.finished_at DESC NULLS LAST LIMIT 1`,
    [opts.tenantId],
  );
  const last = rows[0];
  if (last === undefined || !(last.errors > 0)) return undefined;
  const wanted = new Set(usernames.map((u) => u.toLowerCase()));
  const found: LastUsersRows['rows'] = [];
  try {
    // Which rows are valid is not asked here (the stored issues say why a row was rejected), so
    // the tenant's schools are not needed.
    const read = readUsersFile(path.resolve(opts.dataDir, last.stored_path), { schools: [], now: opts.now });
    for await (const batch of read.items) {
      for (const item of batch) {
        const username = item.kind === 'valid' ? item.row.username : item.username;
        const line = item.kind === 'valid' ? item.row.line : item.line;
        if (username !== null && wanted.has(username.toLowerCase())) found.push({ username, line });
      }
    }
  } catch (err) {
    opts.logger?.debug({ err, uploadId: last.id }, 'could not read the last users.csv again to explain groups.csv errors');
    return undefined;
  }
  return { uploadId: last.id, received: last.received, rows: found };
}
