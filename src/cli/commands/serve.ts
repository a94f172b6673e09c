import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { loadConfig } from '../../config/config.js';
import { startDaemon } from '../../daemon.js';
import { toError } from '../../errors.js';
import { createLogger } from '../../log/logger.js';
import { reportError } from '../context.js';
import type { Logger } from '../../types.js';

/** A signal within this long of the first is the same one delivered twice (see onSignal). */
const REPEATED_SIGNAL_MS = 1000;
/** How long a forced exit waits for the embedded Postgres to stop. */
const FORCED_EXIT_MS = 5000;

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the SFTP server, the import scheduler and the health endpoint')
    // Accepted like on every command; the daemon's output is JSON log lines either way.
    .option('--json', 'machine-readable output (logs are JSON lines already)')
    .action(async () => {
      let logger: Logger | undefined;
      try {
        const config = loadConfig();
        logger = createLogger(config.LOG_LEVEL);
        const daemon = await startDaemon({ config, logger });
        let firstSignalAt: number | undefined;
        const onSignal = (signal: NodeJS.Signals) => {
          if (firstSignalAt !== undefined) {
            // Ctrl-C under `npm start` arrives twice at once: from the terminal, and forwarded by
            // npm. Only a second signal the operator sent later forces.
            if (performance.now() - firstSignalAt < REPEATED_SIGNAL_MS) return;
            // The operator does not want to wait for the grace period. The embedded Postgres is
            // still let go of (stopped if nothing else uses it), for a few seconds at most.
            logger?.warn({ signal }, 'second signal: exiting now');
            const exit = () => process.exit(1);
            setTimeout(exit, FORCED_EXIT_MS).unref();
            daemon.database.abandon().then(exit, exit);
            return;
          }
          firstSignalAt = performance.now();
          daemon.stop(signal).then(
            () => process.exit(0),
            (err: unknown) => {
              logger?.error({ err: toError(err) }, 'shutdown failed');
              process.exit(1);
            },
          );
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      } catch (err) {
        logger?.fatal({ err: toError(err) }, 'rosterd could not start');
        reportError(err, false);
      }
    });
}
