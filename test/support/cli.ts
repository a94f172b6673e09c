import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { waitFor } from './wait.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

/** The fields PRODUCT.md §7 promises in an import's JSON (`import list`, `import show`, `validate`). */
export const IMPORT_JSON_FIELDS = [
  'id',
  'tenant',
  'file',
  'sha256',
  'bytes',
  'receivedAt',
  'status',
  'mode',
  'counts',
  'errors',
  'warnings',
  'message',
] as const;

/** An import as `import list/show --json` print it: the fields IMPORT_JSON_FIELDS names. */
export interface ImportJson {
  id: string;
  tenant: string;
  file: string;
  sha256: string;
  bytes: number;
  receivedAt: string;
  status: string;
  mode: string | null;
  counts: Record<string, number>;
  errors: Array<{ line: number; column: string; value?: string; message: string; username?: string }>;
  warnings: Array<{ line: number; column: string; message: string; username?: string }>;
  message: string | null;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (commands run with --json) */
  json<T = unknown>(): T;
}

/**
 * Runs the built `rosterd` command as a subprocess (npm test builds first). The environment is
 * cleared of rosterd's variables so only what the test passes counts.
 */
export function runCli(args: string[], env: Record<string, string | undefined>, stdin?: string): Promise<CliResult> {
  return startCli(args, env, stdin).result;
}

/** A running `rosterd` subprocess (to signal it), and its result once it exits. */
export interface CliProcess {
  child: ChildProcess;
  /** what it printed so far */
  output(): { stdout: string; stderr: string };
  result: Promise<CliResult & { signal: NodeJS.Signals | null }>;
}

/** Starts the built `rosterd` command as runCli does, without waiting for it. */
export function startCli(args: string[], env: Record<string, string | undefined>, stdin?: string): CliProcess {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(DATABASE_URL|DATA_DIR|SFTP_|SMTP_|MAIL_FROM|SCHEDULE_CRON|HTTP_|LOG_LEVEL)/.test(k)) base[k] = v;
  }
  for (const [k, v] of Object.entries(env)) if (v !== undefined) base[k] = v;
  const child = spawn(process.execPath, [CLI, ...args], { env: base, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const result = new Promise<CliResult & { signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({
        code,
        signal,
        stdout,
        stderr,
        json<T>() {
          try {
            return JSON.parse(stdout) as T;
          } catch {
            throw new Error(`rosterd ${args.join(' ')} did not print JSON (exit ${code}):\n${stdout}\n${stderr}`);
          }
        },
      }),
    );
  });
  child.stdin.end(stdin ?? '');
  return { child, output: () => ({ stdout, stderr }), result };
}

/**
 * Resolves once the CLI process `run` is hashing passwords in its import (claimed, staged and
 * planned, its transaction open): the moment to interrupt or kill it. Fails if it exits first.
 */
export async function importHashing(pool: pg.Pool, run: CliProcess): Promise<void> {
  await waitFor(
    async () => {
      if (run.child.exitCode !== null) throw new Error(`rosterd exited before hashing: ${JSON.stringify(run.output())}`);
      const { rowCount } = await pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'FETCH % FROM import_passwords'`,
      );
      return (rowCount ?? 0) > 0;
    },
    30_000,
    'the import to hash passwords',
  );
}
