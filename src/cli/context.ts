import type { Command } from 'commander';
import type pg from 'pg';
import { loadConfig, LOG_LEVELS, type Config } from '../config/config.js';
import { PG, pgCode, RosterdError, toError } from '../errors.js';
import { withTimeout } from '../ops/timeout.js';
import { createLogger } from '../log/logger.js';
import { openDatabase, type Database } from '../store/connect.js';
import { migrate } from '../store/migrate.js';
import { ensureDataDir, existingDataDir } from '../store/paths.js';
import type { Logger } from '../types.js';
import { FORCED_EXIT_MS, signalExitCode, watchSignals } from './signals.js';

/** What every command gets: configuration, a logger on stderr, and the database. */
export interface CliContext {
  config: Config;
  logger: Logger;
  pool: pg.Pool;
  json: boolean;
  /**
   * For commands run `interruptible`: aborted on the first SIGINT or SIGTERM (its reason is the
   * signal's name), so that the command stops cleanly and says what it left; it then exits with
   * signalExitCode. A second signal exits at once.
   */
  interrupted?: AbortSignal;
}

/** The signal that interrupted an `interruptible` command (CliContext.interrupted), once one has. */
export function interruptedBy(ctx: CliContext): NodeJS.Signals | undefined {
  return ctx.interrupted?.aborted ? (ctx.interrupted.reason as NodeJS.Signals) : undefined;
}

/** A command's result: the JSON document for --json and the text for a person. */
export interface Output {
  json: unknown;
  text: string;
  /** exit code; 0 unless the command found a failure it reports as data */
  exitCode?: number;
  /** the command wrote its output to stdout itself, as a stream (export users) */
  streamed?: boolean;
}

export type Handler = (ctx: CliContext, args: string[], opts: Record<string, unknown>) => Promise<Output>;

export interface RunOptions {
  /** commands like `serve` manage their own database and lifetime */
  needsDatabase?: boolean;
  /**
   * What the command needs of DATA_DIR: `create` it if missing (migrate); that it `exist`
   * (commands that read or write files there: host keys, received uploads); by default, that it
   * exist when the embedded Postgres is used (DATABASE_URL unset), since the database is in it.
   */
  dataDir?: 'create' | 'exist' | 'default';
  /** apply pending migrations before the handler (default true; `migrate` does it itself) */
  autoMigrate?: boolean;
  /** the handler stops cleanly on SIGINT or SIGTERM (see CliContext.interrupted) */
  interruptible?: boolean;
}

/** Adds --json to a leaf command and wires its handler with uniform output and exit codes. */
export function leaf(cmd: Command, handler: Handler, options: RunOptions = {}): Command {
  return cmd.option('--json', 'machine-readable output').action(async (...raw: unknown[]) => {
    const command = raw[raw.length - 1] as Command;
    const opts = command.opts<Record<string, unknown>>();
    const args = raw.slice(0, -2).flatMap((a) => (Array.isArray(a) ? a.map(String) : a === undefined ? [] : [String(a)]));
    await runHandler(handler, args, opts, options);
  });
}

async function runHandler(handler: Handler, args: string[], opts: Record<string, unknown>, options: RunOptions): Promise<void> {
  const json = opts.json === true;
  let db: Database | undefined;
  const interruption = options.interruptible ? watchInterruption(() => db) : undefined;
  try {
    const config = loadConfig();
    // Commands talk to people on stdout; logs go to stderr and stay quiet unless asked for.
    const logger = createLogger(cliLogLevel(), process.stderr);
    const dataDir = options.dataDir ?? 'default';
    if (dataDir === 'create') await ensureDataDir(config.DATA_DIR);
    else if (dataDir === 'exist' || config.DATABASE_URL === undefined) await existingDataDir(config.DATA_DIR);
    if (options.needsDatabase !== false) {
      db = await openDatabase(config, logger, 4, { lockTimeoutMs: config.CLI_LOCK_TIMEOUT_SECONDS * 1000 });
      if (options.autoMigrate !== false) await migrate(db.pool, logger);
    }
    const out = await handler(
      { config, logger, pool: db?.pool as pg.Pool, json, ...(interruption ? { interrupted: interruption.signal } : {}) },
      args,
      opts,
    );
    if (out.streamed !== true) {
      process.stdout.write(
        json ? JSON.stringify(out.json, null, 2) + '\n' : out.text.endsWith('\n') || out.text === '' ? out.text : out.text + '\n',
      );
    }
    process.exitCode = out.exitCode ?? 0;
  } catch (caught) {
    reportError(db && lockTimedOut(caught) ? await lockedError(db.pool, caught) : caught, json);
  } finally {
    await db?.close();
    interruption?.dispose();
  }
}

/** The error, or one it was caused by, is Postgres's lock_timeout (CLI_LOCK_TIMEOUT_SECONDS). */
function lockTimedOut(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (pgCode(e) === PG.LOCK_NOT_AVAILABLE) return true;
  }
  return false;
}

/** How long lockedError waits for the list of sessions before saying the lock timed out without it. */
const SESSIONS_TIMEOUT_MS = 2_000;

/**
 * A command stopped by lock_timeout, as an error that says who is likely in its way: the
 * sessions of this database whose transaction is older than the wait (a psql left in BEGIN, a
 * long import), with what ends one. Postgres no longer says which lock was waited for, so these
 * are the suspects, oldest first.
 */
async function lockedError(pool: pg.Pool, caught: unknown): Promise<RosterdError> {
  const waited = (await pool.query<{ ms: string }>("SELECT current_setting('lock_timeout') AS ms").catch(() => undefined))?.rows[0]?.ms;
  type Session = { pid: number; app: string; usename: string | null; client: string | null; state: string | null; secs: number };
  const sessions = await withTimeout(
    pool.query<Session>(
      `SELECT pid, coalesce(nullif(application_name, ''), '(no application name)') AS app, usename, host(client_addr) AS client,
              state, extract(epoch FROM now() - xact_start)::int AS secs
         FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
          AND xact_start < now() - current_setting('lock_timeout')::interval
        ORDER BY xact_start LIMIT 5`,
    ),
    SESSIONS_TIMEOUT_MS,
    'the list of sessions',
  ).then(
    (r) => r.rows,
    () => undefined,
  );
  const duration = (s: number) => (s >= 120 ? `${Math.floor(s / 60)} min` : `${s} s`);
  const who =
    sessions === undefined
      ? 'The sessions holding transactions open could not be listed.'
      : sessions.length === 0
        ? 'No session holds a transaction that long any more: run the command again.'
        : `Sessions with a transaction open longer than that, oldest first: ${sessions
            .map(
              (s) =>
                `pid ${s.pid} (${s.app}${s.usename ? `, user ${s.usename}` : ''}${s.client ? ` from ${s.client}` : ''}, ` +
                `${s.state ?? 'state unknown'} for ${duration(s.secs)})`,
            )
            .join('; ')}. Run the command again once they are done; one left open by mistake can be ended ` +
          `with SELECT pg_terminate_backend(PID). An import of rosterd's own ends by itself.`;
  return new RosterdError(
    'DATABASE_LOCKED',
    `this command waited ${waited && waited !== '0' ? waited : 'CLI_LOCK_TIMEOUT_SECONDS'} for a database lock another session holds, ` +
      `and stopped; what it had not committed was rolled back. ${who} (CLI_LOCK_TIMEOUT_SECONDS sets how long commands wait.)`,
    { cause: caught },
  );
}

/**
 * The first SIGINT or SIGTERM aborts the signal the handler watches; a second one exits at once
 * with the same code, letting go of the embedded Postgres as serve does: a transaction still open
 * rolls back as its connection closes.
 */
function watchInterruption(database: () => Database | undefined): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const watch = watchSignals(
    (signal) => controller.abort(signal),
    (signal) => {
      process.stderr.write(`rosterd: ${signal} again: exiting now; what was not committed is rolled back\n`);
      const exit = () => process.exit(signalExitCode(signal));
      setTimeout(exit, FORCED_EXIT_MS).unref();
      (database()?.abandon() ?? Promise.resolve()).then(exit, exit);
    },
  );
  return { signal: controller.signal, dispose: () => watch.dispose() };
}

/**
 * The level of a command's logger: LOG_LEVEL if it is a level, else 'warn'. loadConfig has already
 * refused a bad LOG_LEVEL for most commands; doctor reports it as a failed check instead, so
 * its logger must not die of it first.
 */
export function cliLogLevel(env: NodeJS.ProcessEnv = process.env): string {
  const level = env.LOG_LEVEL?.trim(); // as loadConfig reads it
  return level !== undefined && (LOG_LEVELS as readonly string[]).includes(level) ? level : 'warn';
}

/** The reader of stdout went away (`| head`): nothing more can be said there, and nothing went wrong. */
export function isClosedPipe(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';
}

export function reportError(caught: unknown, json: boolean): void {
  if (isClosedPipe(caught)) return;
  const err = toError(caught);
  const rosterd = err instanceof RosterdError ? err : undefined;
  const code = rosterd?.code ?? 'INTERNAL';
  process.exitCode = rosterd?.isUsage ? 2 : 1;
  if (json) {
    process.stdout.write(JSON.stringify({ error: { code, message: err.message } }, null, 2) + '\n');
  } else {
    process.stderr.write(`rosterd: ${err.message}\n`);
    if (!rosterd) process.stderr.write(`${err.stack ?? ''}\n`);
  }
}

/**
 * Parses a whole number option strictly: decimal digits only, so '' , '0x10', '1e3' and ' 7' are
 * refused rather than read as 0, 16, 1000 and 7. A usage error names the flag, the bounds and
 * `alternative`: what else the flag takes, which the caller handles before (`"none" to …`).
 */
export function intOption(value: unknown, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER, alternative?: string): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const or = alternative === undefined ? '' : `, or ${alternative}`;
    throw new RosterdError('USAGE', `${flag} must be a whole number from ${min} to ${max}${or}, not "${text}"`);
  }
  return n;
}

/**
 * Parses a decimal option strictly: digits, then optionally a point and at most `decimals` digits
 * (more would be rounded by the database, so they are refused).
 */
export function decimalOption(value: unknown, flag: string, decimals: number): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  const match = /^\d+(?:\.(\d+))?$/.exec(text);
  if (!match) throw new RosterdError('USAGE', `${flag} must be a plain decimal number such as 10 or 2.5, not "${text}"`);
  if ((match[1] ?? '').length > decimals) {
    throw new RosterdError('USAGE', `${flag} takes at most ${decimals} decimal places, not "${text}"`);
  }
  return Number(text);
}

/** Formats rows as an aligned text table. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (c ?? '').padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
