/**
 * The cron tick inside `rosterd serve` (PRODUCT.md §5): on SCHEDULE_CRON, import what is pending
 * (processPending) and send what the outbox holds (deliverDue), which the daemon also does every
 * few seconds between ticks (deliveryPollMs). Ticks never overlap: a tick that comes while one
 * still runs is skipped. A tick that node-cron reports missed (it came late) runs at once.
 *
 * start() and stop() are idempotent. stop() starts no further upload and waits for the running
 * import to commit or roll back. Given a grace period that runs out first, it gives the running
 * claims back (the uploads are pending again, not counted as a failed attempt; the import can no
 * longer record its outcome and rolls back whole when the process exits) and resolves.
 */
import cron, { type ScheduledTask } from 'node-cron';
import { toError } from '../errors.js';
import { deliverDue } from '../report/delivery.js';
import type { Mailer } from '../report/mailer.js';
import type { Logger } from '../types.js';
import { releaseClaims } from './claims.js';
import { processPending, type ScheduleContext } from './process.js';

export interface Scheduler {
  start(): void;
  /** Stop ticking; wait for the running tick, at most `graceMs` (default: as long as it takes). */
  stop(opts?: { graceMs?: number }): Promise<void>;
  /** One tick now (also what cron calls); resolves when it is done. A tick already running is joined. */
  tick(): Promise<void>;
  readonly running: boolean;
}

export interface SchedulerOptions {
  /**
   * Between ticks, also send due reports this often (off when unset). Reports queued by an
   * operator's command (an approval, `import run` from a shell without SMTP_URL) then go out
   * within seconds, through this daemon's mail settings, not at the next SCHEDULE_CRON tick.
   */
  deliveryPollMs?: number;
}

export function createScheduler(ctx: ScheduleContext, mailer: Mailer, options: SchedulerOptions = {}): Scheduler {
  const log = ctx.logger.child({ component: 'scheduler' });
  const activeClaims = ctx.activeClaims ?? new Map<string, string>();
  const tickCtx: ScheduleContext = { ...ctx, activeClaims };
  let task: ScheduledTask | undefined;
  let abort = new AbortController();
  let current: Promise<void> | undefined;
  let poll: NodeJS.Timeout | undefined;
  let delivering: Promise<void> | undefined;

  /** deliverDue, one pass at a time (the tick's and the poll's); rows are locked, so replicas may overlap. */
  function deliver(): Promise<void> {
    delivering ??= deliverDue(ctx, mailer)
      .then(() => undefined)
      .catch((err: unknown) => log.error({ err: toError(err) }, 'could not deliver reports; the next pass tries again'))
      .finally(() => {
        delivering = undefined;
      });
    return delivering;
  }

  async function runTick(signal: AbortSignal): Promise<void> {
    try {
      const s = await processPending(tickCtx, { signal });
      log.debug(
        { imported: s.imported.length, waiting: s.waiting.length, retried: s.retried.length, failed: s.failed.length },
        'tick: imports done',
      );
    } catch (err) {
      log.error({ err: toError(err) }, 'tick: could not process pending uploads; the next tick tries again');
    }
    if (signal.aborted) return;
    await deliver();
  }

  const scheduler: Scheduler = {
    get running() {
      return task !== undefined;
    },
    tick() {
      current ??= runTick(abort.signal).finally(() => {
        current = undefined;
      });
      return current;
    },
    start() {
      if (task) return;
      abort = new AbortController();
      task = cron.createTask(ctx.config.SCHEDULE_CRON, () => scheduler.tick(), {
        name: 'rosterd-import',
        noOverlap: true,
        logger: cronLogger(log),
      });
      // node-cron runs a tick only within a second of its time; one whose timer fires later (the
      // event loop blocked, a suspended VM, the clock stepped forward) is "missed" and never run.
      // With a SCHEDULE_CRON that fires once a night that was the night's only chance, lost with a
      // warning. A tick at any time is safe (it checks each window then, and joins a running
      // tick), so a missed one runs now; several missed at once run as one.
      task.on('execution:missed', (missed) => {
        const fields = { cron: ctx.config.SCHEDULE_CRON, due: missed.date.toISOString() };
        if (current) log.debug(fields, 'a scheduled tick came late; the running tick covers it');
        else log.warn(fields, 'the scheduled tick came late (the process was stalled or the clock jumped); running it now');
        void scheduler.tick();
      });
      void task.start();
      if (options.deliveryPollMs !== undefined) {
        poll = setInterval(() => void deliver(), options.deliveryPollMs);
        poll.unref();
      }
      log.info({ cron: ctx.config.SCHEDULE_CRON, mail: mailer.kind }, 'scheduler started');
    },
    async stop(opts = {}) {
      const t = task;
      task = undefined;
      abort.abort();
      if (poll) clearInterval(poll);
      poll = undefined;
      if (t) {
        await t.stop();
        await t.destroy();
      }
      // One grace period for all of it (the tick's import and any report being sent), not one each.
      const deadline = opts.graceMs === undefined ? undefined : Date.now() + opts.graceMs;
      const left = () => (deadline === undefined ? undefined : Math.max(0, deadline - Date.now()));
      const running = current;
      if (running && !(await finishesWithin(running, left())) && activeClaims.size > 0) {
        const released = await releaseClaims(ctx.pool, [...activeClaims.keys()], ctx.clock.now()).catch((err: unknown) => {
          log.error({ err: toError(err) }, 'shutdown: could not give back the running claims; they expire by themselves');
          return [];
        });
        // The interrupted import sees its claim gone and stays quiet instead of counting a failure.
        activeClaims.clear();
        log.warn({ released, graceMs: opts.graceMs }, 'shutdown: the running import did not finish in time; its upload is pending again');
      }
      // A report being sent finishes (a send has its own deadline) unless the grace runs out: an
      // unfinished one keeps its row locked until the lock lapses, and is sent again then.
      if (delivering && !(await finishesWithin(delivering, left()))) {
        log.info({ graceMs: opts.graceMs }, 'shutdown: a report was still being sent; it is sent again once its lock lapses');
      }
      if (t) log.info('scheduler stopped');
    },
  };
  return scheduler;
}

async function finishesWithin(p: Promise<void>, ms: number | undefined): Promise<boolean> {
  if (ms === undefined) {
    await p;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** node-cron's own messages (missed or overlapping runs) into our log instead of the console. */
function cronLogger(log: Logger) {
  return {
    info: (m: string) => log.debug({ cron: m }, 'node-cron'),
    // Its overlap warning fires on every tick while a long import runs; our own tick already
    // refuses to overlap, so it is not news.
    warn: (m: string) => (/overlap|still running/i.test(m) ? log.debug({ cron: m }, 'node-cron') : log.warn({ cron: m }, 'node-cron')),
    error: (m: string | Error, err?: Error) => log.error({ err: err ?? m }, 'node-cron'),
    debug: (m: string | Error) => log.trace({ cron: String(m) }, 'node-cron'),
  };
}
