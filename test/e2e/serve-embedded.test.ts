/**
 * `rosterd serve` on the embedded Postgres (issue 2, PRODUCT.md §7-§9: `npm start` with no
 * DATABASE_URL): the daemon starts Postgres in DATA_DIR, CLI commands run beside it use that same
 * server (no second postmaster on the data directory, no failure because serve holds it), SIGTERM
 * stops both, the CLI alone still works on the data directory, and a second start finds the data.
 * Everything is real: `node dist/cli/main.js serve`, the CLI as subprocesses, OpenSSH `sftp`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli, type CliResult, type ImportJson } from '../support/cli.js';
import { zoneWhereItIsDay, type Exit, type LogLine } from '../support/serve.js';
import { makeClientKey, run, sftpBatch, waitFor, type ClientKey } from '../support/ssh.js';

/** Every variable rosterd reads (as in test/support/serve.ts): none leaks in, DATABASE_URL least of all. */
const ROSTERD_ENV =
  /^(DATABASE_URL|DATA_DIR|SFTP_|SMTP_|MAIL_FROM|SCHEDULE_CRON|HTTP_|LOG_LEVEL|MAX_UPLOAD_BYTES|SETTLE_SECONDS|IMPORT_MAX_ATTEMPTS|CLAIM_TTL_SECONDS|SHUTDOWN_GRACE_SECONDS|RETENTION_DAYS|HASH_WORKERS)/;
const TENANT = 'embedded-usd';
const STARTUP_MS = 90_000;

let tmp = '';
let dataDir = '';
let pgDir = '';
let pidFile = '';
let key: ClientKey;
let fingerprint = '';
let csvBytes: Buffer;
let csvFile = '';
const daemons: Daemon[] = [];

interface Daemon {
  child: ChildProcess;
  logs: LogLine[];
  lines: string[];
  exit: Exit | undefined;
  exited: Promise<Exit>;
  sftpPort: number;
  httpPort: number;
  dump(): string;
}

/** `rosterd serve` with DATABASE_URL unset; resolves once /readyz answers 200. */
async function startServe(): Promise<Daemon> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !ROSTERD_ENV.test(k)) env[k] = v;
  Object.assign(env, {
    DATA_DIR: dataDir,
    SFTP_HOST: '127.0.0.1',
    SFTP_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    // The scheduler runs every second, but the tenant's window is closed (its zone has day now).
    SCHEDULE_CRON: '* * * * * *',
    SETTLE_SECONDS: '0',
    LOG_LEVEL: 'info',
    HASH_WORKERS: '1',
  });
  const child = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const d: Daemon = {
    child,
    logs: [],
    lines: [],
    exit: undefined,
    exited: new Promise<Exit>((resolve) =>
      // 'close' comes after the pipes are drained: every line is in by then.
      child.once('close', (code, signal) => {
        d.exit = { code, signal };
        resolve(d.exit);
      }),
    ),
    sftpPort: 0,
    httpPort: 0,
    dump: () => d.lines.join('\n'),
  };
  daemons.push(d);
  createInterface({ input: child.stdout! }).on('line', (line) => {
    d.lines.push(line);
    try {
      d.logs.push(JSON.parse(line) as LogLine);
    } catch {
      /* kept in lines */
    }
  });
  createInterface({ input: child.stderr! }).on('line', (line) => d.lines.push(`stderr: ${line}`));

  const logged = (msg: string) => () => {
    if (d.exit) throw new Error(`rosterd serve exited (${JSON.stringify(d.exit)}) before '${msg}':\n${d.dump()}`);
    return d.logs.find((l) => l.msg === msg);
  };
  const sftp = await waitFor(logged('SFTP server listening'), STARTUP_MS, "'SFTP server listening'");
  const http = await waitFor(logged('health and metrics endpoint listening'), 5_000, 'the HTTP port');
  d.sftpPort = Number(sftp.port);
  d.httpPort = Number(http.port);
  await waitFor(
    async () => {
      if (d.exit) throw new Error(`rosterd serve exited before /readyz was 200:\n${d.dump()}`);
      const res = await fetch(`http://127.0.0.1:${d.httpPort}/readyz`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
      return res?.status === 200;
    },
    30_000,
    '/readyz 200',
  );
  return d;
}

/** SIGTERM, and the exit. */
async function stopServe(d: Daemon): Promise<Exit> {
  if (d.exit) return d.exit;
  d.child.kill('SIGTERM');
  return d.exited;
}

/** The rosterd CLI on the same DATA_DIR, no DATABASE_URL; info logs (to stderr) show what it did with Postgres. */
const cli = (...args: string[]): Promise<CliResult> => runCli(args, { DATA_DIR: dataDir, LOG_LEVEL: 'info' });

const cliLogs = (r: CliResult): string[] =>
  r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => String((JSON.parse(l) as LogLine).msg));

/** Processes on this machine: pid, parent pid and argv. */
function processes(): Array<{ pid: number; ppid: number; argv: string[] }> {
  const out: Array<{ pid: number; ppid: number; argv: string[] }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.push({ pid: Number(name), ppid, argv });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/**
 * Postmasters running on the embedded cluster (`postgres -D DATA_DIR/pg ...`). A backend just forked
 * still shows its postmaster's command line for a moment, so a process whose parent is on the
 * cluster too is a backend, not a second postmaster.
 */
function postmasters(): number[] {
  const onCluster = processes().filter(({ argv }) => path.basename(argv[0] ?? '') === 'postgres' && argv[argv.indexOf('-D') + 1] === pgDir);
  const pids = new Set(onCluster.map((p) => p.pid));
  return onCluster.filter((p) => !pids.has(p.ppid)).map((p) => p.pid);
}

const pidInFile = (): number | undefined => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : undefined);

/** Samples the postmasters on the cluster until stopped: every pid seen, and the most at once. */
function watchPostmasters() {
  const seen = new Set<number>();
  let most = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = postmasters();
    for (const p of now) seen.add(p);
    most = Math.max(most, now.length);
    timer = setTimeout(tick, 5);
  };
  tick();
  return {
    stop() {
      clearTimeout(timer);
      tick();
      clearTimeout(timer);
      return { seen: [...seen], most };
    },
  };
}

/** The embedded Postgres's own log, and how often it came up. */
const serverLog = () => readFileSync(path.join(pgDir, 'server.log'), 'utf8');
const readyCount = () =>
  serverLog()
    .split('\n')
    .filter((l) => l.includes('database system is ready to accept connections')).length;

/**
 * Lines of the Postgres log at ERROR or worse (a second postmaster on the cluster would leave a
 * FATAL here), but for what a fast shutdown writes about a connection still open as it stops.
 */
const SHUTDOWN_NOISE =
  /terminating connection due to administrator command|could not receive data from client|unexpected EOF on client connection/;
const serverLogErrors = () =>
  serverLog()
    .split('\n')
    .filter((l) => /\b(ERROR|FATAL|PANIC):/.test(l) && !SHUTDOWN_NOISE.test(l));

const errorLines = (d: Daemon) => d.logs.filter((l) => l.level === 'error' || l.level === 'fatal');

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-serve-embedded-'));
  // Run as root, the embedded Postgres drops to the "postgres" user, which must pass through tmp.
  if (process.getuid?.() === 0) await fs.chmod(tmp, 0o711);
  dataDir = path.join(tmp, 'data');
  pgDir = path.join(dataDir, 'pg');
  pidFile = path.join(pgDir, 'postmaster.pid');
  key = await makeClientKey(tmp, 'ed25519', 'sis');
  const lf = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', key.publicPath]);
  fingerprint = lf.stdout.split(' ')[1] ?? '';
  expect(fingerprint).toMatch(/^SHA256:/);
  csvBytes = Buffer.from('username,email,first name,last name\nada1,ada@district.example.org,Ada,Lovelace\n');
  csvFile = path.join(tmp, 'users.csv');
  await fs.writeFile(csvFile, csvBytes);
});

afterAll(async () => {
  for (const d of daemons) {
    if (!d.exit) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  }
  // A postmaster left behind (a daemon killed, a test failed half-way): kill it and its backends.
  if (tmp) {
    const all = processes();
    const leftover = all.filter(({ argv }) => path.basename(argv[0] ?? '') === 'postgres' && argv.some((a) => a.startsWith(tmp)));
    const pids = new Set(leftover.map((p) => p.pid));
    for (const p of all) if (pids.has(p.ppid)) pids.add(p.pid);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await waitFor(() => [...pids].every((pid) => !existsSync(`/proc/${pid}`)), 10_000, 'leftover postgres processes to exit').catch(
      () => undefined,
    );
    await fs.rm(tmp, { recursive: true, force: true });
  }
});

describe('rosterd serve on the embedded Postgres (no DATABASE_URL)', () => {
  let first: Daemon;
  let postmaster = 0;
  let uploadId = '';

  it(
    'starts Postgres in a fresh DATA_DIR and becomes ready',
    async () => {
      expect(existsSync(dataDir)).toBe(false);
      first = await startServe();
      const msgs = first.logs.map((l) => l.msg);
      expect(msgs).toContain('initialising embedded Postgres (first start)');
      expect(msgs.filter((m) => m === 'starting embedded Postgres')).toHaveLength(1);
      postmaster = pidInFile() ?? 0;
      expect(postmaster).toBeGreaterThan(0);
      expect(postmasters()).toEqual([postmaster]);
      expect(readyCount()).toBe(1);
    },
    STARTUP_MS,
  );

  it('the CLI beside it uses the same server: tenant add, key add, an sftp upload, import list', async () => {
    const watch = watchPostmasters();
    let sampled: { seen: number[]; most: number };
    try {
      // A zone where it is day: the tenant's window is closed, so the upload stays pending.
      const added = await cli('tenant', 'add', TENANT, '--admin-email', 'it@embedded.example', '--timezone', zoneWhereItIsDay(), '--json');
      expect(added.code, added.stderr).toBe(0);
      expect(added.json()).toMatchObject({ subdomain: TENANT });

      const k = await cli('key', 'add', TENANT, key.publicPath, '--json');
      expect(k.code, k.stderr).toBe(0);
      expect(k.json()).toMatchObject({ tenant: TENANT, fingerprint });

      // The daemon sees the tenant and key the CLI wrote: OpenSSH sftp logs in with it and uploads.
      const put = await sftpBatch(first.sftpPort, TENANT, key, [`put ${csvFile} /users.csv`]);
      expect(put.code, put.stderr).toBe(0);

      const list = await cli('import', 'list', '--json');
      expect(list.code, list.stderr).toBe(0);
      const imports = list.json<ImportJson[]>();
      expect(imports).toEqual([
        expect.objectContaining({
          tenant: TENANT,
          file: 'users.csv',
          bytes: csvBytes.length,
          sha256: createHash('sha256').update(csvBytes).digest('hex'),
          status: 'pending',
        }),
      ]);
      uploadId = imports[0]!.id;
      expect(first.logs.some((l) => l.event === 'upload.received' && l.uploadId === uploadId)).toBe(true);

      // None of the three started or stopped Postgres: they connected to the daemon's.
      for (const r of [added, k, list]) {
        expect(cliLogs(r)).not.toContain('starting embedded Postgres');
        expect(cliLogs(r)).not.toContain('stopping embedded Postgres');
        expect(cliLogs(r)).not.toContain('initialising embedded Postgres (first start)');
      }
    } finally {
      sampled = watch.stop();
    }
    // One postmaster on the data directory throughout, the daemon's, still running.
    expect(sampled).toEqual({ seen: [postmaster], most: 1 });
    expect(pidInFile()).toBe(postmaster);
    expect(readyCount()).toBe(1);
    expect(serverLog()).not.toMatch(/lock file .* already exists/);
    expect(first.exit).toBeUndefined();
    const ready = await fetch(`http://127.0.0.1:${first.httpPort}/readyz`, { signal: AbortSignal.timeout(5_000) });
    expect(ready.status).toBe(200);
  });

  it('SIGTERM stops the daemon (exit 0) and its Postgres, with no error in the log', async () => {
    const exit = await stopServe(first);
    expect(exit, first.dump()).toEqual({ code: 0, signal: null });
    expect(pidInFile()).toBeUndefined();
    await waitFor(() => postmasters().length === 0 && !existsSync(`/proc/${postmaster}`), 10_000, 'the postmaster to exit');
    const msgs = first.logs.map((l) => l.msg);
    expect(msgs).toContain('stopping embedded Postgres');
    expect(msgs).toContain('rosterd stopped');
    expect(msgs).not.toContain('embedded Postgres did not stop cleanly');
    expect(errorLines(first), `error-level lines of the first serve:\n${first.dump()}`).toEqual([]);
    expect(
      first.lines.filter((l) => l.startsWith('stderr: ')),
      'stderr of the first serve',
    ).toEqual([]);
    expect(readdirSync(path.join(dataDir, 'pg.leases'))).toEqual([]);
    expect(existsSync(path.join(dataDir, 'pg.lock'))).toBe(false);
    expect(serverLogErrors(), 'ERROR/FATAL/PANIC lines in DATA_DIR/pg/server.log').toEqual([]);
  });

  it('the CLI alone still works on the data directory and leaves no Postgres running', async () => {
    const tenants = await cli('tenant', 'list', '--json');
    expect(tenants.code, tenants.stderr).toBe(0);
    expect(tenants.json()).toEqual([expect.objectContaining({ subdomain: TENANT, status: 'active' })]);
    // With nobody else on it, the command started the server itself and stopped it again.
    expect(cliLogs(tenants)).toContain('starting embedded Postgres');
    expect(cliLogs(tenants)).toContain('stopping embedded Postgres');

    const list = await cli('import', 'list', '--tenant', TENANT, '--json');
    expect(list.code, list.stderr).toBe(0);
    expect(list.json<ImportJson[]>().map((x) => [x.id, x.status])).toEqual([[uploadId, 'pending']]);

    expect(pidInFile()).toBeUndefined();
    await waitFor(() => postmasters().length === 0, 10_000, 'no postmaster on the data directory');
    expect(readdirSync(path.join(dataDir, 'pg.leases'))).toEqual([]);
  });

  it(
    'a second serve on the same DATA_DIR has the tenant, key and pending upload, and stops cleanly',
    async () => {
      const readyBefore = readyCount();
      const second = await startServe();
      expect(readyCount()).toBe(readyBefore + 1);
      const msgs = second.logs.map((l) => l.msg);
      expect(msgs).not.toContain('initialising embedded Postgres (first start)');
      expect(msgs).toContain('starting embedded Postgres');
      const pm = pidInFile() ?? 0;
      expect(pm).toBeGreaterThan(0);
      expect(postmasters()).toEqual([pm]);

      // The key still logs in, and the upload is still waiting for the tenant's window.
      const ls = await sftpBatch(second.sftpPort, TENANT, key, ['ls /']);
      expect(ls.code, ls.stderr).toBe(0);
      const list = await cli('import', 'list', '--json');
      expect(list.code, list.stderr).toBe(0);
      expect(list.json<ImportJson[]>().map((x) => [x.id, x.tenant, x.status])).toEqual([[uploadId, TENANT, 'pending']]);
      expect(cliLogs(list)).not.toContain('starting embedded Postgres');
      expect(postmasters()).toEqual([pm]);
      expect(readyCount()).toBe(readyBefore + 1);

      const exit = await stopServe(second);
      expect(exit, second.dump()).toEqual({ code: 0, signal: null });
      expect(pidInFile()).toBeUndefined();
      await waitFor(() => postmasters().length === 0 && !existsSync(`/proc/${pm}`), 10_000, 'the postmaster to exit');
      expect(errorLines(second), `error-level lines of the second serve:\n${second.dump()}`).toEqual([]);
      expect(second.logs.map((l) => l.msg)).toContain('stopping embedded Postgres');
      expect(serverLogErrors(), 'ERROR/FATAL/PANIC lines in DATA_DIR/pg/server.log').toEqual([]);
    },
    STARTUP_MS,
  );

  it(
    'a Postgres stopped under serve is started again by it, on the same port: serve recovers by itself',
    async () => {
      const d = await startServe();
      const pm = pidInFile() ?? 0;
      const port = readFileSync(path.join(dataDir, 'pg.port'), 'utf8').trim();
      process.kill(pm, 'SIGINT'); // what an operator's `pg_ctl stop -m fast` does
      await waitFor(() => !existsSync(`/proc/${pm}`), 20_000, 'the postmaster to exit');
      await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${d.httpPort}/readyz`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
          return res?.status === 200;
        },
        40_000,
        '/readyz 200 again',
      );
      expect(d.logs.map((l) => l.msg)).toContain('the embedded Postgres was not running; starting it again');
      expect(pidInFile()).not.toBe(pm);
      expect(readFileSync(path.join(dataDir, 'pg.port'), 'utf8').trim()).toBe(port);
      const ls = await sftpBatch(d.sftpPort, TENANT, key, ['ls /']);
      expect(ls.code, ls.stderr).toBe(0);
      expect(await stopServe(d), d.dump()).toEqual({ code: 0, signal: null });
      await waitFor(() => postmasters().length === 0, 10_000, 'no postmaster on the data directory');
    },
    STARTUP_MS,
  );
});
