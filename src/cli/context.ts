import type { Command } from 'commander';
import type pg from 'pg';
import { loadConfig, type Config } from '../config/config.js';
import { RosterdError, toError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { openDatabase, type Database } from '../store/connect.js';
import { migrate } from '../store/migrate.js';
import type { Logger } from '../types.js';

/** What every command gets: configuration, a logger on stderr, and the database. */
export interface CliContext {
  config: Config;
  logger: Logger;
  pool: pg.Pool;
  json: boolean;
}

/** A command's result: the JSON document for --json and the text for a person. */
export interface Output {
  json: unknown;
  text: string;
  /** exit code; 0 unless the command found a failure it reports as data */
  exitCode?: number;
}

export type Handler = (ctx: CliContext, args: string[], opts: Record<string, unknown>) => Promise<Output>;

export interface RunOptions {
  /** commands like `serve` manage their own database and lifetime */
  needsDatabase?: boolean;
  /** apply pending migrations before the handler (default true; `migrate` does it itself) */
  autoMigrate?: boolean;
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
  try {
    const config = loadConfig();
    // Commands talk to people on stdout; logs go to stderr and stay quiet unless asked for.
    const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', process.stderr);
    if (options.needsDatabase !== false) {
      db = await openDatabase(config, logger, 4);
      if (options.autoMigrate !== false) await migrate(db.pool, logger);
    }
    const out = await handler({ config, logger, pool: db?.pool as pg.Pool, json }, args, opts);
    process.stdout.write(
      json ? JSON.stringify(out.json, null, 2) + '\n' : out.text.endsWith('\n') || out.text === '' ? out.text : out.text + '\n',
    );
    process.exitCode = out.exitCode ?? 0;
  } catch (caught) {
    reportError(caught, json);
  } finally {
    await db?.close();
  }
}

export function reportError(caught: unknown, json: boolean): void {
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

/** Parses a whole number option; a usage error names the flag. */
export function intOption(value: unknown, flag: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new RosterdError('USAGE', `${flag} must be a whole number of at least ${min}, not "${String(value)}"`);
  return n;
}

export function numberOption(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new RosterdError('USAGE', `${flag} must be a number, not "${String(value)}"`);
  return n;
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
