/**
 * Interrupting an import (an operator's Ctrl-C on `rosterd import run`): once the signal aborts,
 * the import's transaction fails at once and rolls back whole, rather than run on for minutes
 * after the operator has asked it to stop.
 */
import type pg from 'pg';
import { RosterdError } from '../errors.js';
import type { ImportHook } from './engine-types.js';

/** Between two statements there is nothing to cancel: the cancel is sent again this often. */
const CANCEL_AGAIN_MS = 200;

/** `cause`: what the interrupted import failed of (a cancelled statement, the hasher closed). */
export function interruptedError(cause?: unknown): RosterdError {
  return new RosterdError(
    'IMPORT_INTERRUPTED',
    'the import was interrupted; it was rolled back and nothing was changed',
    cause === undefined ? undefined : { cause },
  );
}

export function throwIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interruptedError();
}

/**
 * While `client` runs the import's transaction: once `signal` aborts, cancel the statement it runs
 * (again every CANCEL_AGAIN_MS until the returned stop is called), so that the transaction fails
 * and is rolled back. Stop waits for a cancel in flight, so that none reaches the connection's
 * next user in the pool.
 */
export async function cancelOnAbort(pool: pg.Pool, client: pg.PoolClient, signal: AbortSignal | undefined): Promise<() => Promise<void>> {
  if (signal === undefined) return async () => undefined;
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]?.pid;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  const cancel = () => {
    inFlight = inFlight.then(() => pool.query('SELECT pg_cancel_backend($1)', [pid]).catch(() => undefined));
  };
  const onAbort = () => {
    cancel();
    timer = setInterval(cancel, CANCEL_AGAIN_MS);
    timer.unref();
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return async () => {
    signal.removeEventListener('abort', onAbort);
    clearInterval(timer);
    await inFlight;
  };
}

/** The engine's hook between its steps (`at`), stopping an interrupted import there first. */
export function stopBetweenSteps(signal: AbortSignal | undefined, at: ImportHook | undefined): ImportHook {
  return async (point, client) => {
    throwIfInterrupted(signal);
    await at?.(point, client);
  };
}

/**
 * Runs `fn`, the work of `client`'s import transaction, with its statements cancelled once
 * `signal` aborts (cancelOnAbort); whatever it then fails of is IMPORT_INTERRUPTED.
 */
export async function interruptible<T>(
  pool: pg.Pool,
  client: pg.PoolClient,
  signal: AbortSignal | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  const stopCancelling = await cancelOnAbort(pool, client, signal);
  try {
    return await fn();
  } catch (err) {
    throw signal?.aborted ? interruptedError(err) : err;
  } finally {
    await stopCancelling();
  }
}
