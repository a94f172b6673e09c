import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type pg from 'pg';
import type { Config } from '../config/config.js';
import { describeFileError, FILE_PROBLEMS, RosterdError, toError } from '../errors.js';
import { withTimeout } from '../ops/timeout.js';
import { spoolDir } from '../sftp/spool.js';
import { pendingMigrations } from '../store/migrate.js';
import type { Logger } from '../types.js';
import type { Metrics } from './metrics.js';

/**
 * The operator's HTTP endpoint (issue 5), on HTTP_HOST:HTTP_PORT inside `rosterd serve`:
 * - `/healthz`: 200 while the process can answer at all (liveness);
 * - `/readyz`: 200 when the database answers, its schema is current, the SFTP server is
 *   listening and DATA_DIR can take an upload; 503 with a JSON reason otherwise, and from the
 *   moment shutdown begins;
 * - `/metrics`: Prometheus text from the process's own registry.
 */
export interface HttpServerDeps {
  config: Pick<Config, 'HTTP_HOST' | 'HTTP_PORT' | 'DATA_DIR'>;
  logger: Logger;
  pool: pg.Pool;
  metrics: Metrics;
  isSftpListening: () => boolean;
  /** Free space on DATA_DIR under which /readyz says not ready (default READY_MIN_FREE_BYTES; tests). */
  minFreeBytes?: number;
}

export interface HttpServer {
  /** Binds HTTP_HOST:HTTP_PORT (0 picks a free port); idempotent. */
  listen(): Promise<{ port: number }>;
  /** From now on /readyz answers 503 "shutting down", so load balancers stop sending work. */
  markShuttingDown(): void;
  /** Stops listening and ends open connections (after a short grace for requests in flight); idempotent. */
  close(): Promise<void>;
}

export interface CheckOutcome {
  ok: boolean;
  /** what is wrong and what to do, when not ok */
  reason?: string;
}

export interface Readiness {
  ready: boolean;
  checks: { database: CheckOutcome; migrations: CheckOutcome; sftp: CheckOutcome; dataDir: CheckOutcome };
  /** the first failing check's reason */
  reason?: string;
}

/** /readyz waits this long for `SELECT 1` before calling the database unreachable. */
const DATABASE_TIMEOUT_MS = 2_000;
/** /readyz waits this long for DATA_DIR to take its probe (a hung network mount must not hang the probe). */
const DATA_DIR_TIMEOUT_MS = 2_000;
/**
 * Less free space than this on DATA_DIR and /readyz says not ready: a district's users.csv is a
 * few MiB, and the embedded Postgres writes its WAL there too. Not MAX_UPLOAD_BYTES (1 GiB by
 * default): most uploads still fit well below it, and doctor and rosterd_data_dir_free_bytes
 * warn of that much sooner.
 */
export const READY_MIN_FREE_BYTES = 64 * 1024 ** 2;
/** Requests still running at close are cut after this long. */
const CLOSE_GRACE_MS = 2_000;

export function createHttpServer(deps: HttpServerDeps): HttpServer {
  const { config, logger, metrics } = deps;
  let shuttingDown = false;
  let listening: Promise<{ port: number }> | undefined;
  let closing: Promise<void> | undefined;

  const server = http.createServer((req, res) => {
    handle(req, res).catch((caught: unknown) => {
      const err = toError(caught);
      logger.error({ err, path: req.url }, 'http request failed');
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ status: 'error', reason: err.message }));
      else res.destroy();
    });
  });
  // A probe or scrape is small; a slow or stuck client must not hold a socket for long.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, 'application/json', JSON.stringify({ status: 'error', reason: 'only GET and HEAD are served' }));
      return;
    }
    switch (path) {
      case '/healthz':
        send(res, 200, 'application/json', JSON.stringify({ status: 'ok' }));
        return;
      case '/readyz': {
        const readiness = shuttingDown ? shuttingDownReadiness() : await checkReadiness(deps);
        if (!readiness.ready) logger.debug({ readiness }, 'not ready');
        send(
          res,
          readiness.ready ? 200 : 503,
          'application/json',
          JSON.stringify({ status: readiness.ready ? 'ready' : 'not ready', ...readiness }),
        );
        return;
      }
      case '/metrics':
        send(res, 200, metrics.registry.contentType, await metrics.registry.metrics());
        return;
      default:
        send(res, 404, 'application/json', JSON.stringify({ status: 'error', reason: 'not found; try /healthz, /readyz or /metrics' }));
    }
  }

  return {
    listen() {
      listening ??= new Promise((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) => {
          const where = `${config.HTTP_HOST}:${config.HTTP_PORT}`;
          reject(
            new RosterdError(
              'LISTEN_FAILED',
              err.code === 'EADDRINUSE'
                ? `HTTP_PORT ${where} is already in use; stop what uses it or set HTTP_PORT to a free port`
                : `cannot listen on ${where} for /healthz and /metrics (${err.message}); check HTTP_HOST and HTTP_PORT`,
              { cause: err },
            ),
          );
        };
        server.once('error', onError);
        server.listen(config.HTTP_PORT, config.HTTP_HOST, () => {
          server.off('error', onError);
          server.on('error', (err) => logger.error({ err }, 'http server error'));
          const { port } = server.address() as AddressInfo;
          logger.info({ host: config.HTTP_HOST, port }, 'health and metrics endpoint listening');
          resolve({ port });
        });
      });
      return listening;
    },
    markShuttingDown() {
      shuttingDown = true;
    },
    close() {
      shuttingDown = true;
      closing ??= new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

/**
 * What /readyz answers: the database (SELECT 1 within 2 s), its migrations, the SFTP listener,
 * and DATA_DIR, where every upload is written.
 */
export async function checkReadiness(
  deps: Pick<HttpServerDeps, 'pool' | 'isSftpListening' | 'minFreeBytes'> & { config: Pick<Config, 'DATA_DIR'> },
): Promise<Readiness> {
  let database: CheckOutcome;
  let migrations: CheckOutcome;
  try {
    await withTimeout(deps.pool.query('SELECT 1'), DATABASE_TIMEOUT_MS, 'the database');
    database = { ok: true };
    try {
      const pending = await withTimeout(pendingMigrations(deps.pool), DATABASE_TIMEOUT_MS, 'the migration check');
      migrations =
        pending.length === 0
          ? { ok: true }
          : { ok: false, reason: `migrations not applied: ${pending.join(', ')}; run "rosterd migrate" or restart "rosterd serve"` };
    } catch (err) {
      migrations = { ok: false, reason: `cannot read the applied migrations: ${toError(err).message}` };
    }
  } catch (err) {
    database = { ok: false, reason: `database unreachable: ${toError(err).message}` };
    migrations = { ok: false, reason: 'not checked: the database is unreachable' };
  }
  const sftp: CheckOutcome = deps.isSftpListening() ? { ok: true } : { ok: false, reason: 'the SFTP server is not listening' };
  const dataDir = await checkDataDir(deps.config.DATA_DIR, deps.minFreeBytes ?? READY_MIN_FREE_BYTES);
  const checks = { database, migrations, sftp, dataDir };
  const reason = [database, migrations, sftp, dataDir].find((c) => !c.ok)?.reason;
  return reason === undefined ? { ready: true, checks } : { ready: false, checks, reason };
}

/**
 * DATA_DIR can take an upload: a small file is written and removed in the spool folder, where
 * every upload starts (a read-only remount, lost permissions or a full disk show there), and its
 * file system has minFreeBytes free. Without this /readyz said ready while every upload failed.
 */
async function checkDataDir(dataDir: string, minFreeBytes: number): Promise<CheckOutcome> {
  const spool = spoolDir(dataDir);
  // .part: left behind by a crash, the spool sweep removes it as it does a cut-off transfer.
  const probe = path.join(spool, `.readyz-${process.pid}-${randomUUID()}.part`);
  try {
    await withTimeout(
      fs.writeFile(probe, 'rosterd readiness probe\n').finally(() => fs.rm(probe, { force: true })),
      DATA_DIR_TIMEOUT_MS,
      `the spool folder ${spool}`,
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const problem = code === undefined ? toError(err).message : code === 'ENOSPC' ? FILE_PROBLEMS.ENOSPC : describeFileError(err, true);
    return {
      ok: false,
      reason:
        `DATA_DIR cannot take uploads: writing in ${spool} failed (${problem}); ` +
        'uploads fail until it is fixed (free space, permissions for the rosterd user, a read-write mount)',
    };
  }
  let free: number;
  try {
    const stats = await withTimeout(fs.statfs(dataDir), DATA_DIR_TIMEOUT_MS, `the file system of ${dataDir}`);
    free = stats.bavail * stats.bsize;
  } catch (err) {
    return { ok: false, reason: `cannot read the free space of DATA_DIR ${dataDir}: ${toError(err).message}` };
  }
  if (free < minFreeBytes) {
    const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
    return {
      ok: false,
      reason:
        `DATA_DIR ${dataDir} is nearly full: ${mib(free)} free, less than the ${mib(minFreeBytes)} uploads need; ` +
        'free some space or grow the volume',
    };
  }
  return { ok: true };
}

function shuttingDownReadiness(): Readiness {
  const reason = 'shutting down';
  const skipped: CheckOutcome = { ok: false, reason };
  return { ready: false, checks: { database: skipped, migrations: skipped, sftp: skipped, dataDir: skipped }, reason };
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
