/**
 * `rosterd serve` as a real subprocess (`node dist/cli/main.js serve`), for end-to-end tests of
 * the whole daemon: its JSON log lines are captured and parsed, it is stopped with a signal (or
 * killed), and its exit is reported. `npm test` builds dist/ first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { insertUpload } from '../../src/store/uploads.js';
import type { AcceptedFileName } from '../../src/types.js';
import { CLI } from './cli.js';
import { createTestDatabase, type TestDatabase } from './db.js';

/** Every variable rosterd reads (PRODUCT.md §8, README): none leaks in from the test's environment. */
const ROSTERD_ENV =
  /^(DATABASE_URL|DATA_DIR|SFTP_|SMTP_|MAIL_FROM|SCHEDULE_CRON|HTTP_|LOG_LEVEL|MAX_UPLOAD_BYTES|SETTLE_SECONDS|IMPORT_MAX_ATTEMPTS|CLAIM_TTL_SECONDS|SHUTDOWN_GRACE_SECONDS|RETENTION_DAYS|HASH_WORKERS)/;

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** the SFTP port, as the daemon logged it ('SFTP server listening') */
  readonly sftpPort: number;
  /** the /healthz, /readyz, /metrics port, as the daemon logged it */
  readonly httpPort: number;
  readonly dataDir: string;
  /** every stdout line parsed as JSON (pino) */
  readonly logs: LogLine[];
  /** every line the process wrote, stdout and stderr, as written (for scanning) */
  readonly lines: string[];
  /** stdout lines that were not JSON (should be none) */
  readonly nonJson: string[];
  readonly exited: Promise<Exit>;
  /** the exit, once it happened */
  readonly exit: Exit | undefined;
  /** The first log line (already written or still to come) that matches; rejects on timeout or exit. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Sends `signal` (default SIGTERM) and waits for the exit; SIGKILL after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** kill -9, and wait for the exit. */
  kill(): Promise<Exit>;
  /** Everything written so far, for a failure message. */
  dump(): string;
}

export interface ServeOptions {
  databaseUrl: string;
  dataDir: string;
  /** more environment (overrides the defaults below) */
  env?: Record<string, string>;
  /** default 0: the daemon picks one and logs it */
  sftpPort?: number;
  /** default 0: the daemon picks one and logs it */
  httpPort?: number;
  /** how long to wait for 'SFTP server listening' (default 30 s) */
  startTimeoutMs?: number;
}

export interface ServeFixture {
  /** set once the file's tests start */
  db: TestDatabase;
  tmp: string;
  /** DATA_DIR of the daemons, in tmp */
  dataDir: string;
  daemons: ServeProcess[];
  /** A daemon on the fixture's database and data directory, killed after the file's tests. */
  start(env?: Record<string, string>): Promise<ServeProcess>;
}

/**
 * What a file of `rosterd serve` tests sets up: a test database of its own, a temporary folder
 * holding DATA_DIR, and the daemons it starts, all killed and removed after its tests. Call it at
 * the top level of the test file.
 */
export function useServeFixture(name: string): ServeFixture {
  const fx: ServeFixture = {
    db: undefined as unknown as TestDatabase,
    tmp: '',
    dataDir: '',
    daemons: [],
    async start(env = {}) {
      const d = await startServe({ databaseUrl: fx.db.url, dataDir: fx.dataDir, env });
      fx.daemons.push(d);
      return d;
    },
  };
  beforeAll(async () => {
    fx.db = await createTestDatabase();
    fx.tmp = await fs.mkdtemp(path.join(os.tmpdir(), `rosterd-${name}-`));
    fx.dataDir = path.join(fx.tmp, 'data');
  });
  afterAll(async () => {
    for (const d of fx.daemons) await d.stop('SIGKILL').catch(() => undefined);
    await (fx.db as TestDatabase | undefined)?.drop();
    if (fx.tmp) await fs.rm(fx.tmp, { recursive: true, force: true });
  });
  return fx;
}

/** A port that was free a moment ago (listen on 0, close, reuse). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `rosterd serve` and resolves once it logs 'SFTP server listening' (it has migrated,
 * loaded its host keys and listens). Defaults: SCHEDULE_CRON every second, SETTLE_SECONDS 0,
 * LOG_LEVEL info, one hashing worker, loopback only, SFTP_PORT and HTTP_PORT 0 (the daemon picks
 * free ports and logs them, so parallel test files never race for a port).
 */
export async function startServe(opts: ServeOptions): Promise<ServeProcess> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !ROSTERD_ENV.test(k)) env[k] = v;
  Object.assign(env, {
    DATABASE_URL: opts.databaseUrl,
    DATA_DIR: opts.dataDir,
    SFTP_HOST: '127.0.0.1',
    SFTP_PORT: String(opts.sftpPort ?? 0),
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(opts.httpPort ?? 0),
    SCHEDULE_CRON: '* * * * * *',
    SETTLE_SECONDS: '0',
    LOG_LEVEL: 'info',
    HASH_WORKERS: '1',
    ...opts.env,
  });

  const child = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const lines: string[] = [];
  const nonJson: string[] = [];
  const watchers = new Set<() => void>();
  let exit: Exit | undefined;
  const notify = () => {
    for (const w of [...watchers]) w();
  };

  const splitter = (onLine: (line: string) => void) => {
    let rest = '';
    return {
      data: (chunk: Buffer) => {
        rest += chunk.toString('utf8');
        const parts = rest.split('\n');
        rest = parts.pop() ?? '';
        for (const p of parts) onLine(p);
      },
      end: () => {
        if (rest !== '') onLine(rest);
        rest = '';
      },
    };
  };
  const out = splitter((line) => {
    lines.push(line);
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      nonJson.push(line);
    }
    notify();
  });
  const err = splitter((line) => {
    lines.push(line);
    notify();
  });
  child.stdout?.on('data', out.data);
  child.stdout?.on('end', out.end);
  child.stderr?.on('data', err.data);
  child.stderr?.on('end', err.end);

  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // Let the pipes drain before anyone reads the last lines.
      setTimeout(() => {
        notify();
        resolve({ code, signal });
      }, 50);
    });
  });

  const dump = () => lines.join('\n');

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 30_000, what = 'a log line'): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < logs.length; seen++) {
          const line = logs[seen];
          if (line && match(line)) return done(() => resolve(line));
        }
        if (exit) done(() => reject(new Error(`rosterd serve exited (${JSON.stringify(exit)}) before ${what}:\n${dump()}`)));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${dump()}`))),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        watchers.delete(check);
        settle();
      };
      watchers.add(check);
      check();
    });

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<Exit> => {
    if (exit) return exit;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  const listening = await waitForLog(
    (l) => l.msg === 'SFTP server listening',
    opts.startTimeoutMs ?? 30_000,
    "'SFTP server listening'",
  ).catch(async (e: unknown) => {
    await stop('SIGKILL');
    throw e;
  });
  const sftpPort = Number(listening.port);
  // The health endpoint listens (and logs its port) before the SFTP server does.
  const httpPort = Number(logs.find((l) => l.msg === 'health and metrics endpoint listening')?.port ?? opts.httpPort ?? 0);

  return {
    child,
    pid: child.pid ?? -1,
    sftpPort,
    httpPort,
    dataDir: opts.dataDir,
    logs,
    lines,
    nonJson,
    exited,
    get exit() {
      return exit;
    },
    waitForLog,
    stop,
    kill: () => stop('SIGKILL'),
    dump,
  };
}

/** Zones around the globe, a few hours apart: at any instant one has night and one has day. */
const ZONES = [
  'Pacific/Honolulu',
  'America/Anchorage',
  'America/Los_Angeles',
  'America/Denver',
  'America/Chicago',
  'America/New_York',
  'America/Sao_Paulo',
  'Atlantic/Azores',
  'Europe/London',
  'Europe/Berlin',
  'Europe/Athens',
  'Europe/Moscow',
  'Asia/Dubai',
  'Asia/Karachi',
  'Asia/Kolkata',
  'Asia/Bangkok',
  'Asia/Shanghai',
  'Asia/Tokyo',
  'Australia/Sydney',
  'Pacific/Auckland',
];

/** Minutes from local midnight in `zone` at `now` (0 at midnight, 720 at noon). */
function fromMidnight(zone: string, now: Date): number {
  const t = DateTime.fromJSDate(now, { zone });
  const m = t.hour * 60 + t.minute;
  return Math.min(m, 24 * 60 - m);
}

/**
 * A zone where it is night now, well inside the default 18:00-06:00 window (about 19:00-05:00),
 * so a daemon imports on its own, without forcing a daytime window, whenever the test runs.
 */
export function zoneWhereItIsNight(now = new Date()): string {
  const best = [...ZONES].sort((a, b) => fromMidnight(a, now) - fromMidnight(b, now))[0] ?? 'America/New_York';
  if (fromMidnight(best, now) > 5 * 60) throw new Error(`no zone in the list has night now (${now.toISOString()})`);
  return best;
}

/** A zone where it is day now, well outside the default window (about 07:00-17:00). */
export function zoneWhereItIsDay(now = new Date()): string {
  const best = [...ZONES].sort((a, b) => fromMidnight(b, now) - fromMidnight(a, now))[0] ?? 'America/New_York';
  if (fromMidnight(best, now) < 7 * 60) throw new Error(`no zone in the list has day now (${now.toISOString()})`);
  return best;
}

/**
 * Records a file as received the way src/sftp/receipt.ts does: an immutable copy (mode 0400) in
 * DATA_DIR/uploads/<tenant>/, its path relative to DATA_DIR, size and SHA-256, a pending row.
 */
export async function receiveUpload(
  pool: pg.Pool,
  dataDir: string,
  tenant: string,
  content: string | Buffer,
  fileName: AcceptedFileName = 'users.csv',
  receivedAt = new Date(),
): Promise<string> {
  const dir = path.join(dataDir, 'uploads', tenant);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const name = `${receivedAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomUUID()}-${fileName}`;
  const abs = path.join(dir, name);
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  await fs.writeFile(abs, bytes, { mode: 0o400, flag: 'wx' });
  const upload = await insertUpload(pool, {
    tenantSubdomain: tenant,
    fileName,
    bytes: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    storedPath: path.relative(dataDir, abs),
    keyFingerprint: null,
    remoteAddress: '192.0.2.10',
    receivedAt,
  });
  return upload.id;
}

/** Writes a full-sync users.csv of `rows` students (no passwords) to `file`, streamed; returns its size. */
export async function writeLargeUsersCsv(file: string, rows: number, prefix = 'user'): Promise<number> {
  const out = createWriteStream(file);
  out.write('username,email,first name,last name,graduation year,role,sis id\n');
  for (let i = 0; i < rows; i++) {
    const n = String(i).padStart(7, '0');
    const line = `${prefix}${n},${prefix}${n}@district.example.org,First${i % 997},Last${i % 9973},${2027 + (i % 12)},student,SIS${n}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return (await fs.stat(file)).size;
}
