/**
 * The composition root of `rosterd serve`: builds each part and hands it what it needs (config,
 * logger, pool, clock). Nothing else wires parts together. Stopping runs the releasers last-in,
 * first-out, so the database outlives everything that uses it.
 */
import type { Config } from './config/config.js';
import { redactedConfig } from './config/config.js';
import { toError } from './errors.js';
import { createSftpServer, type SftpServer } from './sftp/server.js';
import { openDatabase, type Database } from './store/connect.js';
import { migrate } from './store/migrate.js';
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
    const database = await openDatabase(config, logger.child({ component: 'store' }));
    releasers.push(() => database.close());
    await migrate(database.pool, logger);
    const { pool } = database;

    const sftp = createSftpServer({ config, logger, pool, clock });
    const { port: sftpPort } = await sftp.listen();
    releasers.push(() => sftp.close(config.SHUTDOWN_GRACE_SECONDS * 1000));

    let stopping: Promise<void> | undefined;
    return {
      sftpPort,
      httpPort: 0,
      sftp,
      database,
      stop: (reason = 'stop requested') => {
        stopping ??= (async () => {
          logger.info({ reason }, 'rosterd stopping');
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
