/**
 * Applying users.csv (PRODUCT.md §3), set-based: the reader's rows are streamed with COPY into a
 * temporary staging table while parsing continues, and every decision (duplicates, creates,
 * updates, unchanged, deactivations, reactivations, the safety hold) is one SQL statement over
 * the whole file. Unchanged rows are filtered out before anything is written, so an unchanged
 * night writes almost nothing (an `ON CONFLICT DO UPDATE … WHERE` would still lock every row).
 *
 * Runs inside the caller's transaction; the caller commits or rolls back.
 */
import type { PoolClient } from 'pg';
import { startCopy, copyLine } from './copy-stream.js';
import { hashChangedPasswords } from './apply-passwords.js';
import { insertIssues, MESSAGES } from './issues.js';
import { passwordCheck, PasswordSealer, type CheckKey } from './password.js';
import type { PasswordHasher } from './hash-pool.js';
import type { ImportHook, ImportTarget, ReadOutcome, ReadResult, ReadSummary } from './engine-types.js';
import { emptyCounts, type ImportCounts, type ReadItem, type UserRow } from './types.js';

/** Optional columns of users.csv; a column absent from the file keeps the stored values. */
const FIELDS = [
  ['email', 'email', 'text'],
  ['firstName', 'first_name', 'text'],
  ['lastName', 'last_name', 'text'],
  ['schoolId', 'school_id', 'bigint'],
  ['graduationYear', 'graduation_year', 'integer'],
  ['accessType', 'access_type', 'text'],
  ['role', 'role', 'text'],
  ['sisId', 'sis_id', 'text'],
] as const satisfies readonly (readonly [keyof UserRow, string, string])[];

const STAGING_COLUMNS = [
  'line',
  'valid',
  'username',
  'invalid_key',
  'action',
  'pw_check',
  'pw_sealed',
  ...FIELDS.map(([, column]) => column),
];

export interface UsersApplyOptions {
  hasher: PasswordHasher | undefined;
  checkKey: CheckKey;
  /** validate: compute the report, write nothing, hash nothing */
  dryRun: boolean;
  /** approval of a held import: apply whatever the number of deactivations */
  overrideThreshold: boolean;
  at?: ImportHook | undefined;
}

export interface UsersApplyResult extends ReadOutcome {
  counts: ImportCounts;
  held: boolean;
  message: string | null;
}

export async function applyUsers(
  client: PoolClient,
  target: ImportTarget,
  source: ReadResult<ReadItem>,
  options: UsersApplyOptions,
): Promise<UsersApplyResult> {
  const at = options.at ?? (async () => undefined);
  const staged = await stageUsers(client, target, source, options.checkKey);
  const summary = source.summary();
  await at('staged', client);

  // Plans below hash-join and aggregate whole files; in memory rather than spilled to disk.
  await client.query(`SET LOCAL work_mem = '128MB'`);
  await client.query('ANALYZE pg_temp.import_rows');
  await client.query(`
    CREATE TEMP TABLE import_dups ON COMMIT DROP AS
    SELECT username_key, array_agg(line ORDER BY line) AS lines
      FROM import_rows WHERE username_key IS NOT NULL
     GROUP BY username_key HAVING count(*) > 1 AND bool_or(valid)`);
  await planChanges(client, target, summary.mode, staged.present);
  await at('planned', client);

  // n: rows per operation; v: of them, rows of the file (a full sync's deactivations have no
  // line); h: passwords to hash.
  const tally = await client.query<{ op: string; n: string; v: string; h: string }>(
    `SELECT op, count(*) AS n, count(line) AS v,
            count(*) FILTER (WHERE needs_hash AND op IN ('create', 'update', 'reactivate')) AS h
       FROM import_changes GROUP BY op
     UNION ALL SELECT 'active', count(*), 0, 0 FROM users WHERE tenant_id = $1 AND active`,
    [target.tenantId],
  );
  const toHash = tally.rows.reduce((sum, r) => sum + Number(r.h), 0);
  const changed = tally.rows.reduce((sum, r) => sum + Number(r.v), 0);
  const n = (op: string) => Number(tally.rows.find((r) => r.op === op)?.n ?? 0);
  const sqlErrors = n('duplicate') + n('exists') + n('missing_update') + n('missing_delete') + n('not_imported');
  const counts: ImportCounts = {
    ...emptyCounts(),
    rows: summary.rows,
    created: n('create'),
    updated: n('update'),
    reactivated: n('reactivate'),
    deactivated: n('deactivate'),
    unchanged: staged.valid - changed,
    errors: summary.errorCount + sqlErrors,
  };

  await insertIssues(client, target.uploadId, 'error', summary.errors);
  await insertIssues(client, target.uploadId, 'warning', summary.warnings);
  const sqlWarnings = await insertPlanIssues(client, target.uploadId);
  counts.warnings = summary.warningCount + sqlWarnings;

  const hold = holdReason(counts.deactivated, n('active'), target, options.dryRun);
  if (hold && !options.overrideThreshold) {
    if (!options.dryRun) {
      await client.query(
        `INSERT INTO import_hold_deactivations (upload_id, user_id, username)
         SELECT $1, user_id, stored_username FROM import_changes WHERE op = 'deactivate'`,
        [target.uploadId],
      );
    }
    return { ...outcomeOf(summary), counts, held: true, message: hold };
  }
  if (options.dryRun) return { ...outcomeOf(summary), counts, held: false, message: null };

  await hashChangedPasswords(client, options.hasher, staged.sealer, toHash);
  await at('hashed', client);
  await writeChanges(client, target, staged.present, at);
  return { ...outcomeOf(summary), counts, held: false, message: null };
}

function outcomeOf(summary: ReadSummary): ReadOutcome {
  return { mode: summary.mode, encoding: summary.encoding };
}

/** Why this many deactivations must be held, or null when they are within the threshold. */
export function holdReason(deactivations: number, active: number, target: ImportTarget, dryRun = false): string | null {
  const byPercent = deactivations > (active * target.thresholdPercent) / 100;
  const byCount = target.thresholdCount !== null && deactivations > target.thresholdCount;
  if (!byPercent && !byCount) return null;
  const pct = active === 0 ? 100 : Math.round((deactivations / active) * 1000) / 10;
  const limit =
    byCount && target.thresholdCount !== null
      ? `the tenant's limit of ${target.thresholdCount} deactivations`
      : `the tenant's threshold of ${target.thresholdPercent}% of active users`;
  const what = `this file would deactivate ${deactivations} of ${active} active users (${pct}%), more than ${limit}.`;
  if (dryRun) return `An import of this file would be held: ${what} An operator would have to approve it.`;
  return (
    `Held: ${what} Nothing was applied. If the file is right, approve it with "rosterd import approve ${target.uploadId}"; ` +
    `otherwise reject it with "rosterd import reject ${target.uploadId}" and send a corrected file.`
  );
}

interface Staged {
  valid: number;
  /** columns present in the file (undefined in every row means the column is absent) */
  present: Set<string>;
  sealer: PasswordSealer;
}

async function stageUsers(client: PoolClient, target: ImportTarget, source: ReadResult<ReadItem>, key: CheckKey): Promise<Staged> {
  await client.query(`
    CREATE TEMP TABLE import_rows (
      line integer NOT NULL, valid boolean NOT NULL, username text, invalid_key text, action text,
      pw_check text, pw_sealed bytea, email text, first_name text, last_name text, school_id bigint,
      graduation_year integer, access_type text, role text, sis_id text,
      -- Identity is Postgres's lower(), the same function as the users unique index uses.
      username_key text GENERATED ALWAYS AS (lower(coalesce(username, invalid_key))) STORED
    ) ON COMMIT DROP`);
  const sealer = new PasswordSealer();
  const present = new Set<string>();
  let valid = 0;
  const copy = startCopy(client, 'import_rows', STAGING_COLUMNS);
  try {
    for await (const batch of source.items) {
      let chunk = '';
      for (const item of batch) {
        if (item.kind === 'invalid') {
          chunk += copyLine([item.line, false, null, item.usernameKey, null, null, null, ...FIELDS.map(() => null)]);
          continue;
        }
        const row = item.row;
        valid++;
        const password = row.password === undefined || row.password === '' ? null : row.password;
        const values = FIELDS.map(([field, column]) => {
          const value = row[field];
          if (value !== undefined) present.add(column);
          return value;
        });
        chunk += copyLine([
          row.line,
          true,
          row.username,
          null,
          row.action ?? null,
          password === null ? null : passwordCheck(key, String(target.tenantId), row.usernameKey, password),
          password === null ? null : sealer.seal(password),
          ...values,
        ]);
      }
      await copy.write(chunk);
    }
  } catch (err) {
    await copy.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  await copy.end();
  return { valid, present, sealer };
}

/** Field-by-field comparison, only for the columns the file has. */
function changedExpression(present: Set<string>): string {
  const parts = ['u.username <> s.username', '(s.pw_check IS NOT NULL AND u.password_check IS DISTINCT FROM s.pw_check)'];
  for (const [, column] of FIELDS) if (present.has(column)) parts.push(`u.${column} IS DISTINCT FROM s.${column}`);
  return parts.join(' OR ');
}

/**
 * import_changes: every valid row whose outcome is not "unchanged", with its operation, and (full
 * sync) every import-made active user the file does not list, as a 'deactivate' row without a
 * line (a delta's `delete` rows of import-made users are 'deactivate' rows too). One join over the file and the roster decides everything; later statements read this
 * table, which is small on a quiet night.
 *
 * Full sync uses a FULL JOIN so that creates, updates and deactivations come from one hash join.
 * Invalid rows take part in it only to protect their users from deactivation.
 */
async function planChanges(client: PoolClient, target: ImportTarget, mode: 'full' | 'delta', present: Set<string>): Promise<void> {
  const changed = changedExpression(present);
  const needsHash = '(s.pw_check IS NOT NULL AND u.password_check IS DISTINCT FROM s.pw_check)';
  if (mode === 'full') {
    await client.query(
      `CREATE TEMP TABLE import_changes ON COMMIT DROP AS
       SELECT * FROM (
         SELECT s.*, u.id AS user_id, u.username AS stored_username,
                CASE WHEN s.line IS NULL THEN CASE WHEN u.active AND u.created_by_import THEN 'deactivate' ELSE 'unchanged' END
                     WHEN NOT s.valid THEN 'unchanged'
                     WHEN d.username_key IS NOT NULL THEN 'duplicate'
                     WHEN u.id IS NULL THEN 'create'
                     WHEN NOT u.active THEN 'reactivate'
                     WHEN ${changed} THEN 'update'
                     ELSE 'unchanged' END AS op,
                ${needsHash} AS needs_hash
           FROM import_rows s
           LEFT JOIN import_dups d ON d.username_key = s.username_key
           FULL JOIN (SELECT * FROM users WHERE tenant_id = $1::bigint) u ON lower(u.username) = s.username_key
       ) planned
       WHERE op <> 'unchanged'`,
      [target.tenantId],
    );
    return;
  }
  await client.query(
    `CREATE TEMP TABLE import_changes ON COMMIT DROP AS
     SELECT * FROM (
       SELECT s.*, u.id AS user_id, u.username AS stored_username,
              CASE WHEN d.username_key IS NOT NULL THEN 'duplicate'
                   WHEN s.action = 'add' AND u.id IS NULL THEN 'create'
                   WHEN s.action = 'add' AND u.active THEN 'exists'
                   WHEN s.action = 'add' THEN 'reactivate'
                   WHEN s.action = 'update' AND u.id IS NULL THEN 'missing_update'
                   WHEN s.action = 'update' AND (${changed}) THEN 'update'
                   WHEN s.action = 'update' THEN 'unchanged'
                   WHEN u.id IS NULL THEN 'missing_delete'
                   WHEN NOT u.active THEN 'unchanged'
                   WHEN NOT u.created_by_import THEN 'not_imported'
                   ELSE 'deactivate' END AS op,
              ${needsHash} AS needs_hash
         FROM import_rows s
         LEFT JOIN import_dups d ON d.username_key = s.username_key
         LEFT JOIN users u ON u.tenant_id = $1::bigint AND lower(u.username) = s.username_key
        WHERE s.valid
     ) planned
     WHERE op <> 'unchanged'`,
    [target.tenantId],
  );
}

/** Row errors and warnings that only the database can tell (duplicates, delta actions). */
async function insertPlanIssues(client: PoolClient, uploadId: string): Promise<number> {
  await client.query(
    `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message)
     SELECT $1, 'error', c.line, CASE WHEN c.op = 'duplicate' THEN 'username' ELSE 'action' END, c.username,
            CASE c.op
              WHEN 'duplicate' THEN format($2, array_to_string(d.lines, ', '))
              WHEN 'exists' THEN format($3, c.username)
              WHEN 'missing_update' THEN format($4, c.username)
              WHEN 'missing_delete' THEN format($5, c.username)
              ELSE format($6, c.username) END
       FROM import_changes c LEFT JOIN import_dups d ON d.username_key = c.username_key
      WHERE c.op IN ('duplicate', 'exists', 'missing_update', 'missing_delete', 'not_imported')`,
    [uploadId, MESSAGES.duplicate, MESSAGES.addExists, MESSAGES.updateMissing, MESSAGES.deleteMissing, MESSAGES.deleteNotImported],
  );
  const warned = await client.query(
    `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message)
     SELECT $1, 'warning', line, 'action', username, format($2, username)
       FROM import_changes WHERE op = 'reactivate' AND action = 'add'`,
    [uploadId, MESSAGES.addReactivated],
  );
  return warned.rowCount ?? 0;
}

async function writeChanges(
  client: PoolClient,
  target: ImportTarget,
  present: Set<string>,
  at: ImportHook,
): Promise<void> {
  const columns = FIELDS.map(([, column]) => column);
  await client.query(
    `INSERT INTO users (tenant_id, username, ${columns.join(', ')}, password_hash, password_check,
                        created_by_import, created_import_id, last_import_id)
     SELECT $1::bigint, c.username, ${columns.map((c) => `c.${c}`).join(', ')}, h.hash,
            CASE WHEN h.hash IS NULL THEN NULL ELSE c.pw_check END, true, $2::uuid, $2::uuid
       FROM import_changes c LEFT JOIN import_hashes h ON h.line = c.line
      WHERE c.op = 'create'`,
    [target.tenantId, target.uploadId],
  );
  await at('created', client);
  const sets = columns.filter((c) => present.has(c)).map((c) => `${c} = c.${c}`);
  await client.query(
    `UPDATE users u SET username = c.username, ${sets.map((s) => s + ', ').join('')}
            password_hash = COALESCE(h.hash, u.password_hash),
            password_check = CASE WHEN h.hash IS NULL THEN u.password_check ELSE c.pw_check END,
            active = u.active OR c.op = 'reactivate',
            deactivated_at = CASE WHEN c.op = 'reactivate' THEN NULL ELSE u.deactivated_at END,
            last_import_id = $1::uuid, updated_at = now()
       FROM import_changes c LEFT JOIN import_hashes h ON h.line = c.line
      WHERE u.id = c.user_id AND c.op IN ('update', 'reactivate')`,
    [target.uploadId],
  );
  await at('updated', client);
  await client.query(
    `UPDATE users u SET active = false, deactivated_at = now(), updated_at = now(), last_import_id = $1::uuid
       FROM import_changes c WHERE u.id = c.user_id AND c.op = 'deactivate'`,
    [target.uploadId],
  );
  await at('deactivated', client);
}
