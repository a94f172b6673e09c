/**
 * SIGINT and SIGTERM for the commands that stop gracefully (`serve`, `import run`, `import approve`):
 * the first one asks for a clean stop, a second one sent later exits at once.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';

/**
 * A signal within this long of the first is the same one delivered twice: Ctrl-C under npm
 * (`npm start`, `npx rosterd`) reaches the process from the terminal and again forwarded by npm.
 */
export const REPEATED_SIGNAL_MS = 1000;
/** How long a forced exit waits for the embedded Postgres to stop. */
export const FORCED_EXIT_MS = 5000;

/** The exit code of a command stopped by `signal`, as shells report one killed by it: 130 for SIGINT, 143 for SIGTERM. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}

export interface SignalWatch {
  /** removes the handlers; idempotent */
  dispose(): void;
}

/**
 * Calls `onFirst` on the first SIGINT or SIGTERM and `onSecond` on one sent after it (not the same
 * one delivered twice, see REPEATED_SIGNAL_MS), until disposed.
 */
export function watchSignals(onFirst: (signal: NodeJS.Signals) => void, onSecond: (signal: NodeJS.Signals) => void): SignalWatch {
  let firstAt: number | undefined;
  const handler = (signal: NodeJS.Signals) => {
    if (firstAt === undefined) {
      firstAt = performance.now();
      onFirst(signal);
    } else if (performance.now() - firstAt >= REPEATED_SIGNAL_MS) {
      onSecond(signal);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
