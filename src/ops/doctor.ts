import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import pg from 'pg';
import ssh2 from 'ssh2';
import { loadConfig, type Config } from '../config/config.js';
import { findLookalikes } from '../config/lookalikes.js';
import { toError } from '../errors.js';
import { shellWord } from '../shell-word.js';
import { outboxDir } from '../report/mailer.js';
import { firstTickInWindow, LOOKAHEAD_NIGHTS, withNextTick } from '../schedule/next-tick.js';
import { isValidZone, windowFromParts } from '../schedule/window.js';
import { hostKeysDir } from '../sftp/host-keys.js';
import { parsePublicKey } from '../sftp/public-key.js';
import { openDatabase } from '../store/connect.js';
import { describeClockSkew, isClockSkewed, measureClockSkew } from '../store/clock-skew.js';
import { loadMigrations, pendingMigrations } from '../store/migrate.js';
import { listTenants, US_ZONE_EXAMPLES, zoneAbbreviation } from '../store/tenants.js';
import { systemClock, type Clock, type Logger } from '../types.js';
import { unrecordedCopies } from './retention.js';
import { withTimeout } from './timeout.js';

/**
 * `rosterd doctor` (issue 5): checks what `rosterd serve` needs, one line each, with what to do
 * when something is wrong. It changes nothing: it creates no host key, no folder, no table.
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  /** what was found */
  detail: string;
  /** what to do, when status is warn or fail */
  fix?: string;
}

export interface DoctorReport {
  /** false if any check failed (warnings do not fail) */
  ok: boolean;
  checks: DoctorCheck[];
}

export interface DoctorDeps {
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** how long the database and the mail server get to answer (default 5 s) */
  timeoutMs?: number;
  /** the clock compared with the database's (default: the system's) */
  clock?: Clock;
}

/** Free space under which the data directory check warns. */
const LOW_SPACE_BYTES = 1024 ** 3;
/** The embedded Postgres may have to initialise its cluster on first use. */
const EMBEDDED_TIMEOUT_MS = 90_000;
const HOST_KEY_FILES = [
  { file: 'ssh_host_ed25519_key', type: 'ssh-ed25519' },
  { file: 'ssh_host_rsa_key', type: 'ssh-rsa' },
] as const;

const ok = (name: string, detail: string): DoctorCheck => ({ name, status: 'ok', detail });
const warn = (name: string, detail: string, fix: string): DoctorCheck => ({ name, status: 'warn', detail, fix });
const fail = (name: string, detail: string, fix: string): DoctorCheck => ({ name, status: 'fail', detail, fix });
const skip = (name: string, why: string): DoctorCheck => ({ name, status: 'skip', detail: `not checked: ${why}` });
/** The checks that read the database, when it cannot be read. */
const skipAfterDatabase = (why: string): DoctorCheck[] => [
  skip('migrations', why),
  skip('reports', why),
  skip('usernames', why),
  skip('clock', why),
  skip('time zones', why),
  skip('schedule', why),
  skip('received files', why),
];

export async function runDoctor(deps: DoctorDeps): Promise<DoctorReport> {
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const checks: DoctorCheck[] = [];
  let config: Config;
  try {
    config = loadConfig(deps.env);
    checks.push(ok('configuration', describeConfig(config)), checkVariableNames(deps.env));
  } catch (err) {
    checks.push(
      fail('configuration', toError(err).message, 'the variables and their defaults are listed in the README (Configuration)'),
      checkVariableNames(deps.env),
    );
    const why = 'the configuration is invalid';
    for (const name of ['data directory', 'data directory permissions', 'free space', 'host keys', 'database']) {
      checks.push(skip(name, why));
    }
    checks.push(...skipAfterDatabase(why), skip('mail', why));
    return { ok: false, checks };
  }

  const dataDir = await checkDataDir(config.DATA_DIR);
  checks.push(
    dataDir.check,
    await checkPermissions(config.DATA_DIR, dataDir.exists),
    await checkFreeSpace(config.DATA_DIR, config.MAX_UPLOAD_BYTES),
  );
  checks.push(
    dataDir.check.status === 'fail' ? skip('host keys', 'the data directory cannot be used') : await checkHostKeys(config.DATA_DIR),
  );
  if (!config.DATABASE_URL && (!dataDir.exists || dataDir.check.status === 'fail')) {
    // The embedded Postgres lives in DATA_DIR: doctor would create both to check them.
    const why = 'the embedded Postgres lives in DATA_DIR, which cannot be used yet';
    checks.push(skip('database', why), ...skipAfterDatabase(why));
  } else {
    checks.push(...(await checkDatabase(config, deps.logger, timeoutMs, deps.clock ?? systemClock, dataDir.exists)));
  }
  checks.push(await checkMail(config, timeoutMs));
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

/** A misspelt variable (SMTP_URI, SFTPPORT) is not read, and rosterd runs on the default instead without a word. */
function checkVariableNames(env: NodeJS.ProcessEnv): DoctorCheck {
  const name = 'variable names';
  const lookalikes = findLookalikes(env);
  if (lookalikes.length === 0) return ok(name, 'no variable looks like a misspelling of one rosterd reads');
  return warn(
    name,
    lookalikes.map((l) => l.found).join('\n'),
    `${lookalikes.map((l) => l.fix).join('; ')} (the names rosterd reads are listed in the README, Configuration)`,
  );
}

function describeConfig(config: Config): string {
  const database = config.DATABASE_URL
    ? `Postgres at ${hostOf(config.DATABASE_URL)}`
    : `embedded Postgres in ${path.join(config.DATA_DIR, 'pg')}`;
  const mail = config.SMTP_URL ? `SMTP at ${hostOf(config.SMTP_URL)}` : `.eml files in ${outboxDir(config.DATA_DIR)}`;
  return `DATA_DIR=${config.DATA_DIR}; ${database}; mail: ${mail}; SFTP port ${config.SFTP_PORT}; HTTP port ${config.HTTP_PORT}`;
}

/**
 * Where a URL points, never its credentials: host:port/path, or for Postgres over a Unix socket
 * (`postgres://user@/db?host=/var/run/postgresql`, or the socket folder %2F-encoded as the host)
 * the socket folder and the database. WHATWG URL refuses a user with an empty host, so the
 * authority is split by hand.
 */
export function hostOf(url: string): string {
  const match = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?/i.exec(url);
  if (!match) return '(unparsable URL)';
  const authority = match[1] ?? '';
  const pathname = match[2] === '/' ? '' : (match[2] ?? '');
  const host = decode(new URLSearchParams(match[3] ?? '').get('host') || authority.slice(authority.lastIndexOf('@') + 1));
  if (host === '') return `the default host${pathname}`;
  if (host.startsWith('/')) return `socket ${host}${pathname === '' ? '' : ` (database ${decode(pathname.slice(1))})`}`;
  return `${host}${pathname}`;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

async function checkDataDir(dir: string): Promise<{ check: DoctorCheck; exists: boolean }> {
  const name = 'data directory';
  const stat = await fs.stat(dir).catch((err: NodeJS.ErrnoException) => err);
  if (stat instanceof Error) {
    if (stat.code !== 'ENOENT') {
      return {
        exists: false,
        check: fail(name, `${dir} cannot be used (${stat.code ?? stat.message})`, `set DATA_DIR to a directory the rosterd user owns`),
      };
    }
    // rosterd creates it at start, if it can.
    const parent = await nearestExisting(path.dirname(dir));
    const probe = await probeWrite(parent);
    return probe === undefined
      ? {
          exists: false,
          check: warn(
            name,
            `${dir} does not exist yet; rosterd creates it at first start`,
            `or create it now: mkdir -p -m 700 ${shellWord(dir)}`,
          ),
        }
      : {
          exists: false,
          check: fail(
            name,
            `${dir} does not exist and cannot be created (${probe})`,
            `create it and give it to the rosterd user: mkdir -p -m 700 ${shellWord(dir)} && chown USER ${shellWord(dir)}`,
          ),
        };
  }
  if (!stat.isDirectory()) {
    return { exists: false, check: fail(name, `${dir} is not a directory`, 'set DATA_DIR to a directory') };
  }
  const probe = await probeWrite(dir);
  return probe === undefined
    ? { exists: true, check: ok(name, `${dir} exists and is writable`) }
    : {
        exists: true,
        check: fail(
          name,
          `${dir} is not writable (${probe})`,
          `give it to the rosterd user: chown USER ${shellWord(dir)}; or mount it read-write`,
        ),
      };
}

/** Roster files are student data: nobody but the daemon's user should read the data directory. */
async function checkPermissions(dir: string, exists: boolean): Promise<DoctorCheck> {
  const name = 'data directory permissions';
  if (!exists) return skip(name, 'the data directory is not there');
  const mode = (await fs.stat(dir)).mode & 0o777;
  const shown = mode.toString(8).padStart(3, '0');
  // o+x alone is allowed: as root, the embedded Postgres (user postgres) must traverse DATA_DIR.
  if ((mode & 0o006) !== 0) {
    return fail(name, `${dir} has mode ${shown}: other users can ${mode & 0o002 ? 'write' : 'list'} it`, `chmod o-rw ${shellWord(dir)}`);
  }
  return ok(name, `mode ${shown}`);
}

async function checkFreeSpace(dir: string, maxUploadBytes: number): Promise<DoctorCheck> {
  const name = 'free space';
  const fix = 'free some space or grow the volume: uploads and the embedded Postgres live there';
  try {
    const stats = await fs.statfs(await nearestExisting(dir));
    const free = stats.bavail * stats.bsize;
    const shown = `${free >= 1024 ** 3 ? `${(free / 1024 ** 3).toFixed(1)} GiB` : `${(free / 1024 ** 2).toFixed(1)} MiB`} free`;
    // Less than one upload of the largest size: a district's file can fail tonight.
    if (free < maxUploadBytes) return fail(name, `${shown} for ${dir}, less than MAX_UPLOAD_BYTES`, fix);
    return free < LOW_SPACE_BYTES ? warn(name, `${shown} for ${dir}`, fix) : ok(name, `${shown} for ${dir}`);
  } catch (err) {
    return fail(name, `cannot read the free space of ${dir} (${toError(err).message})`, 'check that DATA_DIR is on a mounted file system');
  }
}

async function checkHostKeys(dataDir: string): Promise<DoctorCheck> {
  const name = 'host keys';
  const dir = hostKeysDir(dataDir);
  const found: string[] = [];
  for (const spec of HOST_KEY_FILES) {
    const file = path.join(dir, spec.file);
    const content = await fs.readFile(file).catch((err: NodeJS.ErrnoException) => err);
    if (content instanceof Error) {
      if (content.code === 'ENOENT') {
        if (found.length === 0) continue;
        return fail(
          name,
          `${file} is missing while other host keys exist`,
          'restore it from backup: a new key would change what clients see',
        );
      }
      return fail(
        name,
        `${file} cannot be read (${content.code ?? content.message})`,
        `give it to the rosterd user: chown USER ${shellWord(file)}; chmod 600 ${shellWord(file)}`,
      );
    }
    const parsed = ssh2.utils.parseKey(content);
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (key === undefined || key instanceof Error || key.type !== spec.type) {
      return fail(
        name,
        `${file} is not a readable ${spec.type} private key`,
        'restore it from backup, or move it away to have a new one generated (clients will see a new host key)',
      );
    }
    const mode = (await fs.stat(file)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      return fail(name, `${file} has mode ${mode.toString(8)}: other users can read the private host key`, `chmod 600 ${shellWord(file)}`);
    }
    found.push(parsePublicKey(`${key.type} ${key.getPublicSSH().toString('base64')}`).fingerprint);
  }
  if (found.length === 0)
    return ok(name, `none yet in ${dir}; "rosterd serve" generates them at first start ("rosterd host-key" shows them)`);
  return ok(name, found.join(', '));
}

async function checkDatabase(
  config: Config,
  logger: Logger,
  timeoutMs: number,
  clock: Clock,
  dataDirExists: boolean,
): Promise<DoctorCheck[]> {
  let pool: pg.Pool;
  let close: () => Promise<void>;
  const where = config.DATABASE_URL ? hostOf(config.DATABASE_URL) : 'the embedded Postgres';
  const fix = config.DATABASE_URL
    ? 'check DATABASE_URL (host, port, user, password, database) and that Postgres is running and reachable'
    : `check that nothing else uses ${path.join(config.DATA_DIR, 'pg')}, and read ${path.join(config.DATA_DIR, 'pg', 'server.log')}`;
  try {
    if (config.DATABASE_URL) {
      // Our own pool, so that an address that never answers fails within the timeout.
      pool = new pg.Pool({
        connectionString: config.DATABASE_URL,
        max: 1,
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
        application_name: 'rosterd doctor',
      });
      pool.on('error', () => undefined);
      const opened = pool;
      close = () => opened.end().catch(() => undefined);
      await withTimeout(pool.query('SELECT 1'), timeoutMs + 1_000, where).catch(async (err: unknown) => {
        await close();
        throw err;
      });
    } else {
      const db = await withTimeout(openDatabase(config, logger, 1), EMBEDDED_TIMEOUT_MS, where);
      pool = db.pool;
      close = db.close;
    }
  } catch (err) {
    return [
      fail('database', `cannot connect to ${where}: ${describeError(err)}`, fix),
      ...skipAfterDatabase('the database is unreachable'),
    ];
  }
  try {
    const version = await pool.query<{ server_version: string }>('SHOW server_version');
    const checks = [ok('database', `connected to ${where} (PostgreSQL ${version.rows[0]?.server_version ?? '?'})`)];
    const migrations = await checkMigrations(pool, timeoutMs);
    checks.push(migrations);
    checks.push(migrations.status === 'fail' ? skip('reports', 'the migrations are not applied') : await checkOutbox(pool, timeoutMs));
    checks.push(
      migrations.status === 'fail' ? skip('usernames', 'the migrations are not applied') : await checkCaseFolding(pool, timeoutMs),
    );
    checks.push(await checkClock(pool, timeoutMs, clock));
    checks.push(await checkTenantZones(pool, timeoutMs));
    checks.push(await checkSchedule(pool, timeoutMs, config.SCHEDULE_CRON, clock));
    checks.push(
      migrations.status === 'fail'
        ? skip('received files', 'the migrations are not applied')
        : dataDirExists
          ? await checkReceivedFiles(config.DATA_DIR, pool, clock)
          : ok('received files', 'none yet'),
    );
    return checks;
  } catch (err) {
    return [fail('database', `${where} answered, then failed: ${describeError(err)}`, fix), ...skipAfterDatabase('the database failed')];
  } finally {
    await close();
  }
}

async function checkMigrations(pool: pg.Pool, timeoutMs: number): Promise<DoctorCheck> {
  const name = 'migrations';
  try {
    const pending = await withTimeout(pendingMigrations(pool), timeoutMs, 'the migration check');
    if (pending.length > 0) {
      return fail(name, `not applied: ${pending.join(', ')}`, 'run "rosterd migrate" (rosterd serve also applies them at start)');
    }
    const known = new Set((await loadMigrations()).map((m) => m.id));
    const applied = (await pool.query<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id')).rows.map((r) => r.id);
    const newer = applied.filter((id) => !known.has(id));
    if (newer.length > 0) {
      return warn(
        name,
        `the database has migrations this rosterd does not know (${newer.join(', ')})`,
        'a newer rosterd migrated it: upgrade this one',
      );
    }
    return ok(name, `current (${applied.length} applied)`);
  } catch (err) {
    return fail(name, `cannot read the applied migrations: ${describeError(err)}`, 'check the database user may read schema_migrations');
  }
}

/** Reports waiting longer than this mean delivery is stuck, not merely between two attempts. */
const OUTBOX_STUCK_MS = 3600_000;

/**
 * The outbox (PRODUCT.md §6): a report that has waited an hour is a district administrator who
 * never heard about last night (it is retried until the server accepts it). /metrics says so too;
 * doctor says what to do.
 */
async function checkOutbox(pool: pg.Pool, timeoutMs: number): Promise<DoctorCheck> {
  const name = 'reports';
  try {
    const { rows } = await withTimeout(
      pool.query<{ waiting: string; stuck: string; oldest: Date | null; last_error: string | null }>(
        `SELECT count(*) FILTER (WHERE status = 'pending') AS waiting,
                count(*) FILTER (WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)) AS stuck,
                min(created_at) FILTER (WHERE status = 'pending') AS oldest,
                (array_agg(last_error ORDER BY created_at) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL))[1] AS last_error
           FROM outbox`,
        [OUTBOX_STUCK_MS / 1000],
      ),
      timeoutMs,
      'the outbox check',
    );
    const r = rows[0];
    const stuck = Number(r?.stuck ?? 0);
    if (stuck > 0) {
      return warn(
        name,
        `${stuck} report${stuck === 1 ? '' : 's'} waiting for more than an hour, the oldest since ${r?.oldest?.toISOString() ?? '?'}` +
          (r?.last_error ? ` (last error: ${r.last_error.slice(0, 200)})` : ''),
        'check the mail check below and SMTP_URL, and that rosterd serve is running: it sends them; an address the server refuses is fixed with "rosterd tenant update SUBDOMAIN --admin-email …"',
      );
    }
    const waiting = Number(r?.waiting ?? 0);
    return ok(name, waiting === 0 ? 'none waiting to be sent' : `${waiting} waiting to be sent, none for more than an hour`);
  } catch (err) {
    return fail(name, `cannot read the outbox: ${describeError(err)}`, 'check the database user may read the outbox table');
  }
}

/**
 * Usernames are one user "ignoring case" as the database's lower() folds them (the users index).
 * Under a C or POSIX LC_CTYPE that is A-Z only: worth a warning once a username has other letters.
 */
async function checkCaseFolding(pool: pg.Pool, timeoutMs: number): Promise<DoctorCheck> {
  const name = 'usernames';
  try {
    const { rows } = await withTimeout(
      pool.query<{ ctype: string; non_ascii: string; utf8: boolean }>(
        // lc_ctype is no setting since Postgres 16: the database's own row says it. With an ICU or
        // builtin provider (datlocprovider, Postgres 15+: read through to_jsonb, so that older
        // servers without the column answer too), lower() does not depend on datctype.
        `SELECT CASE WHEN coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' THEN d.datctype
                     ELSE (to_jsonb(d) ->> 'datlocprovider') || ' provider' END AS ctype,
                (SELECT count(*) FROM users WHERE username ~ '[^\\x01-\\x7f]') AS non_ascii,
                current_setting('server_encoding') = 'UTF8' AS utf8
           FROM pg_database d WHERE d.datname = current_database()`,
      ),
      timeoutMs,
      'the username check',
    );
    const ctype = rows[0]?.ctype ?? '?';
    const nonAscii = Number(rows[0]?.non_ascii ?? 0);
    const twins = rows[0]?.utf8 ? await decomposedTwins(pool, timeoutMs) : [];
    if (twins.length > 0) {
      const total = twins.reduce((n, t) => n + t.count, 0);
      return warn(
        name,
        `${total} username${total === 1 ? ' is' : 's are'} stored with decomposed accents (e + a combining mark, as a Mac ` +
          `saves them) beside the same username composed, so each is two users: ${twins.map((t) => `${t.subdomain} (${t.count})`).join(', ')}`,
        'rosterd now reads usernames composed: the next users.csv import of these districts keeps the composed user and ' +
          'deactivates the decomposed one; "rosterd export users --tenant SUBDOMAIN" shows both until then',
      );
    }
    if (ctype !== 'C' && ctype !== 'POSIX') return ok(name, `compared ignoring case for every letter (LC_CTYPE ${ctype})`);
    if (nonAscii === 0) return ok(name, `compared ignoring case for A-Z only (LC_CTYPE ${ctype}); every username so far is ASCII`);
    return warn(
      name,
      `${nonAscii} username${nonAscii === 1 ? ' has' : 's have'} letters outside A-Z, which LC_CTYPE ${ctype} does not fold: ` +
        'Élodie and ÉLODIE would be two users',
      'keep usernames ASCII, or move to a database created with a UTF-8 LC_CTYPE (C.UTF-8, en_US.UTF-8)',
    );
  } catch (err) {
    return warn(name, `cannot read the database's character type: ${describeError(err)}`, 'check the database user may read users');
  }
}

/** See clock-skew.ts: every replica's clock must agree with the database's. */
async function checkClock(pool: pg.Pool, timeoutMs: number, clock: Clock): Promise<DoctorCheck> {
  const name = 'clock';
  try {
    const skew = await withTimeout(measureClockSkew(pool, clock), timeoutMs, 'the clock check');
    if (!isClockSkewed(skew)) return ok(name, `within ${Math.max(1, Math.ceil(Math.abs(skew.skewMs) / 1000))} s of the database's clock`);
    return warn(
      name,
      `this host's clock is ${describeClockSkew(skew)}: rosterd here would open and close the night window, settle uploads and take back stalled imports that much off`,
      "synchronise this host's clock, and the database server's, with NTP (for example chrony or systemd-timesyncd)",
    );
  } catch (err) {
    return warn(name, `cannot read the database's clock: ${describeError(err)}`, 'check that the database answers');
  }
}

/**
 * Each tenant's zone as this process reads it: a zone this Node's ICU does not know (the tenant
 * was added under another Node, or the name was stored before it was checked) leaves the tenant's
 * window unknown, so its uploads are never imported; an abbreviation, stored before they were
 * refused, may be read as another region (AST as Alaska) or a fixed offset (EST as UTC-5 all year).
 */
async function checkTenantZones(pool: pg.Pool, timeoutMs: number): Promise<DoctorCheck> {
  const name = 'time zones';
  try {
    const { rows } = await withTimeout(
      pool.query<{ subdomain: string; timezone: string }>(
        `SELECT subdomain, timezone FROM tenants WHERE status = 'active' ORDER BY subdomain`,
      ),
      timeoutMs,
      'the time zone check',
    );
    const unknown = rows.filter((t) => !isValidZone(t.timezone));
    const abbreviated = rows.filter((t) => isValidZone(t.timezone) && zoneAbbreviation(t.timezone) !== undefined);
    const list = (ts: typeof rows) => ts.map((t) => `${t.subdomain} (${t.timezone})`).join(', ');
    if (unknown.length > 0) {
      return fail(
        name,
        `${list(unknown)}: not a time zone this Node.js knows, so ${unknown.length === 1 ? 'its' : 'their'} night window cannot be worked out and nothing is imported`,
        "set an IANA zone: rosterd tenant update SUBDOMAIN --timezone America/Chicago (or the district's own)",
      );
    }
    if (abbreviated.length > 0) {
      return warn(
        name,
        `${list(abbreviated)}: an abbreviation, not a region's zone, which this Node reads as one region of several it may mean, or as a fixed offset with no daylight saving time (EST, MST): the window and report times may be hours off`,
        `set the district's region: rosterd tenant update SUBDOMAIN --timezone ZONE, such as ${US_ZONE_EXAMPLES}`,
      );
    }
    return ok(
      name,
      rows.length === 0 ? 'no active tenants' : `${rows.length} active tenant${rows.length === 1 ? '' : 's'}, each in a known zone`,
    );
  } catch (err) {
    return warn(name, `cannot read the tenants' time zones: ${describeError(err)}`, 'check that the database answers');
  }
}

/**
 * A SCHEDULE_CRON that fires only while a tenant's window is shut (say "0 12 * * *" for a
 * district on the default night window) imports nothing for it, night after night, and nothing
 * else says why.
 */
async function checkSchedule(pool: pg.Pool, timeoutMs: number, expression: string, clock: Clock): Promise<DoctorCheck> {
  const name = 'schedule';
  try {
    const tenants = (await withTimeout(listTenants(pool), timeoutMs, 'the schedule check')).filter(
      (t) => t.status === 'active' && isValidZone(t.timezone),
    );
    const now = clock.now();
    const never = await withNextTick(expression, (next) =>
      tenants.filter((t) => firstTickInWindow(next, windowFromParts(t.windowStart, t.windowEnd), t.timezone, now) === null),
    );
    if (never.length > 0) {
      const list = never.map((t) => `${t.subdomain} (${t.window} ${t.timezone})`).join(', ');
      return fail(
        name,
        `SCHEDULE_CRON "${expression}" does not fire while the import window of ${list} is open, in the next ${LOOKAHEAD_NIGHTS} nights: ${never.length === 1 ? 'its' : 'their'} uploads are not imported`,
        'set SCHEDULE_CRON to fire during the night, such as the default "*/5 * * * *" (the server\'s own time zone), or change the window: rosterd tenant update SUBDOMAIN --window HH:MM-HH:MM',
      );
    }
    const each =
      tenants.length === 0
        ? 'no active tenants yet'
        : `fires inside the window of ${tenants.length === 1 ? 'the active tenant' : `each of the ${tenants.length} active tenants`}`;
    return ok(name, `SCHEDULE_CRON "${expression}": ${each}`);
  } catch (err) {
    return warn(name, `cannot check the schedule against the tenants' windows: ${describeError(err)}`, 'check that the database answers');
  }
}

/**
 * Usernames migration 008 could not compose because the composed spelling is another user of the
 * tenant: a Mac-saved (NFD) file made a second user before usernames were read composed. Only
 * active ones: once the next import has deactivated the decomposed twin, nothing is left to do.
 */
async function decomposedTwins(pool: pg.Pool, timeoutMs: number): Promise<Array<{ subdomain: string; count: number }>> {
  const { rows } = await withTimeout(
    pool.query<{ subdomain: string; count: number }>(
      `SELECT t.subdomain, count(*)::int AS count FROM users u JOIN tenants t ON t.id = u.tenant_id
        WHERE u.active AND u.username !~ '^[\\x01-\\x7f]*$' AND u.username IS NOT NFC NORMALIZED
          AND EXISTS (SELECT 1 FROM users o WHERE o.tenant_id = u.tenant_id AND lower(o.username) = lower(normalize(u.username, NFC)))
        GROUP BY t.subdomain ORDER BY t.subdomain`,
    ),
    timeoutMs,
    'the username check',
  );
  return rows;
}

/** A copy is linked a moment before its row commits: younger files may be a receipt in progress. */
const RECEIPT_IN_PROGRESS_MS = 600_000;

/**
 * Received copies with no upload row: after the database is restored from a backup, the files
 * received since it was taken. They were never imported, and no one is told otherwise.
 */
async function checkReceivedFiles(dataDir: string, pool: pg.Pool, clock: Clock): Promise<DoctorCheck> {
  const name = 'received files';
  try {
    const files = await unrecordedCopies(dataDir, pool, new Date(clock.now().getTime() - RECEIPT_IN_PROGRESS_MS));
    if (files.length === 0) return ok(name, 'every received file has its import record');
    const tenants = [...new Set(files.map((f) => f.relative.split(path.sep)[1] ?? '?'))].sort();
    const newest = files.reduce((a, b) => (b.mtime > a.mtime ? b : a));
    return warn(
      name,
      `${files.length} file${files.length === 1 ? '' : 's'} in ${path.join(dataDir, 'uploads')} ${files.length === 1 ? 'has' : 'have'} no import record ` +
        `(the newest, ${newest.relative}, from ${newest.mtime.toISOString()}), of ${tenants.join(', ')}: received after the ` +
        'backup the database was restored from, or left by a crash, and never imported',
      `ask ${tenants.length === 1 ? 'this district' : 'these districts'} to upload users.csv again; retention removes these copies after RETENTION_DAYS`,
    );
  } catch (err) {
    return warn(name, `cannot compare the received files with the database: ${describeError(err)}`, 'check DATA_DIR/uploads can be read');
  }
}

async function checkMail(config: Config, timeoutMs: number): Promise<DoctorCheck> {
  const name = 'mail';
  if (!config.SMTP_URL) {
    const outbox = outboxDir(config.DATA_DIR);
    const target = await nearestExisting(outbox);
    const probe = await probeWrite(target);
    return probe === undefined
      ? ok(name, `no SMTP_URL: reports are written as .eml files to ${outbox}`)
      : fail(name, `no SMTP_URL, and ${outbox} is not writable (${probe})`, 'set SMTP_URL to your mail server, or make DATA_DIR writable');
  }
  const where = hostOf(config.SMTP_URL);
  const transport = nodemailer.createTransport({
    url: config.SMTP_URL,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  try {
    await withTimeout(transport.verify(), timeoutMs * 2, `the mail server at ${where}`);
    return ok(name, `the mail server at ${where} accepts connections and credentials`);
  } catch (err) {
    const why = describeError(err);
    return fail(
      name,
      `the mail server at ${where} cannot be used: ${why}`,
      isCertificateError(why)
        ? // The server answers and its credentials may be right: only its certificate is refused.
          "renew or correct the mail server's TLS certificate; if your own certificate authority signed it, start rosterd with " +
            'NODE_EXTRA_CA_CERTS=/path/to/ca.pem; only on a network you trust, end SMTP_URL with ?tls.rejectUnauthorized=false. ' +
            'Reports wait in the outbox meanwhile'
        : 'check SMTP_URL (host, port, smtp:// or smtps://, user and password) and that the server is running; reports wait in the outbox meanwhile',
    );
  } finally {
    transport.close();
  }
}

/**
 * Node's words for a TLS certificate it refused (expired, self-signed, not for this host name),
 * which nodemailer passes on under its own code (ESOCKET).
 */
function isCertificateError(why: string): boolean {
  return /certificate|self[- ]signed|altnames/i.test(why);
}

/** undefined if a file can be created in dir, else why not. Root ignores modes, so really try. */
async function probeWrite(dir: string): Promise<string | undefined> {
  const probe = path.join(dir, `.rosterd-doctor-${randomBytes(6).toString('hex')}`);
  try {
    await fs.writeFile(probe, '', { flag: 'wx', mode: 0o600 });
    await fs.rm(probe, { force: true });
    await fs.access(dir, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? toError(err).message;
  }
}

/** dir, or its closest ancestor that exists (what would hold it once created). */
async function nearestExisting(dir: string): Promise<string> {
  let current = path.resolve(dir);
  for (;;) {
    try {
      await fs.stat(current);
      return current;
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

/** One line: the error's message (its first and last lines if it has several, e.g. initdb's), and its code. */
function describeError(err: unknown): string {
  const e = toError(err);
  const lines = e.message
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  // A tool's output (initdb, pg_ctl) is many lines: the first, the ones that say what went wrong, the last.
  const telling = lines.slice(1, -1).filter((l) => /error|fatal|could not|no space|permission denied|read-only/i.test(l));
  const kept = lines.length > 1 ? [lines[0], ...telling.slice(0, 3), lines[lines.length - 1]] : lines;
  const message = kept.length > 0 ? [...new Set(kept)].join(' … ') : e.name;
  const code = (e as NodeJS.ErrnoException).code;
  return code && !message.includes(code) ? `${message} (${code})` : message;
}
