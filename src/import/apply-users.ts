/**
 * Applying users.csv (PRODUCT.md §3), set-based: the reader's rows are streamed with COPY into an
 * unlogged staging table of the import (staging-tables.ts) while parsing continues, and every
 * decision (duplicates, creates, updates, unchanged, deactivations, reactivations, the safety
 * hold) is one SQL statement over the whole file. Unchanged rows are filtered out before anything
 * is written, so an unchanged night writes almost nothing (an `ON CONFLICT DO UPDATE … WHERE`
 * would still lock every row).
 *
 * Cost (npm run bench:import, 1M rows): staging runs at the speed of the slower of the parser and
 * Postgres's COPY, which overlap; after it, a sort of the key hashes for duplicates, one parallel
 * hash join with the roster, and writes only for what changed. A tenant's first full sync without
 * passwords skips all of it: it is copied straight into users (copyFresh).
 *
 * Runs inside the caller's transaction; the caller commits or rolls back.
 */
import type { PoolClient } from 'pg';
import { PG, pgCode } from '../errors.js';
import { startCopy, copyField } from './copy-stream.js';
import { dropStagingTables, stagingTables, type StagingTables } from './staging-tables.js';
import { hashChangedPasswords } from './apply-passwords.js';
import { UsernameFoldSet } from './fold-set.js';
import { holdReason, unreviewedApproval } from './hold.js';
import { insertIssues, MESSAGES } from './issues.js';
import { DEFAULT_MAX_ERRORS as MAX_KEPT_ISSUES } from './read/summary.js';
import { passwordCheck, PasswordSealer, type CheckKey } from './password.js';
import type { PasswordHasher } from './hash-pool.js';
import type { ImportHook, ImportTarget, ReadOutcome, ReadResult, ReadSummary } from './engine-types.js';
import { emptyCounts, type ImportCounts, type ReadItem, type UserRow, type WarningCode } from './types.js';

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
  'invalid_username',
  'action',
  'inactive',
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
  /**
   * The same file read again from the start. Given, a tenant's first full sync is copied straight
   * into users (see copyFresh), and this re-reads the file if that meets a duplicate.
   */
  reread?: (() => ReadResult<ReadItem>) | undefined;
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
  if (options.reread !== undefined && !options.dryRun) {
    const direct = await copyFresh(client, target, source, at);
    if (direct.kind === 'done') return direct.result;
    source = direct.kind === 'duplicate' ? options.reread() : direct.source;
  }
  // Staging tables of this import, dropped before the caller commits; on an error the caller's
  // rollback takes them away.
  const t = stagingTables(client, target.uploadId);
  const result = await applyStaged(client, t, target, source, options, at);
  await dropStagingTables(client, t);
  return result;
}

/** The file staged, planned and applied through the staging tables t. */
async function applyStaged(
  client: PoolClient,
  t: StagingTables,
  target: ImportTarget,
  source: ReadResult<ReadItem>,
  options: UsersApplyOptions,
  at: ImportHook,
): Promise<UsersApplyResult> {
  const staged = await stageUsers(client, t, target, source, options.checkKey);
  const summary = source.summary();
  await at('staged', client);

  // Plans below hash-join and aggregate whole files; in memory rather than spilled to disk. Merge
  // joins are off: with the statistics of the staging tables missing (no ANALYZE: it costs more
  // than it saves) and those of users possibly stale (a first import of a million rows was never
  // analyzed), the planner can take both sides for small and sort a million rows twice, to disk
  // (measured: 3.5 s, against about 1 s for the hash join of the same rows). Both settings last
  // until the import's transaction ends; what follows the import in it only reads a few rows.
  await client.query(`SET LOCAL work_mem = '128MB'`);
  await client.query('SET LOCAL enable_mergejoin = off');
  // The staging tables are not temporary, so the statements over the whole file may use parallel
  // workers. At the default costs the planner keeps the join with the roster serial, which a
  // Parallel Hash Full Join beats by about a third (measured: 0.75 s against 1.15 s, 1M rows, 2
  // cores); these make it parallel. min_parallel_table_scan_size stays: a small table (import_dups)
  // scanned serially keeps the plan's subqueries parallel-safe.
  await client.query('SET LOCAL max_parallel_workers_per_gather = 2');
  await client.query('SET LOCAL parallel_setup_cost = 100');
  await client.query('SET LOCAL parallel_tuple_cost = 0.01');
  // Duplicates, keys only (their lines are gathered later, and only if there is one). First the
  // 64-bit hashes of the keys that occur more than once, grouped by sorting: sorting a million
  // bigints is several times cheaper than sorting (or, without statistics, hash-aggregating) a
  // million strings (measured: 0.1 s against 0.4 to 0.8 s). Only if some hash repeats, which a
  // real duplicate makes it do (a hash collision too, harmlessly), are those keys compared exactly.
  const keyHash = 'hashtextextended(username_key COLLATE "C", 0)';
  await client.query('SET LOCAL enable_hashagg = off');
  const repeated = await client.query(`
    CREATE UNLOGGED TABLE ${t.dupHashes} AS
    SELECT ${keyHash} AS h FROM ${t.rows} WHERE username_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1`);
  await client.query('SET LOCAL enable_hashagg TO DEFAULT'); // not RESET: that is session-wide
  const dups = await client.query(
    (repeated.rowCount ?? 0) === 0
      ? `CREATE UNLOGGED TABLE ${t.dups} (username_key text)`
      : `CREATE UNLOGGED TABLE ${t.dups} AS
         SELECT username_key FROM ${t.rows} WHERE ${keyHash} IN (SELECT h FROM ${t.dupHashes})
          GROUP BY username_key HAVING count(*) > 1`,
  );
  // A full sync into a tenant without users (its first import) creates every valid row that is
  // not a duplicate: no join with the roster, and the creates are read straight from import_rows.
  const fresh =
    summary.mode === 'full' &&
    (await client.query(`SELECT 1 FROM users WHERE tenant_id = $1::bigint LIMIT 1`, [target.tenantId])).rowCount === 0;
  const plan: Plan = { fresh, duplicates: (dups.rowCount ?? 0) > 0 };
  await planChanges(client, t, target, summary.mode, staged.present, plan);
  await at('planned', client);

  // n: rows per operation; v: of them, rows of the file (a full sync's deactivations have no
  // line); h: passwords to hash; l: rows whose status is inactive (applied like updates).
  const tally = await client.query<{ op: string; n: string; v: string; h: string; l: string }>(
    `SELECT op, count(*) AS n, count(line) AS v,
            count(*) FILTER (WHERE needs_hash AND op IN (${WRITTEN_ROWS})) AS h,
            count(*) FILTER (WHERE listed_inactive) AS l
       FROM ${t.changes} GROUP BY op`,
  );
  const n = (op: string) => Number(tally.rows.find((r) => r.op === op)?.n ?? 0);
  const listedInactive = Number(tally.rows.find((r) => r.op === 'deactivate')?.l ?? 0);
  let toHash = tally.rows.reduce((sum, r) => sum + Number(r.h), 0);
  let changed = tally.rows.reduce((sum, r) => sum + Number(r.v), 0);
  let created = n('create');
  if (fresh) {
    // import_changes holds only the duplicates; every other valid row is a create.
    created = staged.valid - n('duplicate');
    changed += created;
    if (staged.passwords > 0) {
      const h = await client.query<{ h: string }>(
        `SELECT count(*) AS h FROM ${t.rows} s WHERE ${freshCreates(t, plan)} AND s.pw_check IS NOT NULL`,
      );
      toHash = Number(h.rows[0]?.h ?? 0);
    }
  }
  // A rejected row whose username another row repeats is that duplicate's other half (§3: both
  // rows are errors): told so as well, or fixing its other errors would only meet this one the
  // next night. It is not in import_changes, which holds what happens to valid rows.
  const rejectedTwins = plan.duplicates
    ? Number(
        (
          await client.query<{ n: string }>(
            `SELECT count(*) AS n FROM ${t.rows} s WHERE NOT s.valid AND s.username_key IN (SELECT username_key FROM ${t.dups})`,
          )
        ).rows[0]?.n ?? 0,
      )
    : 0;
  const sqlErrors = n('duplicate') + rejectedTwins + n('exists') + n('missing_update') + n('missing_delete') + n('not_imported');
  const counts: ImportCounts = {
    ...emptyCounts(),
    rows: summary.rows,
    created,
    updated: n('update'),
    reactivated: n('reactivate'),
    deactivated: n('deactivate'),
    unchanged: staged.valid - changed,
    errors: summary.errorCount + sqlErrors,
  };
  // The hold compares deactivations with active users: nothing to count when nothing goes.
  const active =
    counts.deactivated === 0
      ? 0
      : Number(
          (await client.query<{ n: string }>(`SELECT count(*) AS n FROM users WHERE tenant_id = $1::bigint AND active`, [target.tenantId]))
            .rows[0]?.n ?? 0,
        );

  await insertIssues(client, target.uploadId, 'error', summary.errors);
  await insertIssues(client, target.uploadId, 'warning', summary.warnings);
  // Issues the database finds are counted in full but kept, like the reader's, up to MAX_KEPT_ISSUES
  // of each kind: a report of a first import of millions of users must still fit in the outbox.
  const room = {
    errors: Math.max(0, MAX_KEPT_ISSUES - summary.errors.length),
    warnings: Math.max(0, MAX_KEPT_ISSUES - summary.warnings.length),
  };
  const delta = summary.mode === 'delta' ? n('reactivate') : 0;
  const sqlWarnings = await insertPlanIssues(client, t, target.uploadId, sqlErrors, delta, room);
  room.warnings -= Math.min(room.warnings, sqlWarnings);
  // A file with a password column that leaves a new user's blank: that user cannot sign in with
  // a password (a blank keeps an existing user's, §3, so only new users are told about).
  let unset = 0;
  if (summary.columns.includes('password') && counts.created > 0) {
    const from = fresh
      ? `FROM ${t.rows} s WHERE ${freshCreates(t, plan)}`
      : `FROM ${t.changes} c JOIN ${t.rows} s ON s.line = c.line WHERE c.op = 'create'`;
    const { rows } = await client.query<{ total: number }>(
      `WITH unset AS (SELECT s.line, s.username ${from} AND s.pw_check IS NULL),
            kept AS (INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
                     SELECT $1, 'warning', line, 'password', NULL, format($2, username), $4, username FROM unset ORDER BY line LIMIT $3)
       SELECT count(*)::int AS total FROM unset`,
      [target.uploadId, MESSAGES.newWithoutPassword, room.warnings, 'NEW_USER_WITHOUT_PASSWORD' satisfies WarningCode],
    );
    unset = rows[0]?.total ?? 0;
    room.warnings -= Math.min(room.warnings, unset);
  }
  const stayInactive = summary.mode === 'delta' ? await warnUpdatesOfInactive(client, t, target, plan, room.warnings) : 0;
  room.warnings -= Math.min(room.warnings, stayInactive);
  const cleared = summary.mode === 'delta' ? await warnClearedValues(client, t, target, staged.present, room.warnings) : 0;
  room.warnings -= Math.min(room.warnings, cleared);
  const renamed = !fresh && counts.created > 0 && staged.present.has('sis_id') ? await warnSisIdTaken(client, t, target, room.warnings) : 0;
  counts.warnings = summary.warningCount + sqlWarnings + unset + stayInactive + cleared + renamed;

  const hold = holdReason(counts.deactivated, active, target, options.dryRun);
  if (hold && !options.overrideThreshold) {
    if (!options.dryRun) {
      await client.query(
        `INSERT INTO import_hold_deactivations (upload_id, user_id, username)
         SELECT $1, user_id, stored_username FROM ${t.changes} WHERE op = 'deactivate'`,
        [target.uploadId],
      );
    }
    return { ...outcomeOf(summary), counts, held: true, message: hold };
  }
  if (options.dryRun) return { ...outcomeOf(summary), counts, held: false, message: null };
  if (options.overrideThreshold && counts.deactivated > 0) await refuseUnreviewed(client, t, target);

  await hashChangedPasswords(client, options.hasher, staged.sealer, toHash, fresh ? freshHashes(t, plan) : changedHashes(t));
  await at('hashed', client);
  await writeChanges(client, t, target, staged.present, at, plan, {
    creates: counts.created,
    updates: counts.updated + counts.reactivated + listedInactive,
    deactivations: counts.deactivated - listedInactive,
    hashes: toHash,
  });
  return { ...outcomeOf(summary), counts, held: false, message: null };
}

/**
 * An approval applies what the hold report showed, no more: if the roster changed since (users
 * added by a delta, reactivated by hand), the file would now deactivate users nobody reviewed.
 * Throws, so the approval's transaction rolls back and the import stays held.
 */
async function refuseUnreviewed(client: PoolClient, t: StagingTables, target: ImportTarget): Promise<void> {
  const { rows } = await client.query<{ username: string; n: string }>(
    `SELECT c.stored_username AS username, count(*) OVER () AS n
       FROM ${t.changes} c
      WHERE c.op = 'deactivate'
        AND NOT EXISTS (SELECT 1 FROM import_hold_deactivations h WHERE h.upload_id = $1 AND h.user_id = c.user_id)
      ORDER BY lower(c.stored_username) LIMIT 5`,
    [target.uploadId],
  );
  const first = rows[0];
  if (first === undefined) return;
  throw unreviewedApproval(
    target.uploadId,
    'users.csv',
    Number(first.n),
    rows.map((r) => r.username),
  );
}

function outcomeOf(summary: ReadSummary): ReadOutcome {
  return { mode: summary.mode, encoding: summary.encoding };
}

/**
 * The FIELDS of a row in COPY text, each after a tab, in FIELDS order (spelt out: a loop over
 * FIELDS reading `row[name]` is a megamorphic property access per field, measurably slower).
 * `seen` records which columns had a value.
 */
function fieldsText(row: UserRow, seen: boolean[] | undefined): string {
  if (seen !== undefined) {
    if (row.email !== undefined) seen[0] = true;
    if (row.firstName !== undefined) seen[1] = true;
    if (row.lastName !== undefined) seen[2] = true;
    if (row.schoolId !== undefined) seen[3] = true;
    if (row.graduationYear !== undefined) seen[4] = true;
    if (row.accessType !== undefined) seen[5] = true;
    if (row.role !== undefined) seen[6] = true;
    if (row.sisId !== undefined) seen[7] = true;
  }
  return (
    `\t${copyField(row.email)}\t${copyField(row.firstName)}\t${copyField(row.lastName)}\t${copyField(row.schoolId)}` +
    `\t${copyField(row.graduationYear)}\t${copyField(row.accessType)}\t${copyField(row.role)}\t${copyField(row.sisId)}`
  );
}

/** users columns of a direct first import. */
const FRESH_COLUMNS = [
  'tenant_id',
  'username',
  ...FIELDS.map(([, column]) => column),
  'active',
  'deactivated_at',
  'created_by_import',
  'created_import_id',
  'last_import_id',
  'deactivated_import_id',
  'deactivated_how',
];

type Fresh = { kind: 'done'; result: UsersApplyResult } | { kind: 'duplicate' } | { kind: 'declined'; source: ReadResult<ReadItem> };

/**
 * A tenant's first full sync without passwords, copied straight into users: with no roster there
 * is nothing to compare, update, deactivate or hold, and the one check left, duplicate usernames
 * (ignoring case, among valid and invalid rows alike), is made as the rows go by (fold-set.ts),
 * with the users unique index (the very definition of a user's identity) behind it.
 * COPY inserts rows in batches, which INSERT … SELECT does not: a million rows inserted from the
 * staging table took about 1.7x a bare COPY of the file (after staging it), while this path, with
 * the parsing overlapping the COPY, takes about 1.8x in all. On a possible duplicate (fold-set.ts:
 * found before the index, which would put the username in Postgres's log) the COPY is abandoned;
 * everything it did is rolled back to the savepoint and the file is imported again the ordinary
 * way, which reports the duplicates. Anything else (an import with passwords, which
 * must be hashed before they are stored; a delta; a tenant with users) goes the ordinary way at
 * once, with the same reader.
 */
async function copyFresh(client: PoolClient, target: ImportTarget, source: ReadResult<ReadItem>, at: ImportHook): Promise<Fresh> {
  const empty = (await client.query('SELECT 1 FROM users WHERE tenant_id = $1::bigint LIMIT 1', [target.tenantId])).rowCount === 0;
  if (!empty) return { kind: 'declined', source };
  const it = source.items[Symbol.asyncIterator]();
  const first = await it.next();
  const summary = source.summary();
  const rest: ReadResult<ReadItem> = {
    summary: source.summary,
    items: (async function* () {
      if (first.done !== true) yield first.value;
      for (let b = await it.next(); b.done !== true; b = await it.next()) yield b.value;
    })(),
  };
  if (summary.mode !== 'full' || summary.columns.includes('password') || first.done === true) return { kind: 'declined', source: rest };

  await client.query('SAVEPOINT import_fresh');
  // A row whose status is inactive creates an inactive user, deactivated as of this transaction,
  // by this import, by its status.
  const { rows: started } = await client.query<{ now: string }>('SELECT now()::text AS now');
  const imported = `\tt\t${copyField(target.uploadId)}\t${copyField(target.uploadId)}`;
  const active = `\tt\t\\N${imported}\t\\N\t\\N\n`;
  const inactive = `\tf\t${copyField(started[0]?.now)}${imported}\t${copyField(target.uploadId)}\tstatus\n`;
  const prefix = `${copyField(target.tenantId)}\t`;
  const copy = startCopy(client, 'users', FRESH_COLUMNS);
  let created = 0;
  // Invalid rows' usernames are in it too: a valid row with the same one is a duplicate as well
  // (§3: both rows are errors), which the unique index cannot see since invalid rows are not copied.
  const seen = new UsernameFoldSet();
  try {
    for (let batch: IteratorResult<ReadItem[]> = first; batch.done !== true; batch = await it.next()) {
      let chunk = '';
      for (const item of batch.value) {
        if (item.kind === 'invalid') {
          if (item.username !== null && seen.addAndCheck(item.username)) throw new MaybeDuplicate();
          continue;
        }
        const row = item.row;
        if (row.password !== undefined && row.password !== '') throw new Error('a password reached a direct import');
        if (seen.addAndCheck(row.username)) throw new MaybeDuplicate();
        chunk += prefix + copyField(row.username) + fieldsText(row, undefined) + (row.inactive ? inactive : active);
        created++;
      }
      await copy.write(chunk);
    }
    await copy.end();
  } catch (err) {
    await copy.abort(err instanceof Error ? err : new Error(String(err)));
    await it.return?.();
    // The index catching a duplicate the fold did not (it folds more than any lower() does) is
    // still a duplicate, only logged by Postgres.
    if (!(err instanceof MaybeDuplicate) && pgCode(err) !== PG.UNIQUE_VIOLATION) throw err;
    await client.query('ROLLBACK TO SAVEPOINT import_fresh');
    return { kind: 'duplicate' };
  }
  await client.query('RELEASE SAVEPOINT import_fresh');
  const read = source.summary();
  for (const point of ['staged', 'planned', 'hashed', 'created', 'updated', 'deactivated'] as const) await at(point, client);
  await insertIssues(client, target.uploadId, 'error', read.errors);
  await insertIssues(client, target.uploadId, 'warning', read.warnings);
  const counts: ImportCounts = {
    ...emptyCounts(),
    rows: read.rows,
    created,
    errors: read.errorCount,
    warnings: read.warningCount,
  };
  return { kind: 'done', result: { ...outcomeOf(read), counts, held: false, message: null } };
}

/** Two usernames of the file may be one user: the direct copy gives way to the ordinary import. */
class MaybeDuplicate extends Error {
  constructor() {
    super('two usernames of the file may be the same ignoring case');
  }
}

interface Staged {
  valid: number;
  /** valid rows with a password */
  passwords: number;
  /** columns present in the file (undefined in every row means the column is absent) */
  present: Set<string>;
  sealer: PasswordSealer;
}

async function stageUsers(
  client: PoolClient,
  t: StagingTables,
  target: ImportTarget,
  source: ReadResult<ReadItem>,
  key: CheckKey,
): Promise<Staged> {
  // An unlogged table without indexes: COPY only appends, and every later statement reads it whole.
  // The key comes third: statements that read only line, valid and the key (the duplicate check)
  // then skip decoding the rest of each row.
  await client.query(`
    CREATE UNLOGGED TABLE ${t.rows} (
      line integer NOT NULL, valid boolean NOT NULL,
      -- Identity is Postgres's lower(), the same function as the users unique index uses.
      username_key text GENERATED ALWAYS AS (lower(coalesce(username, invalid_username))) STORED,
      username text, email text, first_name text, last_name text, school_id bigint,
      graduation_year integer, access_type text, role text, sis_id text,
      action text, inactive boolean, pw_check text, pw_sealed bytea, invalid_username text
    )`);
  const sealer = new PasswordSealer();
  const seen = FIELDS.map(() => false);
  const tenant = String(target.tenantId);
  let valid = 0;
  let passwords = 0;
  const keptSisIds: number[] = [];
  let questionMarks = false;
  const copy = startCopy(client, t.rows, STAGING_COLUMNS);
  try {
    for await (const batch of source.items) {
      // One string per batch (about 1000 rows): Postgres ingests it while the next batch is parsed.
      let chunk = '';
      for (const item of batch) {
        if (item.kind === 'invalid') {
          chunk += `${item.line}\tf\t\\N\t${copyField(item.username)}${INVALID_TAIL}`;
          continue;
        }
        const row = item.row;
        valid++;
        const password = row.password === undefined || row.password === '' ? null : row.password;
        if (password !== null) passwords++;
        if (row.keepSisId) keptSisIds.push(row.line);
        if (row.firstName?.includes('?') || row.lastName?.includes('?')) questionMarks = true;
        let line = `${row.line}\tt\t${copyField(row.username)}\t\\N\t${copyField(row.action)}\t${row.inactive ? 't' : 'f'}\t`;
        line +=
          password === null
            ? '\\N\t\\N'
            : `${copyField(passwordCheck(key, tenant, row.usernameKey, password))}\t${copyField(sealer.seal(password))}`;
        chunk += `${line}${fieldsText(row, seen)}\n`;
      }
      await copy.write(chunk);
    }
  } catch (err) {
    await copy.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  await copy.end();
  if (keptSisIds.length > 0) {
    // Staged as null; each user's own SIS ID takes its place, so the plan sees nothing to change.
    await client.query(
      `UPDATE ${t.rows} s SET sis_id = u.sis_id FROM users u
        WHERE s.line = ANY($1::integer[]) AND u.tenant_id = $2::bigint AND lower(u.username) = s.username_key`,
      [keptSisIds, target.tenantId],
    );
  }
  if (questionMarks) {
    // An export saved as ASCII writes José as Jos? (users-rules.ts lostLettersWarning): a user
    // whose name rosterd has, letter for letter but for those, keeps it, as the warning says.
    for (const column of ['first_name', 'last_name']) {
      await client.query(
        `UPDATE ${t.rows} s SET ${column} = u.${column} FROM users u
          WHERE s.${column} LIKE '%?%' AND u.tenant_id = $1::bigint AND lower(u.username) = s.username_key
            AND length(u.${column}) = length(s.${column}) AND u.${column} <> s.${column}
            AND NOT EXISTS (
              SELECT 1 FROM generate_series(1, length(s.${column})) AS i
               WHERE substr(s.${column}, i, 1) <> substr(u.${column}, i, 1)
                 AND NOT (substr(s.${column}, i, 1) = '?' AND ascii(substr(u.${column}, i, 1)) > 127))`,
        [target.tenantId],
      );
    }
  }
  const present = new Set<string>(FIELDS.filter((_, k) => seen[k]).map(([, column]) => column));
  return { valid, passwords, present, sealer };
}

/** The staged columns after invalid_username of an invalid row: all null. */
const INVALID_TAIL = '\t\\N'.repeat(STAGING_COLUMNS.length - 4) + '\n';

/** Field-by-field comparison, only for the columns the file has. */
function changedExpression(present: Set<string>): string {
  const parts = ['u.username <> s.username', '(s.pw_check IS NOT NULL AND u.password_check IS DISTINCT FROM s.pw_check)'];
  for (const [, column] of FIELDS) if (present.has(column)) parts.push(`u.${column} IS DISTINCT FROM s.${column}`);
  return parts.join(' OR ');
}

/** How the plan was made. */
interface Plan {
  /** full sync of a tenant without users: import_changes holds only the duplicates */
  fresh: boolean;
  /** import_dups is not empty */
  duplicates: boolean;
}

/** A fresh plan's creates: the valid rows that are not duplicates. */
function freshCreates(t: StagingTables, plan: Plan): string {
  return plan.duplicates ? `s.valid AND NOT (s.username_key IN (SELECT username_key FROM ${t.dups}))` : 's.valid';
}

/**
 * The operations that write a row's values: a deactivation only when the row's status is inactive
 * (its needs_hash is false otherwise: a delete row has no password, an unlisted user no row).
 */
const WRITTEN_ROWS = `'create', 'update', 'reactivate', 'deactivate'`;

/** The passwords to hash (line, sealed password), for hashChangedPasswords. */
const changedHashes = (t: StagingTables): string => `SELECT c.line, s.pw_sealed FROM ${t.changes} c JOIN ${t.rows} s ON s.line = c.line
  WHERE c.needs_hash AND c.op IN (${WRITTEN_ROWS})`;
const freshHashes = (t: StagingTables, plan: Plan): string =>
  `SELECT s.line, s.pw_sealed FROM ${t.rows} s WHERE ${freshCreates(t, plan)} AND s.pw_sealed IS NOT NULL`;

/**
 * import_changes: every valid row whose outcome is not "unchanged", with its operation, and (full
 * sync) every import-made active user the file does not list, as a 'deactivate' row without a
 * line (a delta's `delete` rows of import-made users are 'deactivate' rows too). A row whose
 * status is inactive (`listed_inactive`) makes its active import-made user a 'deactivate' row as
 * well, whose other values are applied like an update's: counted, held and listed for a hold like
 * any deactivation. One join over the file and the roster decides everything; later statements
 * read this table, which is small on a quiet night, and find a row's values in import_rows by its
 * line.
 *
 * It holds only what the join decides (line, user, operation): narrow rows, so that a first
 * import's million creates cost little to write and to read back. The roster side of the join is
 * narrowed the same way, to the columns compared.
 *
 * Full sync uses a FULL JOIN so that creates, updates and deactivations come from one hash join.
 * Invalid rows take part in it only to protect their users from deactivation.
 */
async function planChanges(
  client: PoolClient,
  t: StagingTables,
  target: ImportTarget,
  mode: 'full' | 'delta',
  present: Set<string>,
  plan: Plan,
): Promise<void> {
  if (plan.fresh) {
    await client.query(
      `CREATE UNLOGGED TABLE ${t.changes} AS
       SELECT s.line, NULL::bigint AS user_id, NULL::text AS stored_username, 'duplicate'::text AS op, false AS needs_hash,
              false AS listed_inactive
         FROM ${t.rows} s WHERE ${plan.duplicates ? `s.valid AND s.username_key IN (SELECT username_key FROM ${t.dups})` : 'false'}`,
    );
    return;
  }
  const changed = changedExpression(present);
  const needsHash = '(s.pw_check IS NOT NULL AND u.password_check IS DISTINCT FROM s.pw_check)';
  const roster = `SELECT id, username, active, created_by_import, password_check${FIELDS.filter(([, c]) => present.has(c))
    .map(([, c]) => `, ${c}`)
    .join('')} FROM users WHERE tenant_id = $1::bigint`;
  const duplicate = `s.username_key IN (SELECT username_key FROM ${t.dups})`;
  if (mode === 'full') {
    await client.query(
      `CREATE UNLOGGED TABLE ${t.changes} AS
       SELECT * FROM (
         SELECT s.line, u.id AS user_id, u.username AS stored_username,
                CASE WHEN s.line IS NULL THEN CASE WHEN u.active AND u.created_by_import THEN 'deactivate' ELSE 'unchanged' END
                     WHEN NOT s.valid THEN 'unchanged'
                     WHEN ${duplicate} THEN 'duplicate'
                     WHEN u.id IS NULL THEN 'create'
                     WHEN s.inactive AND u.active AND NOT u.created_by_import THEN 'not_imported'
                     WHEN s.inactive AND u.active THEN 'deactivate'
                     WHEN NOT u.active AND NOT s.inactive THEN 'reactivate'
                     WHEN ${changed} THEN 'update'
                     ELSE 'unchanged' END AS op,
                ${needsHash} AS needs_hash, coalesce(s.inactive, false) AS listed_inactive
           FROM ${t.rows} s
           FULL JOIN (${roster}) u ON lower(u.username) = s.username_key
       ) planned
       WHERE op <> 'unchanged'`,
      [target.tenantId],
    );
    return;
  }
  await client.query(
    `CREATE UNLOGGED TABLE ${t.changes} AS
     SELECT * FROM (
       SELECT s.line, u.id AS user_id, u.username AS stored_username,
              CASE WHEN ${duplicate} THEN 'duplicate'
                   WHEN s.action = 'add' AND u.id IS NULL THEN 'create'
                   WHEN s.action = 'add' AND u.active THEN 'exists'
                   WHEN s.action = 'add' AND NOT s.inactive THEN 'reactivate'
                   WHEN s.action = 'update' AND u.id IS NULL THEN 'missing_update'
                   WHEN s.action = 'delete' AND u.id IS NULL THEN 'missing_delete'
                   WHEN s.action = 'delete' AND NOT u.active THEN 'unchanged'
                   WHEN s.action <> 'delete' AND NOT (s.inactive AND u.active) THEN
                        CASE WHEN ${changed} THEN 'update' ELSE 'unchanged' END
                   -- What is left deactivates an active user: a delete, or an add or update whose status is inactive.
                   WHEN NOT u.created_by_import THEN 'not_imported'
                   ELSE 'deactivate' END AS op,
              ${needsHash} AS needs_hash, s.inactive AS listed_inactive
         FROM ${t.rows} s
         LEFT JOIN (${roster}) u ON lower(u.username) = s.username_key
        WHERE s.valid
     ) planned
     WHERE op <> 'unchanged'`,
    [target.tenantId],
  );
}

/**
 * Row errors and warnings that only the database can tell (duplicates, and a delta's actions on
 * users that do or do not exist), each under the username it is about: the value shown is the username,
 * so the column must say so ("action \"jdoe\"" read as if the action were "jdoe").
 */
async function insertPlanIssues(
  client: PoolClient,
  t: StagingTables,
  uploadId: string,
  errors: number,
  reactivations: number,
  room: { errors: number; warnings: number },
): Promise<number> {
  if (errors > 0 && room.errors > 0) {
    await client.query(
      `WITH d AS (
         SELECT username_key, array_agg(line ORDER BY line) AS lines
           FROM ${t.rows} WHERE username_key IN (SELECT username_key FROM ${t.dups})
          GROUP BY username_key),
       c AS (
         SELECT line, op FROM ${t.changes} WHERE op IN ('duplicate', 'exists', 'missing_update', 'missing_delete', 'not_imported')
         UNION ALL
         SELECT line, 'duplicate' FROM ${t.rows} WHERE NOT valid AND username_key IN (SELECT username_key FROM ${t.dups}))
       INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, username)
       SELECT $1, 'error', c.line, 'username', coalesce(s.username, s.invalid_username),
              CASE c.op
                WHEN 'duplicate' THEN format($2, array_to_string(d.lines, ', '))
                WHEN 'exists' THEN format($3, s.username)
                WHEN 'missing_update' THEN format($4, s.username)
                WHEN 'missing_delete' THEN format($5, s.username)
                ELSE format($6, s.username) END,
              coalesce(s.username, s.invalid_username)
         FROM c JOIN ${t.rows} s ON s.line = c.line
         LEFT JOIN d ON d.username_key = s.username_key
        ORDER BY c.line LIMIT $7`,
      [
        uploadId,
        MESSAGES.duplicate,
        MESSAGES.addExists,
        MESSAGES.updateMissing,
        MESSAGES.deleteMissing,
        MESSAGES.deleteNotImported,
        room.errors,
      ],
    );
  }
  // A delta's reactivations are all `add` rows (planChanges): counted, and kept as far as there is room.
  if (reactivations === 0) return 0;
  if (room.warnings > 0) {
    await client.query(
      `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
       SELECT $1, 'warning', c.line, 'username', s.username, format($2, s.username), $4, s.username
         FROM ${t.changes} c JOIN ${t.rows} s ON s.line = c.line
        WHERE c.op = 'reactivate' AND s.action = 'add'
        ORDER BY c.line LIMIT $3`,
      [uploadId, MESSAGES.addReactivated, room.warnings, 'ADD_REACTIVATED' satisfies WarningCode],
    );
  }
  return reactivations;
}

/**
 * A delta's `update` of an inactive user changes it but leaves it inactive (§3: only `add` brings a
 * user back). A district sending `update` for a returning student expects them back, and nothing
 * else in the report would show they are not: warned, with what to send instead. Not when the
 * row's own status is inactive: it stays as the row says. Returns how many.
 */
async function warnUpdatesOfInactive(
  client: PoolClient,
  t: StagingTables,
  target: ImportTarget,
  plan: Plan,
  room: number,
): Promise<number> {
  const { rows } = await client.query<{ total: number }>(
    `WITH inactive AS (
       SELECT s.line, s.username FROM ${t.rows} s
         JOIN users u ON u.tenant_id = $1::bigint AND lower(u.username) = s.username_key AND NOT u.active
        WHERE s.valid AND s.action = 'update' AND NOT s.inactive
          ${plan.duplicates ? `AND s.username_key NOT IN (SELECT username_key FROM ${t.dups})` : ''}),
     kept AS (INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
              SELECT $2, 'warning', line, 'username', username, format($3, username), $5, username FROM inactive ORDER BY line LIMIT $4)
     SELECT count(*)::int AS total FROM inactive`,
    [target.tenantId, target.uploadId, MESSAGES.updateInactive, room, 'UPDATE_INACTIVE' satisfies WarningCode],
  );
  return rows[0]?.total ?? 0;
}

/** The users.csv header name of each stored column, as a warning names it. */
const COLUMN_NAMES: Readonly<Record<string, string>> = {
  email: 'email',
  first_name: 'first name',
  last_name: 'last name',
  school_id: 'school',
  graduation_year: 'graduation year',
  access_type: 'access type',
  role: 'role',
  sis_id: 'sis id',
};

/**
 * A delta's row that changes a user (update, or the add that reactivates one) with blank cells
 * where the user has values: the blanks clear them, as a full sync's would. A district sending only
 * what changed, the rest blank, expects the rest kept, as a blank password is; the report said only
 * "updated", and the names and addresses were gone. Warned, one warning per row naming the columns,
 * before anything is written. Returns how many.
 */
async function warnClearedValues(
  client: PoolClient,
  t: StagingTables,
  target: ImportTarget,
  present: Set<string>,
  room: number,
): Promise<number> {
  const columns = FIELDS.map(([, column]) => column).filter((c) => present.has(c));
  if (columns.length === 0) return 0;
  const { rows } = await client.query<{ total: number }>(
    `WITH cleared AS (
       SELECT s.line, s.username,
              array_remove(ARRAY[${columns.map((c) => `CASE WHEN u.${c} IS NOT NULL AND s.${c} IS NULL THEN '${COLUMN_NAMES[c] ?? c}' END`).join(', ')}], NULL) AS cols
         FROM ${t.changes} c JOIN ${t.rows} s ON s.line = c.line JOIN users u ON u.id = c.user_id
        WHERE c.op IN ('update', 'reactivate', 'deactivate') AND s.action IN ('update', 'add')),
     hit AS (SELECT line, username, cols, cardinality(cols) AS n FROM cleared WHERE cardinality(cols) > 0),
     kept AS (INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
              SELECT $1, 'warning', line, cols[1], NULL,
                     format($2, CASE WHEN n = 1 THEN cols[1] ELSE array_to_string(cols[1:n - 1], ', ') || ' and ' || cols[n] END, username,
                            CASE WHEN n = 1 THEN 'it' ELSE 'they' END, CASE WHEN n = 1 THEN 'its value' ELSE 'their values' END),
                     $4, username
                FROM hit ORDER BY line LIMIT $3)
     SELECT count(*)::int AS total FROM hit`,
    [target.uploadId, MESSAGES.updateClears, room, 'UPDATE_CLEARS' satisfies WarningCode],
  );
  return rows[0]?.total ?? 0;
}

/**
 * A new user whose SIS ID is another user's: usually one person whose username the SIS changed (a
 * married name, a new naming rule). rosterd knows a user by username (PRODUCT.md §3), so a full
 * sync creates a new account and deactivates the old one, its password and groups left behind;
 * the report said only "1 created, 1 deactivated". Warned on the new user's line, naming the other
 * user and what this file does to it. Returns how many.
 */
async function warnSisIdTaken(client: PoolClient, t: StagingTables, target: ImportTarget, room: number): Promise<number> {
  const { rows } = await client.query<{ total: number }>(
    `WITH taken AS (
       SELECT DISTINCT ON (s.line) s.line, s.username, s.sis_id, u.username AS other,
              CASE WHEN d.op = 'deactivate' THEN $5 WHEN NOT u.active THEN $6 ELSE '' END AS fate
         FROM ${t.changes} c JOIN ${t.rows} s ON s.line = c.line
         JOIN users u ON u.tenant_id = $1::bigint AND u.sis_id = s.sis_id
         LEFT JOIN ${t.changes} d ON d.user_id = u.id
        WHERE c.op = 'create' AND s.sis_id IS NOT NULL
        ORDER BY s.line, (d.op = 'deactivate') DESC NULLS LAST, u.active, lower(u.username)),
     kept AS (INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
              SELECT $2, 'warning', line, 'sis id', sis_id, format($3, username, sis_id, other, fate), $7, username
                FROM taken ORDER BY line LIMIT $4)
     SELECT count(*)::int AS total FROM taken`,
    [
      target.tenantId,
      target.uploadId,
      MESSAGES.newUserSisIdTaken,
      room,
      ', which this file deactivates',
      ', who is inactive',
      'NEW_USER_SIS_ID_TAKEN' satisfies WarningCode,
    ],
  );
  return rows[0]?.total ?? 0;
}

interface ChangeCounts {
  creates: number;
  updates: number;
  deactivations: number;
  hashes: number;
}

/** The writes, each skipped when the plan has nothing for it (the usual night writes nothing). */
async function writeChanges(
  client: PoolClient,
  t: StagingTables,
  target: ImportTarget,
  present: Set<string>,
  at: ImportHook,
  plan: Plan,
  planned: ChangeCounts,
): Promise<void> {
  const columns = FIELDS.map(([, column]) => column);
  // Without changed passwords import_hashes is empty: no need to join it.
  const hashJoin = planned.hashes > 0 ? 'LEFT JOIN import_hashes h ON h.line = s.line' : '';
  const hash = planned.hashes > 0 ? 'h.hash' : 'NULL::text';
  if (planned.creates > 0) {
    // Rows go in file order (a sequential scan of import_rows, probing the hash of import_changes),
    // as a COPY of the file would insert them.
    const from = plan.fresh
      ? `${t.rows} s ${hashJoin} WHERE ${freshCreates(t, plan)}`
      : `${t.rows} s JOIN ${t.changes} c ON c.line = s.line ${hashJoin} WHERE c.op = 'create'`;
    await client.query(
      `INSERT INTO users (tenant_id, username, ${columns.join(', ')}, password_hash, password_check,
                          active, deactivated_at, created_by_import, created_import_id, last_import_id,
                          deactivated_import_id, deactivated_how)
       SELECT $1::bigint, s.username, ${columns.map((c) => `s.${c}`).join(', ')}, ${hash},
              CASE WHEN ${hash} IS NULL THEN NULL ELSE s.pw_check END,
              NOT s.inactive, CASE WHEN s.inactive THEN now() END, true, $2::uuid, $2::uuid,
              CASE WHEN s.inactive THEN $2::uuid END, CASE WHEN s.inactive THEN 'status' END
         FROM ${from}`,
      [target.tenantId, target.uploadId],
    );
  }
  await at('created', client);
  if (planned.updates > 0) {
    // Updates, reactivations, and the deactivations of rows whose status is inactive (their values
    // apply too). Which import deactivated a user, and how, is kept until it is reactivated: a later
    // update of the inactive user did not deactivate it.
    const sets = columns.filter((c) => present.has(c)).map((c) => `${c} = s.${c}`);
    await client.query(
      `UPDATE users u SET username = s.username, ${sets.map((x) => x + ', ').join('')}
              password_hash = COALESCE(${hash}, u.password_hash),
              password_check = CASE WHEN ${hash} IS NULL THEN u.password_check ELSE s.pw_check END,
              active = CASE c.op WHEN 'reactivate' THEN true WHEN 'deactivate' THEN false ELSE u.active END,
              deactivated_at = CASE c.op WHEN 'reactivate' THEN NULL WHEN 'deactivate' THEN now() ELSE u.deactivated_at END,
              deactivated_import_id = CASE c.op WHEN 'reactivate' THEN NULL WHEN 'deactivate' THEN $1::uuid
                                             ELSE u.deactivated_import_id END,
              deactivated_how = CASE c.op WHEN 'reactivate' THEN NULL WHEN 'deactivate' THEN 'status' ELSE u.deactivated_how END,
              last_import_id = $1::uuid, updated_at = now()
         FROM ${t.changes} c JOIN ${t.rows} s ON s.line = c.line ${hashJoin}
        WHERE u.id = c.user_id AND (c.op IN ('update', 'reactivate') OR (c.op = 'deactivate' AND c.listed_inactive))`,
      [target.uploadId],
    );
  }
  await at('updated', client);
  if (planned.deactivations > 0) {
    // Users the file does not list (full sync: no line), and delete rows (a delta's, with a line).
    await client.query(
      `UPDATE users u SET active = false, deactivated_at = now(), updated_at = now(), last_import_id = $1::uuid,
              deactivated_import_id = $1::uuid, deactivated_how = CASE WHEN c.line IS NULL THEN 'unlisted' ELSE 'deleted' END
         FROM ${t.changes} c WHERE u.id = c.user_id AND c.op = 'deactivate' AND NOT c.listed_inactive`,
      [target.uploadId],
    );
  }
  await at('deactivated', client);
}
