import type { Command } from 'commander';
import { loadConfig } from '../../config/config.js';
import { describeLookalike, findLookalikes } from '../../config/lookalikes.js';
import { startDaemon, type Daemon } from '../../daemon.js';
import { toError } from '../../errors.js';
import { createLogger } from '../../log/logger.js';
import { reportError } from '../context.js';
import { FORCED_EXIT_MS, watchSignals } from '../signals.js';
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
        // Watched from before the start, which takes seconds (the embedded Postgres, host keys): a
        // SIGTERM then (a rolling update, a quick Ctrl-C) would kill the process as it stands, with
        // no clean stop. It is kept, and the daemon stops as soon as it is up.
        let daemon: Daemon | undefined;
        let stopRequested: NodeJS.Signals | undefined;
        const stopAndExit = (running: Daemon, signal: NodeJS.Signals) =>
          running.stop(signal).then(
            () => process.exit(0),
            (err: unknown) => {
              logger?.error({ err: toError(err) }, 'shutdown failed');
              process.exit(1);
            },
          );
        watchSignals(
          (signal) => {
            if (daemon !== undefined) return void stopAndExit(daemon, signal);
            stopRequested = signal;
            logger?.info({ signal }, 'signal during start: stopping as soon as started');
          },
          (signal) => {
            // The operator does not want to wait for the grace period. The embedded Postgres is
            // still let go of (stopped if nothing else uses it), for a few seconds at most.
            logger?.warn({ signal }, 'second signal: exiting now');
            const exit = () => process.exit(1);
            setTimeout(exit, FORCED_EXIT_MS).unref();
            if (daemon === undefined) exit();
            else daemon.database.abandon().then(exit, exit);
          },
        );
        // Names only: a misspelt SMTP_URL's value holds the mail password as much as the real one's.
        for (const lookalike of findLookalikes(process.env)) {
          logger.warn(
            { event: 'config.lookalike', variable: lookalike.variable, resembles: lookalike.resembles },
            describeLookalike(lookalike),
          );
        }
        daemon = await startDaemon({ config, logger });
        if (stopRequested !== undefined) await stopAndExit(daemon, stopRequested);
      } catch (err) {
        logger?.fatal({ err: toError(err) }, 'rosterd could not start');
        reportError(err, false);
      }
    });
}
