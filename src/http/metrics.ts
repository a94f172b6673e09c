import fs from 'node:fs/promises';
import type pg from 'pg';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PG, pgCode } from '../errors.js';
import { withTimeout } from '../ops/timeout.js';
import { measureClockSkew } from '../store/clock-skew.js';
import { systemClock, type Clock, type Logger } from '../types.js';

/**
 * Prometheus metrics of one rosterd process (issue 5). Each process has its own registry (never
 * prom-client's global one), so tests and several daemons in one process do not collide.
 *
 * Counters and histograms are moved by the parts that see the event (SFTP server, importer);
 * the outbox gauges and each tenant's last successful import are read from Postgres at scrape
 * time, so they are right with several replicas and survive a restart. Counters are per process:
 * with replicas, sum them in Prometheus.
 */
export interface Metrics {
  readonly registry: Registry;
  /** SFTP sessions open now (inc on authenticated session start, dec on its end). */
  readonly sftpSessionsOpen: Gauge;
  /** Refused logins by reason: the SFTP server's AuthFailureReason (`key-not-registered`, `address-blocked`, …). */
  readonly authFailures: Counter<'reason'>;
  /** Files received (PRODUCT.md §2 "Receipt"), by file name (`users.csv`, `groups.csv`). */
  readonly uploadsReceived: Counter<'file'>;
  /** Bytes of the files received, by file name. */
  readonly uploadBytesReceived: Counter<'file'>;
  /** Writes that did not become an upload: `name-refused`, `failed` (too large, disk), `cut-off`. */
  readonly uploadsFailed: Counter<'reason'>;
  /** Imports finished, by outcome (`succeeded`, `completed_with_errors`, `failed`, `held`, `superseded`, …). */
  readonly imports: Counter<'outcome'>;
  /** Wall time of an import, by file name and outcome. */
  readonly importDuration: Histogram<'file' | 'outcome'>;
  /** Rows read by an import, by file name. */
  readonly importRows: Histogram<'file'>;
  /** Report emails in the outbox waiting to be sent (read from Postgres at scrape time). */
  readonly outboxWaiting: Gauge;
  /** Age in seconds of the oldest waiting report email; 0 when none waits. */
  readonly outboxOldestAge: Gauge;
  /** Unix time of each tenant's last succeeded or completed-with-errors import. */
  readonly tenantLastSuccessfulImport: Gauge<'tenant'>;
  /** Uploads waiting now, whichever process (daemon, replica, CLI) received or imports them, by status. */
  readonly uploadsWaiting: Gauge<'status'>;
  /** Age in seconds of the oldest upload in each waiting status, since it arrived; 0 when none. */
  readonly uploadsOldestWaiting: Gauge<'status'>;
  /** This process's clock minus the database's, in seconds (clock-skew.ts). */
  readonly clockSkew: Gauge;
  /** 1 if the last scrape could read the database-backed gauges, else 0. */
  readonly databaseUp: Gauge;
  /** Bytes free to rosterd on DATA_DIR's file system (uploads, and the embedded Postgres, live there). */
  readonly dataDirFree: Gauge;
}

export interface MetricsOptions {
  /** Where the scrape-time gauges are read from; without it they read NaN (unknown). */
  pool?: pg.Pool;
  logger?: Logger;
  /** Node process metrics (CPU, memory, event loop lag, handles); default true. */
  processMetrics?: boolean;
  /** The process's clock, compared with the database's (default: the system's). */
  clock?: Clock;
  /** DATA_DIR, whose free space is a gauge; without it the gauge reads NaN. */
  dataDir?: string;
}

/** A scrape does not wait longer than this for the database (Prometheus' own timeout is 10 s). */
const QUERY_TIMEOUT_MS = 2_000;

/** The statuses rosterd_uploads_waiting has a series for: an upload in none of them is done. */
const WAITING_STATUSES = ['pending', 'running', 'held'] as const;

interface Snapshot {
  outbox: { waiting: number; oldestAgeSeconds: number } | undefined;
  lastSuccess: Array<{ tenant: string; at: number }> | undefined;
  waiting: Array<{ status: string; count: number; oldestAgeSeconds: number }> | undefined;
  clockSkewSeconds: number | undefined;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'rosterd_' });

  const snapshot = snapshotReader(options.pool, options.logger, options.clock ?? systemClock);

  // While the database cannot be read, the outbox gauges show NaN (unknown, not "empty"); each
  // tenant's last success keeps its last known value (it can only have moved by a write that the
  // database, being down, cannot have taken).
  const outboxWaiting = new Gauge({
    name: 'rosterd_outbox_messages_waiting',
    help: 'Report emails in the outbox waiting to be sent or retried (NaN while the database cannot be read)',
    registers,
    async collect() {
      this.set((await snapshot()).outbox?.waiting ?? NaN);
    },
  });
  const outboxOldestAge = new Gauge({
    name: 'rosterd_outbox_oldest_waiting_age_seconds',
    help: 'Age of the oldest report email waiting in the outbox, 0 when none waits (NaN while the database cannot be read)',
    registers,
    async collect() {
      this.set((await snapshot()).outbox?.oldestAgeSeconds ?? NaN);
    },
  });
  const tenantLastSuccessfulImport = new Gauge({
    name: 'rosterd_tenant_last_successful_import_timestamp_seconds',
    help: "Unix time at which each active tenant's last succeeded or completed-with-errors import finished (never: when it was registered)",
    labelNames: ['tenant'] as const,
    registers,
    async collect() {
      const rows = (await snapshot()).lastSuccess;
      if (rows === undefined) return;
      this.reset();
      for (const row of rows) this.set({ tenant: row.tenant }, row.at);
    },
  });
  // Per status, also at 0, so that an alert on held imports sees the series before the first hold.
  const perWaitingStatus = (field: 'count' | 'oldestAgeSeconds') =>
    async function collect(this: Gauge<'status'>): Promise<void> {
      const rows = (await snapshot()).waiting;
      for (const status of WAITING_STATUSES) {
        this.set({ status }, rows === undefined ? NaN : (rows.find((r) => r.status === status)?.[field] ?? 0));
      }
    };
  const uploadsWaiting = new Gauge({
    name: 'rosterd_uploads_waiting',
    help: 'Uploads pending (waiting for the window or the next run), running, or held for an operator decision (NaN while the database cannot be read)',
    labelNames: ['status'] as const,
    registers,
    collect: perWaitingStatus('count'),
  });
  const uploadsOldestWaiting = new Gauge({
    name: 'rosterd_uploads_oldest_waiting_age_seconds',
    help: 'Age of the oldest upload in each waiting status since it arrived, 0 when none (NaN while the database cannot be read)',
    labelNames: ['status'] as const,
    registers,
    collect: perWaitingStatus('oldestAgeSeconds'),
  });
  const clockSkew = new Gauge({
    name: 'rosterd_clock_skew_seconds',
    help: "This process's clock minus the database's, in seconds; keep it near 0 with NTP: the night window, settling and claim expiry use this process's clock (NaN while the database cannot be read)",
    registers,
    async collect() {
      this.set((await snapshot()).clockSkewSeconds ?? NaN);
    },
  });
  // A full disk fails every upload (and the embedded database) with nothing else showing it ahead.
  const dataDirFree = new Gauge({
    name: 'rosterd_data_dir_free_bytes',
    help: "Bytes free to rosterd on DATA_DIR's file system, where uploads (and the embedded Postgres) are kept; alert well above MAX_UPLOAD_BYTES (NaN when it cannot be read)",
    registers,
    async collect() {
      this.set(options.dataDir === undefined ? NaN : await freeBytes(options.dataDir, options.logger));
    },
  });
  const databaseUp = new Gauge({
    name: 'rosterd_database_up',
    help: '1 if the last scrape could read the outbox and imports from Postgres, else 0',
    registers,
    async collect() {
      const s = await snapshot();
      this.set(s.outbox !== undefined && s.lastSuccess !== undefined && s.waiting !== undefined ? 1 : 0);
    },
  });

  return Object.freeze({
    registry,
    sftpSessionsOpen: new Gauge({ name: 'rosterd_sftp_sessions_open', help: 'SFTP sessions open now', registers }),
    authFailures: new Counter({
      name: 'rosterd_sftp_auth_failures_total',
      help: 'Refused SFTP logins, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    uploadsReceived: new Counter({
      name: 'rosterd_uploads_received_total',
      help: 'Files received over SFTP and queued for import, by file name',
      labelNames: ['file'] as const,
      registers,
    }),
    uploadBytesReceived: new Counter({
      name: 'rosterd_uploads_received_bytes_total',
      help: 'Bytes of the files received, by file name',
      labelNames: ['file'] as const,
      registers,
    }),
    uploadsFailed: new Counter({
      name: 'rosterd_uploads_failed_total',
      help: 'Writes refused, failed or cut off before they became an upload, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    imports: new Counter({
      name: 'rosterd_imports_total',
      help: 'Imports finished, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    }),
    importDuration: new Histogram({
      name: 'rosterd_import_duration_seconds',
      help: 'Wall time of an import, by file name and outcome',
      labelNames: ['file', 'outcome'] as const,
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    }),
    importRows: new Histogram({
      name: 'rosterd_import_rows',
      help: 'Rows read by an import, by file name',
      labelNames: ['file'] as const,
      buckets: [10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000],
      registers,
    }),
    outboxWaiting,
    outboxOldestAge,
    tenantLastSuccessfulImport,
    uploadsWaiting,
    uploadsOldestWaiting,
    clockSkew,
    databaseUp,
    dataDirFree,
  });
}

async function freeBytes(dir: string, logger: Logger | undefined): Promise<number> {
  try {
    const stats = await fs.statfs(dir);
    return stats.bavail * stats.bsize;
  } catch (err) {
    logger?.warn({ err, dir }, 'metrics: cannot read the free space of the data directory');
    return NaN;
  }
}

/**
 * Reads the database-backed values once per scrape: prom-client collects every metric in the same
 * tick, so the gauges share the query in flight. A missing table or a database that is down never fails the
 * scrape: /readyz reports those.
 */
function snapshotReader(pool: pg.Pool | undefined, logger: Logger | undefined, clock: Clock): () => Promise<Snapshot> {
  let inFlight: Promise<Snapshot> | undefined;
  return () => {
    if (!pool) return Promise.resolve({ outbox: undefined, lastSuccess: undefined, waiting: undefined, clockSkewSeconds: undefined });
    inFlight ??= readSnapshot(pool, logger, clock).finally(() => (inFlight = undefined));
    return inFlight;
  };
}

async function readSnapshot(pool: pg.Pool, logger: Logger | undefined, clock: Clock): Promise<Snapshot> {
  const [outbox, lastSuccess, waiting, clockSkewSeconds] = await Promise.all([
    tolerant(logger, 'outbox', { waiting: 0, oldestAgeSeconds: 0 }, async () => {
      const { rows } = await pool.query<{ waiting: number; oldest_age: number | null }>(
        `SELECT count(*)::int AS waiting,
                EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_age
           FROM outbox WHERE status = 'pending'`,
      );
      const row = rows[0];
      return { waiting: row?.waiting ?? 0, oldestAgeSeconds: Math.max(0, row?.oldest_age ?? 0) };
    }),
    tolerant(logger, 'last successful import', [], async () => {
      const { rows } = await pool.query<{ tenant: string; at: number }>(
        // Every active tenant has a series: one that never imported is timed from its
        // registration, so "no success for two days" also fires for a district that never got one.
        // The subquery is one probe of uploads_last_success_idx per tenant (migration 007).
        `SELECT t.subdomain AS tenant, EXTRACT(EPOCH FROM coalesce(last.at, t.created_at))::float8 AS at
           FROM tenants t
           LEFT JOIN LATERAL (
                SELECT coalesce(u.finished_at, u.status_changed_at) AS at FROM uploads u
                 WHERE u.tenant_id = t.id AND u.status IN ('succeeded', 'completed_with_errors')
                 ORDER BY coalesce(u.finished_at, u.status_changed_at) DESC LIMIT 1) last ON true
          WHERE t.status = 'active'`,
      );
      return rows;
    }),
    tolerant(logger, 'uploads waiting', [], async () => {
      const { rows } = await pool.query<{ status: string; count: number; oldest_age: number }>(
        `SELECT status, count(*)::int AS count, EXTRACT(EPOCH FROM now() - min(received_at))::float8 AS oldest_age
           FROM uploads WHERE status = ANY($1::text[])
          GROUP BY status`,
        [WAITING_STATUSES],
      );
      return rows.map((r) => ({ status: r.status, count: r.count, oldestAgeSeconds: Math.max(0, r.oldest_age) }));
    }),
    tolerant(logger, 'clock', undefined, async () => (await measureClockSkew(pool, clock)).skewMs / 1000),
  ]);
  return { outbox, lastSuccess, waiting, clockSkewSeconds };
}

/** The query's result; `ifMissing` when its table is not there yet (42P01: migrations pending, so
 *  nothing to count); undefined when the database cannot be read. */
async function tolerant<T>(logger: Logger | undefined, what: string, ifMissing: T, read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await withTimeout(read(), QUERY_TIMEOUT_MS, `metrics query (${what})`);
  } catch (err) {
    if (pgCode(err) === PG.UNDEFINED_TABLE) return ifMissing;
    logger?.debug({ err, what }, 'metrics: cannot read from the database');
    return undefined;
  }
}
