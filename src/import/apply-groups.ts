/**
 * Applying groups.csv (PRODUCT.md §4), set-based like users.csv. The user must exist; an owner,
 * if given, must be an active Manager, School Administrator or Administrator; an owner without a
 * group means the owner's default group (created if needed); neither is an error. The file is the
 * whole set of memberships: import-made memberships it no longer lists are removed, except those
 * of users whose row was in error (found by the reader or against the database).
 *
 * Counts: created = memberships added, unchanged = memberships already there, deactivated =
 * memberships removed; groupsCreated in the extra counts.
 */
import type { PoolClient } from 'pg';
import { copyLine, startCopy } from './copy-stream.js';
import { insertIssues, MESSAGES, receivedInTenantZone } from './issues.js';
import type { ImportHook, ImportTarget, ReadOutcome, ReadResult } from './engine-types.js';
import type { LastUsersRows } from './rejected-rows.js';
import { emptyCounts, type GroupRow, type ImportCounts, type WarningCode } from './types.js';

export interface GroupsApplyResult extends ReadOutcome {
  counts: ImportCounts;
  groupsCreated: number;
}

export async function applyGroups(
  client: PoolClient,
  target: ImportTarget,
  source: ReadResult<GroupRow>,
  options: {
    at?: ImportHook | undefined;
    /** the lines of the last users.csv that list these usernames (see rejected-rows.ts) */
    lastUsersRows?: ((usernames: string[]) => Promise<LastUsersRows | undefined>) | undefined;
  },
): Promise<GroupsApplyResult> {
  // Usernames as written: compared with lower(), as the users index does.
  await client.query(`
    CREATE TEMP TABLE import_group_rows (
      line integer NOT NULL, valid boolean NOT NULL, username text, owner text, group_name text
    ) ON COMMIT DROP`);
  const copy = startCopy(client, 'import_group_rows', ['line', 'valid', 'username', 'owner', 'group_name']);
  try {
    for await (const batch of source.items) {
      await copy.write(
        batch.map((g) => copyLine(g.valid ? [g.line, 't', g.username, g.owner, g.group] : [g.line, 'f', g.username, null, null])).join(''),
      );
    }
  } catch (err) {
    await copy.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  await copy.end();
  const summary = source.summary();
  await client.query('ANALYZE pg_temp.import_group_rows');

  await client.query(
    `CREATE TEMP TABLE import_group_plan ON COMMIT DROP AS
     SELECT g.*, u.id AS user_id, o.id AS owner_id, o.username AS owner_name,
            CASE WHEN NOT g.valid THEN 'invalid' -- reported by the reader
                 WHEN g.owner IS NULL AND g.group_name IS NULL THEN 'empty'
                 WHEN u.id IS NULL THEN 'user_missing'
                 WHEN g.owner IS NOT NULL AND o.id IS NULL THEN 'owner_missing'
                 WHEN g.owner IS NOT NULL AND NOT o.active THEN 'owner_inactive'
                 WHEN g.owner IS NOT NULL AND o.access_type IS NULL THEN 'owner_not_manager'
                 ELSE 'ok' END AS op
       FROM import_group_rows g
       LEFT JOIN users u ON u.tenant_id = $1::bigint AND lower(u.username) = lower(g.username)
       LEFT JOIN users o ON o.tenant_id = $1::bigint AND lower(o.username) = lower(g.owner)`,
    [target.tenantId],
  );
  // A user or owner that does not exist because the last users.csv rejected its row: that row's
  // errors, so that the message says which line to fix (not that the district should add a user
  // it did list).
  const missing = await client.query<{ username: string }>(
    `SELECT username FROM import_group_plan WHERE op = 'user_missing'
     UNION SELECT owner FROM import_group_plan WHERE op = 'owner_missing'`,
  );
  const last = missing.rows.length > 0 ? await options.lastUsersRows?.(missing.rows.map((r) => r.username)) : undefined;
  // One row per user (ignoring case), its first rejected line: the plan joins it by key.
  await client.query(
    `CREATE TEMP TABLE import_group_rejected ON COMMIT DROP AS
     SELECT DISTINCT ON (key) key, line, why
       FROM (SELECT lower(r.username) AS key, r.line, string_agg(i.message, '; ' ORDER BY i.id) AS why
               FROM unnest($1::text[], $2::integer[]) AS r(username, line)
               JOIN import_issues i ON i.upload_id = $3::uuid AND i.kind = 'error' AND i.line = r.line
              GROUP BY r.username, r.line) rejected
      ORDER BY key, line`,
    [last?.rows.map((r) => r.username) ?? [], last?.rows.map((r) => r.line) ?? [], last?.uploadId ?? null],
  );
  const planErrors = await client.query(
    `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, username)
     SELECT $1, 'error', p.line,
            CASE WHEN p.op = 'user_missing' THEN 'username' WHEN p.op = 'empty' THEN 'group' ELSE 'owner' END,
            CASE WHEN p.op = 'user_missing' THEN p.username WHEN p.op = 'empty' THEN NULL ELSE p.owner END,
            CASE p.op WHEN 'user_missing' THEN CASE WHEN r.key IS NOT NULL THEN format($7, p.username, $8::text, r.line, r.why)
                                                    ELSE format($2, p.username) END
                      WHEN 'owner_missing' THEN CASE WHEN ro.key IS NOT NULL THEN format($9, p.owner, $8::text, ro.line, ro.why)
                                                     ELSE format($3, p.owner) END
                      WHEN 'owner_inactive' THEN format($4, p.owner_name)
                      WHEN 'owner_not_manager' THEN format($5, p.owner_name)
                      ELSE $6 END,
            p.username
       FROM import_group_plan p
       LEFT JOIN import_group_rejected r ON p.op = 'user_missing' AND r.key = lower(p.username)
       LEFT JOIN import_group_rejected ro ON p.op = 'owner_missing' AND ro.key = lower(p.owner)
      WHERE p.op NOT IN ('ok', 'invalid')`,
    [
      target.uploadId,
      MESSAGES.groupUserMissing,
      MESSAGES.groupOwnerMissing,
      MESSAGES.groupOwnerInactive,
      MESSAGES.groupOwnerNotManager,
      MESSAGES.groupEmpty,
      MESSAGES.groupUserRejected,
      last?.received ?? null,
      MESSAGES.groupOwnerRejected,
    ],
  );
  await insertIssues(client, target.uploadId, 'error', summary.errors);
  await insertIssues(client, target.uploadId, 'warning', summary.warnings);

  // Groups: named ones by name (ignoring case), default ones by owner. Created with the first
  // row's owner; an existing group keeps its owner.
  const named = await client.query(
    `INSERT INTO groups (tenant_id, name, owner_id, created_import_id)
     SELECT DISTINCT ON (lower(group_name)) $1::bigint, group_name, owner_id, $2::uuid
       FROM import_group_plan WHERE op = 'ok' AND group_name IS NOT NULL
      ORDER BY lower(group_name), line
     ON CONFLICT (tenant_id, lower(name)) WHERE NOT is_default DO NOTHING`,
    [target.tenantId, target.uploadId],
  );
  const defaults = await client.query(
    `INSERT INTO groups (tenant_id, name, owner_id, is_default, created_import_id)
     SELECT DISTINCT $1::bigint, 'Default group of ' || owner_name, owner_id, true, $2::uuid
       FROM import_group_plan WHERE op = 'ok' AND group_name IS NULL
     ON CONFLICT (owner_id) WHERE is_default DO NOTHING`,
    [target.tenantId, target.uploadId],
  );
  // Lines applied, but not quite as written: an inactive user's membership, and an owner given
  // for a group that has another one (groups keep the owner they were created with: an earlier
  // import's, or this file's first line for the group).
  // An inactive user's warning names the users.csv import that deactivated the user, and how, as
  // that import recorded it (users.deactivated_import_id, deactivated_how): the user's last import
  // may have changed it without deactivating it, and a full sync deactivates a user it no longer
  // lists or one its row gives status inactive. A user deactivated otherwise, or before rosterd
  // kept how, is only said to be inactive.
  const warned = await client.query(
    `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
     SELECT $1::uuid, 'warning', p.line, 'username', p.username,
            CASE WHEN d.id IS NULL THEN format($2, p.username)
                 ELSE format($5, p.username,
                             ${receivedInTenantZone('d', 't')},
                             CASE u.deactivated_how WHEN 'deleted' THEN $6 WHEN 'status' THEN $10 ELSE $7 END) END,
            $8, p.username
       FROM import_group_plan p JOIN users u ON u.id = p.user_id
       LEFT JOIN uploads d ON d.id = u.deactivated_import_id AND d.file_name = 'users.csv'
                          AND u.deactivated_how IN ('unlisted', 'deleted', 'status')
       LEFT JOIN tenants t ON t.id = d.tenant_id
      WHERE p.op = 'ok' AND NOT u.active
     UNION ALL
     SELECT $1::uuid, 'warning', p.line, 'owner', p.owner, format($3, gr.name, o.username), $9, p.username
       FROM import_group_plan p
       JOIN groups gr ON gr.tenant_id = $4::bigint AND NOT gr.is_default AND lower(gr.name) = lower(p.group_name)
       JOIN users o ON o.id = gr.owner_id
      WHERE p.op = 'ok' AND p.owner_id IS NOT NULL AND gr.owner_id <> p.owner_id`,
    [
      target.uploadId,
      MESSAGES.groupUserInactive,
      MESSAGES.groupOwnerIgnored,
      target.tenantId,
      MESSAGES.groupUserDeactivated,
      MESSAGES.deactivatedByDelete,
      MESSAGES.deactivatedByFullSync,
      'GROUP_USER_INACTIVE' satisfies WarningCode,
      'GROUP_OWNER_IGNORED' satisfies WarningCode,
      MESSAGES.deactivatedByStatus,
    ],
  );
  await client.query(
    `CREATE TEMP TABLE import_memberships ON COMMIT DROP AS
     SELECT gr.id AS group_id, p.user_id
       FROM import_group_plan p
       JOIN groups gr ON gr.tenant_id = $1::bigint AND NOT gr.is_default AND lower(gr.name) = lower(p.group_name)
      WHERE p.op = 'ok' AND p.group_name IS NOT NULL
     UNION
     SELECT gr.id, p.user_id
       FROM import_group_plan p
       JOIN groups gr ON gr.is_default AND gr.owner_id = p.owner_id
      WHERE p.op = 'ok' AND p.group_name IS NULL`,
    [target.tenantId],
  );
  const added = await client.query(
    `INSERT INTO memberships (group_id, user_id, import_id)
     SELECT group_id, user_id, $1::uuid FROM import_memberships
     ON CONFLICT (group_id, user_id) DO NOTHING`,
    [target.uploadId],
  );
  await options.at?.('groups', client);
  const removed = await client.query(
    `DELETE FROM memberships m USING groups g
      WHERE m.group_id = g.id AND g.tenant_id = $1::bigint AND m.import_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM import_memberships w WHERE w.group_id = m.group_id AND w.user_id = m.user_id)
        AND NOT EXISTS (SELECT 1 FROM import_group_plan p WHERE p.op <> 'ok' AND p.user_id = m.user_id)`,
    [target.tenantId],
  );
  const wanted = await client.query<{ n: string }>('SELECT count(*) AS n FROM import_memberships');
  const created = added.rowCount ?? 0;
  const counts: ImportCounts = {
    ...emptyCounts(),
    rows: summary.rows,
    created,
    unchanged: Number(wanted.rows[0]?.n ?? 0) - created,
    deactivated: removed.rowCount ?? 0,
    errors: summary.errorCount + (planErrors.rowCount ?? 0),
    warnings: summary.warningCount + (warned.rowCount ?? 0),
  };
  return { mode: summary.mode, encoding: summary.encoding, counts, groupsCreated: (named.rowCount ?? 0) + (defaults.rowCount ?? 0) };
}
