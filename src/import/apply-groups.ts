/**
 * Applying groups.csv (PRODUCT.md §4), set-based like users.csv. The user must exist; an owner,
 * if given, must be an active Manager, School Administrator or Administrator; an owner without a
 * group means the owner's default group (created if needed); neither is an error. The file is the
 * whole set of memberships: import-made memberships it no longer lists are removed, except those
 * of users whose row was in error (found by the reader or against the database). A file that would
 * remove more than the tenant's threshold of its memberships is held, as a users.csv that would
 * deactivate too many users is (hold.ts), and applied only if an operator approves it.
 *
 * Counts: created = memberships added, unchanged = memberships already there, deactivated =
 * memberships removed; groupsCreated in the extra counts.
 */
import type { PoolClient } from 'pg';
import { copyLine, startCopy } from './copy-stream.js';
import { groupsHoldReason, unreviewedApproval } from './hold.js';
import { latinSpelling, lookalikeDifference } from './read/latin-lookalikes.js';
import { insertIssues, MESSAGES, receivedInTenantZone } from './issues.js';
import type { ImportHook, ImportTarget, ReadOutcome, ReadResult } from './engine-types.js';
import type { LastUsersRows } from './rejected-rows.js';
import { emptyCounts, type GroupRow, type ImportCounts, type WarningCode } from './types.js';

export interface GroupsApplyResult extends ReadOutcome {
  counts: ImportCounts;
  groupsCreated: number;
  /** nothing applied: the file removes more memberships than the tenant's threshold (`message` says so) */
  held: boolean;
  message: string | null;
}

export async function applyGroups(
  client: PoolClient,
  target: ImportTarget,
  source: ReadResult<GroupRow>,
  options: {
    at?: ImportHook | undefined;
    /** the lines of the last users.csv that list these usernames (see rejected-rows.ts) */
    lastUsersRows?: ((usernames: string[]) => Promise<LastUsersRows | undefined>) | undefined;
    /** validate: compute the report; the caller rolls back */
    dryRun: boolean;
    /** approval of a held import: apply whatever the number of removals, if no more than were held */
    overrideThreshold: boolean;
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
  // A user or owner that does not exist but whose name, spelt in Latin letters, is a user's: a
  // Cyrillic or Greek lookalike letter (latin-lookalikes.ts), said as such.
  const lookalikes = await findLookalikes(
    client,
    target,
    missing.rows.map((r) => r.username),
  );
  await client.query(
    `CREATE TEMP TABLE import_group_lookalikes ON COMMIT DROP AS
     SELECT DISTINCT ON (lower(name)) lower(name) AS key, username, why FROM unnest($1::text[], $2::text[], $3::text[]) AS l(name, username, why)`,
    [lookalikes.map((l) => l.name), lookalikes.map((l) => l.username), lookalikes.map((l) => l.why)],
  );
  // The user a lookalike line meant keeps its memberships, as the user of any line in error does.
  await client.query(
    `UPDATE import_group_plan p SET user_id = u.id FROM import_group_lookalikes l
       JOIN users u ON u.tenant_id = $1::bigint AND lower(u.username) = lower(l.username)
      WHERE p.op = 'user_missing' AND l.key = lower(p.username)`,
    [target.tenantId],
  );
  const planErrors = await client.query(
    `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, username)
     SELECT $1, 'error', p.line,
            CASE WHEN p.op = 'user_missing' THEN 'username' WHEN p.op = 'empty' THEN 'group' ELSE 'owner' END,
            CASE WHEN p.op = 'user_missing' THEN p.username WHEN p.op = 'empty' THEN NULL ELSE p.owner END,
            CASE p.op WHEN 'user_missing' THEN CASE WHEN r.key IS NOT NULL THEN format($7, p.username, $8::text, r.line, r.why)
                                                    WHEN l.key IS NOT NULL THEN format($10, p.username, l.username, l.why)
                                                    ELSE format($2, p.username) END
                      WHEN 'owner_missing' THEN CASE WHEN ro.key IS NOT NULL THEN format($9, p.owner, $8::text, ro.line, ro.why)
                                                     WHEN lo.key IS NOT NULL THEN format($11, p.owner, lo.username, lo.why)
                                                     ELSE format($3, p.owner) END
                      WHEN 'owner_inactive' THEN format($4, p.owner_name)
                      WHEN 'owner_not_manager' THEN format($5, p.owner_name)
                      ELSE $6 END,
            p.username
       FROM import_group_plan p
       LEFT JOIN import_group_rejected r ON p.op = 'user_missing' AND r.key = lower(p.username)
       LEFT JOIN import_group_rejected ro ON p.op = 'owner_missing' AND ro.key = lower(p.owner)
       LEFT JOIN import_group_lookalikes l ON p.op = 'user_missing' AND l.key = lower(p.username)
       LEFT JOIN import_group_lookalikes lo ON p.op = 'owner_missing' AND lo.key = lower(p.owner)
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
      MESSAGES.groupUserLookalike,
      MESSAGES.groupOwnerLookalike,
    ],
  );
  await insertIssues(client, target.uploadId, 'error', summary.errors);
  await insertIssues(client, target.uploadId, 'warning', summary.warnings);

  // Lines applied, but not quite as written: an inactive user's membership, and an owner given
  // for a group that has another one (groups keep the owner they were created with: an earlier
  // import's, or this file's first line for the group, which is the one the group is created with
  // below). Told before anything is written, so that a held file's report tells them too.
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
     SELECT $1::uuid, 'warning', p.line, 'owner', p.owner, format($3, e.name, o.username), $9, p.username
       FROM import_group_plan p
       JOIN (SELECT DISTINCT ON (lower(f.group_name)) lower(f.group_name) AS key, coalesce(gr.name, f.group_name) AS name,
                    CASE WHEN gr.id IS NULL THEN f.owner_id ELSE gr.owner_id END AS owner_id
               FROM import_group_plan f
               LEFT JOIN groups gr ON gr.tenant_id = $4::bigint AND NOT gr.is_default AND lower(gr.name) = lower(f.group_name)
              WHERE f.op = 'ok' AND f.group_name IS NOT NULL
              ORDER BY lower(f.group_name), f.line) e ON e.key = lower(p.group_name)
       JOIN users o ON o.id = e.owner_id
      WHERE p.op = 'ok' AND p.owner_id IS NOT NULL AND e.owner_id <> p.owner_id`,
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
  const errors = summary.errorCount + (planErrors.rowCount ?? 0);
  const warnings = summary.warningCount + (warned.rowCount ?? 0);

  // The import-made memberships the file no longer lists, except those of users whose row was in
  // error (found by the reader or against the database): what a full sync removes. Decided before
  // anything is written, so that the safety hold can keep the file from removing them. A membership
  // is listed by a line of its user naming its group (ignoring case), or, for a default group, its owner.
  const removals = await client.query(
    `CREATE TEMP TABLE import_group_removals ON COMMIT DROP AS
     SELECT m.group_id, m.user_id
       FROM memberships m JOIN groups g ON g.id = m.group_id
      WHERE g.tenant_id = $1::bigint AND m.import_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM import_group_plan p
                         WHERE p.op = 'ok' AND p.user_id = m.user_id
                           AND CASE WHEN p.group_name IS NULL THEN 'o' || p.owner_id ELSE 'g' || lower(p.group_name) END
                             = CASE WHEN g.is_default THEN 'o' || g.owner_id ELSE 'g' || lower(g.name) END)
        AND NOT EXISTS (SELECT 1 FROM import_group_plan p WHERE p.op <> 'ok' AND p.user_id = m.user_id)`,
    [target.tenantId],
  );
  const removing = removals.rowCount ?? 0;
  const hold = removing === 0 ? null : await holdFor(client, target, removing, options.dryRun);
  const holding = hold !== null && !options.overrideThreshold && !options.dryRun;
  if (options.overrideThreshold && removing > 0) await refuseUnreviewed(client, target);
  // A held file's counts are what it would do: its groups and memberships are written as an
  // applied file's are, to count them, and then rolled back.
  if (holding) await client.query('SAVEPOINT import_groups_held');

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
  // Groups created just now have no statistics: the planner takes them for a handful of rows and
  // joins each line of the file to every group by a nested loop, comparing lower(name) each time
  // (a first groups.csv of 40,000 lines and 400 classes took 18 s here, 400,000 lines hours). A
  // hash join does it in one pass whatever the estimate. (ANALYZE of groups in every import would
  // make each tenant's import wait for the others' to commit: two ANALYZEs of a table conflict.)
  await client.query('SET LOCAL enable_nestloop = off');
  await client.query(
    `CREATE TEMP TABLE import_memberships ON COMMIT DROP AS
     SELECT gr.id AS group_id, p.user_id
       FROM import_group_plan p
       JOIN groups gr ON gr.tenant_id = $1::bigint AND NOT gr.is_default AND lower(gr.name) = lower(p.group_name)
      WHERE p.op = 'ok' AND p.group_name IS NOT NULL
     UNION
     SELECT gr.id, p.user_id
       FROM import_group_plan p
       JOIN groups gr ON gr.tenant_id = $1::bigint AND gr.is_default AND gr.owner_id = p.owner_id
      WHERE p.op = 'ok' AND p.group_name IS NULL`,
    [target.tenantId],
  );
  // Back to the default for the rest of the transaction only (RESET would set it for the session,
  // which outlives the transaction on a pooled connection).
  await client.query('SET LOCAL enable_nestloop TO DEFAULT');
  const added = await client.query(
    `INSERT INTO memberships (group_id, user_id, import_id)
     SELECT group_id, user_id, $1::uuid FROM import_memberships
     ON CONFLICT (group_id, user_id) DO NOTHING`,
    [target.uploadId],
  );
  const wanted = await client.query<{ n: string }>('SELECT count(*) AS n FROM import_memberships');
  const created = added.rowCount ?? 0;
  const counts: ImportCounts = {
    ...emptyCounts(),
    rows: summary.rows,
    created,
    unchanged: Number(wanted.rows[0]?.n ?? 0) - created,
    deactivated: removing,
    errors,
    warnings,
  };
  const groupsCreated = (named.rowCount ?? 0) + (defaults.rowCount ?? 0);
  const outcome = { mode: summary.mode, encoding: summary.encoding, counts, groupsCreated };
  if (holding) {
    await client.query('ROLLBACK TO SAVEPOINT import_groups_held');
    await client.query(
      `INSERT INTO import_hold_removals (upload_id, group_id, user_id, group_name, username)
       SELECT $1::uuid, r.group_id, r.user_id, g.name, u.username
         FROM import_group_removals r JOIN groups g ON g.id = r.group_id JOIN users u ON u.id = r.user_id`,
      [target.uploadId],
    );
    return { ...outcome, held: true, message: hold };
  }
  await options.at?.('groups', client);
  if (removing > 0) {
    // Also in a dry run (rolled back by its caller): unusable-file.ts counts what it took away.
    await client.query(`DELETE FROM memberships m USING import_group_removals r WHERE m.group_id = r.group_id AND m.user_id = r.user_id`);
  }
  // Approved, the hold's message (approve or reject it) is no longer true; a dry run says it would hold.
  return { ...outcome, held: false, message: options.dryRun ? hold : null };
}

/** Of usernames that name no user, those that name one once spelt in Latin letters, with what sets them apart. */
async function findLookalikes(
  client: PoolClient,
  target: ImportTarget,
  names: string[],
): Promise<Array<{ name: string; username: string; why: string }>> {
  const spelt = names.flatMap((name) => {
    const latin = latinSpelling(name);
    return latin === undefined ? [] : [{ name, latin }];
  });
  if (spelt.length === 0) return [];
  const { rows } = await client.query<{ name: string; username: string }>(
    `SELECT l.name, u.username FROM unnest($2::text[], $3::text[]) AS l(name, latin)
       JOIN users u ON u.tenant_id = $1::bigint AND lower(u.username) = lower(l.latin)`,
    [target.tenantId, spelt.map((s) => s.name), spelt.map((s) => s.latin)],
  );
  return rows.map((r) => ({ ...r, why: lookalikeDifference(r.name, r.username) }));
}

/** The hold's reason when `removing` memberships are more than the tenant's threshold of them all. */
async function holdFor(client: PoolClient, target: ImportTarget, removing: number, dryRun: boolean): Promise<string | null> {
  const { rows } = await client.query<{ n: string }>(
    'SELECT count(*) AS n FROM memberships m JOIN groups g ON g.id = m.group_id WHERE g.tenant_id = $1::bigint',
    [target.tenantId],
  );
  return groupsHoldReason(removing, Number(rows[0]?.n ?? 0), target, dryRun);
}

/**
 * An approval removes what the hold report showed, no more: if memberships were added since (by
 * hand, or by a users.csv whose users this file does not list), it would now remove memberships
 * nobody reviewed. Throws, so the approval's transaction rolls back and the import stays held.
 */
async function refuseUnreviewed(client: PoolClient, target: ImportTarget): Promise<void> {
  const { rows } = await client.query<{ username: string; name: string; n: string }>(
    `SELECT u.username, g.name, count(*) OVER () AS n
       FROM import_group_removals r JOIN groups g ON g.id = r.group_id JOIN users u ON u.id = r.user_id
      WHERE NOT EXISTS (SELECT 1 FROM import_hold_removals h
                         WHERE h.upload_id = $1::uuid AND h.group_id = r.group_id AND h.user_id = r.user_id)
      ORDER BY lower(g.name), lower(u.username) LIMIT 5`,
    [target.uploadId],
  );
  const first = rows[0];
  if (first === undefined) return;
  throw unreviewedApproval(
    target.uploadId,
    'groups.csv',
    Number(first.n),
    rows.map((r) => `${r.username} from ${r.name}`),
  );
}
