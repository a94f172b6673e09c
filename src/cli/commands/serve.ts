import type { Command } from 'commander';
import { loadConfig } from '../../config/config.js';
import { startDaemon } from '../../daemon.js';
import { toError } from '../../errors.js';
import { createLogger } from '../../log/logger.js';
import { reportError } from '../context.js';
import type { Logger } from '../../types.js';

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
        let signals = 0;
        const onSignal = (signal: NodeJS.Signals) => {
          signals += 1;
          if (signals > 1) {
            // A second signal forces: the operator does not want to wait for the grace period.
            logger?.warn({ signal }, 'second signal: exiting now');
            process.exit(1);
          }
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
