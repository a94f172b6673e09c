/**
 * The composition root of `rosterd serve`: builds each part and hands it what it needs (config,
 * logger, pool, clock). Nothing else wires parts together. Stopping runs the releasers last-in,
 * first-out, so the database outlives everything that uses it.
 */
import type { Config } from './config/config.js';
import { redactedConfig } from './config/config.js';
import { toError } from './errors.js';
import { createPasswordHasher } from './import/hash-pool.js';
import { createMailer } from './report/mailer.js';
import { createScheduler } from './schedule/scheduler.js';
import { createMetrics } from './http/metrics.js';
import { observeSftp, recordImport } from './http/observe.js';
import { createHttpServer } from './http/server.js';
import { startRetention } from './ops/retention.js';
import { createSftpServer, type SftpServer } from './sftp/server.js';
import { describeClockSkew, isClockSkewed, measureClockSkew } from './store/clock-skew.js';
import { openDatabase, type Database } from './store/connect.js';
import { migrate } from './store/migrate.js';
import { ensureDataDir } from './store/paths.js';
import { systemClock, type Clock, type Logger } from './types.js';

export interface DaemonOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
}

export interface Daemon {
  readonly sftpPort: number;
  readonly httpPort: number;
  readonly sftp: SftpServer;
  readonly database: Database;
  /** Graceful stop: idempotent; every call returns the same promise. */
  stop(reason?: string): Promise<void>;
}

type Releaser = () => Promise<void>;

/** How often `rosterd serve` sends due reports between ticks (reports queued by the CLI included). */
const DELIVERY_POLL_MS = 10_000;
/** How often `rosterd serve` checks that its embedded Postgres still runs. */
const EMBEDDED_WATCH_MS = 10_000;

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const releasers: Releaser[] = [];
  const release = async () => {
    while (releasers.length > 0) {
      const next = releasers.pop();
      try {
        await next?.();
      } catch (err) {
        logger.error({ err: toError(err) }, 'error while stopping');
      }
    }
  };

  logger.info({ config: redactedConfig(config) }, 'rosterd starting');
  try {
    await ensureDataDir(config.DATA_DIR);
    const database = await openDatabase(config, logger.child({ component: 'store' }));
    releasers.push(() => database.close());
    if (database.embedded) {
      // The daemon holds the embedded Postgres: started again if something stops or kills it, so
      // that SFTP logins and imports do not fail until someone restarts rosterd.
      const watchdog = setInterval(() => {
        database.revive().catch((err: unknown) => logger.error({ err: toError(err) }, 'could not start the embedded Postgres again'));
      }, EMBEDDED_WATCH_MS).unref();
      releasers.push(async () => clearInterval(watchdog));
    }
    await migrate(database.pool, logger);
    const { pool } = database;
    await warnIfClockSkewed(pool, clock, logger);

    // Health and metrics first, so /healthz answers while the rest starts (/readyz says 503 until
    // SFTP listens); released last but the database, so it answers until the end.
    const metrics = createMetrics({ pool, clock, dataDir: config.DATA_DIR, logger: logger.child({ component: 'metrics' }) });
    let sftpListening = false;
    const http = createHttpServer({
      config,
      logger: logger.child({ component: 'http' }),
      pool,
      metrics,
      isSftpListening: () => sftpListening,
    });
    releasers.push(() => http.close());
    const { port: httpPort } = await http.listen();

    const graceMs = config.SHUTDOWN_GRACE_SECONDS * 1000;
    const sftp = createSftpServer({ config, logger, pool, clock });
    observeSftp(metrics, sftp.events);
    releasers.push(async () => {
      sftpListening = false;
      await sftp.close(graceMs);
    }); // idempotent: also closed with the scheduler below
    const { port: sftpPort } = await sftp.listen();
    sftpListening = true;

    const retention = startRetention({ config, pool, clock, logger: logger.child({ component: 'retention' }) });
    releasers.push(() => retention.stop());

    // One pool of hashing workers for the daemon's lifetime, shared by every import.
    const hasher = createPasswordHasher({ workers: config.HASH_WORKERS });
    releasers.push(() => hasher.close());
    const mailer = createMailer(config);
    releasers.push(async () => mailer.close());
    const scheduler = createScheduler(
      { pool, logger, clock, config, hasher, onImported: (record) => recordImport(metrics, record) },
      mailer,
      { deliveryPollMs: DELIVERY_POLL_MS },
    );
    scheduler.start();
    // Transfers and a running import get the same grace period, side by side: SFTP stops
    // accepting and drains while the import commits or rolls back; the database closes after both.
    releasers.push(async () => {
      await Promise.all([sftp.close(graceMs), scheduler.stop({ graceMs })]);
    });

    let stopping: Promise<void> | undefined;
    return {
      sftpPort,
      httpPort,
      sftp,
      database,
      stop: (reason = 'stop requested') => {
        stopping ??= (async () => {
          logger.info({ reason }, 'rosterd stopping');
          http.markShuttingDown(); // /readyz turns 503 at once, before the drain
          await release();
          logger.info('rosterd stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await release();
    throw err;
  }
}

/** At start, once: a host whose clock is off imports outside the window by as much (clock-skew.ts). */
async function warnIfClockSkewed(pool: Database['pool'], clock: Clock, logger: Logger): Promise<void> {
  const skew = await measureClockSkew(pool, clock).catch(() => undefined);
  if (skew === undefined || !isClockSkewed(skew)) return;
  logger.warn(
    { skewSeconds: Math.round(skew.skewMs) / 1000 },
    `this host's clock is ${describeClockSkew(skew)}: the night window, settling and stalled imports are timed that much off here; synchronise the clocks with NTP`,
  );
}
