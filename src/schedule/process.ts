/**
 * One pass over the pending uploads (PRODUCT.md §5): for each active tenant whose night window is
 * open (or every tenant with `now`), import its settled pending uploads, newest users.csv first
 * (older pending ones superseded; a held one too, once that newest one is read and is a whole
 * roster), then groups.csv (unless a users.csv is held), each claimed so that it is imported
 * exactly once across replicas, and queue the report in the outcome's transaction. An attempt that ends
 * without an outcome (crash, lost connection) is retried; after IMPORT_MAX_ATTEMPTS it fails and
 * is reported. Logs one line per decision.
 */
import os from 'node:os';
import type pg from 'pg';
import { RosterdError, toError } from '../errors.js';
import type { ImportHook } from '../import/engine-types.js';
import { getImportRecord, type ImportRecord } from '../import/records.js';
import { runImport, type ImportContext, type SupersededHeld } from '../import/run-import.js';
import { enqueueImportReport } from '../report/import-report.js';
import { validateSubdomain } from '../store/tenants.js';
import type { Logger } from '../types.js';
import {
  claimNext,
  ClaimLostError,
  endAttempts,
  extendClaim,
  fenceClaim,
  releaseClaims,
  runningClaims,
  takeBackLapsedClaims,
  type Claim,
  type Lapse,
  type TenantRef,
} from './claims.js';
import { isInsideWindow, nextWindowStart, windowFromParts } from './window.js';

export interface ScheduleContext extends ImportContext {
  /** who claims, shown to operators (default host:pid) */
  claimedBy?: string;
  /** internal: fault injection for tests, passed to runImport */
  importHook?: ImportHook;
  /** claims this process holds right now (token → upload id), so shutdown can give them back */
  activeClaims?: Map<string, string>;
  /** told of every recorded outcome (metrics); must not throw */
  onImported?: (record: ImportRecord) => void;
}

export interface ProcessOptions {
  /** only this tenant (its subdomain) */
  tenant?: string;
  /** ignore the window and settling: an operator's `import run --now` */
  now?: boolean;
  /** stop before the next upload once aborted (shutdown); the running one finishes, unless interruptRunning */
  signal?: AbortSignal;
  /**
   * Once `signal` aborts, interrupt the running import too: it rolls back whole and its upload is
   * given back, pending again and not counted as a failed attempt (Ctrl-C on `import run`).
   */
  interruptRunning?: boolean;
  /** the operator who asked; with `now`, recorded on each import it runs, as an operator's action */
  requestedBy?: string;
}

export interface ProcessedUpload {
  id: string;
  tenant: string;
  file: string;
  status: string;
  /** why an attempt ended without an outcome (retried, failed) */
  reason?: string;
}

/** How a skip for a suspended tenant begins (`import run` exits 1 for one it was asked for). */
const SUSPENDED_SKIP = 'the tenant is suspended;';
export const isSuspendedSkip = (skip: { reason: string }): boolean => skip.reason.startsWith(SUSPENDED_SKIP);

export interface ProcessSummary {
  imported: ProcessedUpload[];
  superseded: ProcessedUpload[];
  /** attempts that ended without an outcome and will be retried */
  retried: ProcessedUpload[];
  /** uploads that failed after IMPORT_MAX_ATTEMPTS attempts */
  failed: ProcessedUpload[];
  /** tenants with pending uploads outside their window: when it opens */
  waiting: Array<{ tenant: string; timezone: string; pending: number; opensAt: Date }>;
  /** tenants whose groups.csv waits for a held users.csv to be approved or rejected */
  onHold: Array<{ tenant: string; pending: number; heldId: string }>;
  /** tenants whose uploads are still settling: when they will be taken */
  settling: Array<{ tenant: string; timezone: string; pending: number; until: Date }>;
  /** tenants that could not be processed (e.g. the database was unreachable) */
  errors: Array<{ tenant: string; message: string }>;
  /** tenants passed over: suspended (when named), or another process deciding for the tenant */
  skipped: Array<{ tenant: string; reason: string }>;
  /** uploads being imported by another process (or by one on a vanished host, whose claim has not expired yet) */
  running: Array<{ tenant: string; id: string; file: string; claimedBy: string | null; claimExpiresAt: Date | null }>;
  /** imports interrupted (interruptRunning): rolled back, their uploads pending again */
  interrupted: ProcessedUpload[];
}

export const defaultClaimant = (): string => `${os.hostname()}:${process.pid}`;

export async function processPending(ctx: ScheduleContext, opts: ProcessOptions = {}): Promise<ProcessSummary> {
  // A name no tenant can have is the operator's typo: a usage error, as everywhere a tenant is named.
  if (opts.tenant !== undefined) validateSubdomain(opts.tenant);
  const summary: ProcessSummary = {
    imported: [],
    superseded: [],
    retried: [],
    failed: [],
    waiting: [],
    onHold: [],
    settling: [],
    errors: [],
    skipped: [],
    running: [],
    interrupted: [],
  };
  await takeBackClaimsOfTheGone(ctx, summary);
  const tenants = await loadTenants(ctx.pool, opts.tenant, ctx.logger, summary);
  if (opts.now) {
    // PRODUCT §5: an operator's action, logged as such (on stderr for the CLI, where cron and
    // systemd keep it); each import it runs records it too (uploads.requested_by).
    ctx.logger.warn(
      { tenant: opts.tenant ?? 'all', by: opts.requestedBy },
      'import run --now: importing pending uploads whatever the window, by operator request',
    );
  }
  for (const tenant of tenants) {
    if (opts.signal?.aborted) break;
    try {
      await processTenant(ctx, tenant, opts, summary);
    } catch (caught) {
      // One tenant's trouble (or a lost database) does not stop the others; a later tick retries.
      const err = toError(caught);
      summary.errors.push({ tenant: tenant.subdomain, message: err.message });
      ctx.logger.error({ err, tenant: tenant.subdomain }, "could not process the tenant's pending uploads");
    }
  }
  return summary;
}

async function loadTenants(pool: pg.Pool, subdomain: string | undefined, logger: Logger, summary: ProcessSummary): Promise<TenantRef[]> {
  const { rows } = await pool.query<TenantRef & { status: string }>(
    `SELECT id, subdomain, timezone, window_start AS "windowStart", window_end AS "windowEnd", status
       FROM tenants WHERE ($1::text IS NULL OR subdomain = $1) ORDER BY subdomain`,
    [subdomain ?? null],
  );
  if (subdomain !== undefined && rows.length === 0) {
    throw new RosterdError('TENANT_NOT_FOUND', `no tenant "${subdomain}"; "rosterd tenant list" shows the registered ones`);
  }
  for (const t of rows) {
    if (t.status === 'active' || subdomain === undefined) continue;
    logger.warn({ tenant: t.subdomain }, 'tenant is suspended: nothing imported');
    summary.skipped.push({
      tenant: t.subdomain,
      reason: `${SUSPENDED_SKIP} "rosterd tenant resume ${t.subdomain}" lets its uploads be imported`,
    });
  }
  return rows.filter((t) => t.status === 'active');
}

async function processTenant(ctx: ScheduleContext, tenant: TenantRef, opts: ProcessOptions, summary: ProcessSummary): Promise<void> {
  const log = ctx.logger.child({ tenant: tenant.subdomain });
  const window = windowFromParts(tenant.windowStart, tenant.windowEnd);
  while (!opts.signal?.aborted) {
    const now = ctx.clock.now();
    const step = await claimNext(ctx.pool, {
      tenantId: tenant.id,
      now,
      claimedBy: ctx.claimedBy ?? defaultClaimant(),
      ...(opts.now && opts.requestedBy !== undefined ? { requestedBy: opts.requestedBy } : {}),
      settleMs: opts.now ? 0 : ctx.config.SETTLE_SECONDS * 1000,
      ttlMs: ctx.config.CLAIM_TTL_SECONDS * 1000,
      gate: () => opts.now === true || isInsideWindow(window, tenant.timezone, now),
    });
    switch (step.kind) {
      case 'nothing':
        // The upload an operator asks about may be the one another process imports; the
        // scheduler's ticks do not pay a query per idle tenant to say so to nobody.
        if (opts.requestedBy !== undefined) await noteRunning(ctx, tenant, summary);
        return;
      case 'busy':
        // Another process holds the tenant (an import running, or its own decision): it carries on
        // with the rest. A running import is always said (who holds it, until when); the other
        // case only when asked for this tenant, where silence would mislead.
        // The scheduler's ticks, told nobody, skip the query (as in 'nothing' above).
        if (!(opts.requestedBy !== undefined && (await noteRunning(ctx, tenant, summary))) && opts.tenant !== undefined) {
          summary.skipped.push({
            tenant: tenant.subdomain,
            reason: 'another process is deciding what this tenant imports next (and imports it); run this again in a moment to see',
          });
        }
        return;
      case 'closed': {
        const opensAt = nextWindowStart(window, tenant.timezone, now);
        summary.waiting.push({ tenant: tenant.subdomain, timezone: tenant.timezone, pending: step.pending.length, opensAt });
        log.info(
          {
            event: 'import.waiting_for_window',
            pending: step.pending.map((p) => ({ id: p.id, file: p.fileName })),
            window: `${tenant.windowStart}-${tenant.windowEnd}`,
            timezone: tenant.timezone,
            opensAt: opensAt.toISOString(),
          },
          'waiting for window',
        );
        return;
      }
      case 'on_hold':
        summary.onHold.push({ tenant: tenant.subdomain, pending: step.pending.length, heldId: step.heldId });
        log.info(
          { event: 'import.waiting_for_hold', pending: step.pending.map((p) => ({ id: p.id, file: p.fileName })), heldId: step.heldId },
          'groups.csv waits until the held users.csv is approved or rejected',
        );
        return;
      case 'settling':
        summary.settling.push({ tenant: tenant.subdomain, timezone: tenant.timezone, pending: step.pending.length, until: step.until });
        log.info(
          { event: 'import.settling', pending: step.pending.length, until: step.until.toISOString() },
          'waiting for uploads to settle',
        );
        return;
      case 'claimed':
        try {
          for (const s of step.superseded) await noteSuperseded(ctx, tenant, summary, log, { ...s, wasHeld: false });
          // After an attempt without an outcome, the tenant waits for the next tick (no retry storm).
          if (!(await importClaimed(ctx, tenant, step.claim, summary, log, opts))) return;
        } finally {
          // Only now has the claim ended (importClaimed recorded it, or gave it back): let go of its lock.
          await step.claim.lock.release();
        }
        break;
    }
  }
}

/** Imports one claimed upload. False when the attempt ended without an outcome. */
async function importClaimed(
  ctx: ScheduleContext,
  tenant: TenantRef,
  claim: Claim,
  summary: ProcessSummary,
  tenantLog: Logger,
  opts: ProcessOptions,
): Promise<boolean> {
  const log = tenantLog.child({ uploadId: claim.uploadId, file: claim.fileName });
  const ref = { id: claim.uploadId, tenant: tenant.subdomain, file: claim.fileName };
  const stopHeartbeat = heartbeat(ctx, claim, log);
  ctx.activeClaims?.set(claim.token, claim.uploadId);
  // Interrupted, the claim is given back first: the import can then no longer record an outcome,
  // and the failure it ends with is not counted as an attempt.
  const interrupt = opts.interruptRunning ? opts.signal : undefined;
  let givenBack: Promise<boolean> | undefined;
  const giveBack = () => {
    givenBack ??= releaseClaims(ctx.pool, [claim.token], ctx.clock.now(), INTERRUPTED_BY_OPERATOR).then(
      (ids) => ids.length > 0,
      (err: unknown) => {
        log.warn({ err: toError(err) }, 'interrupted: could not give the claim back');
        return false;
      },
    );
  };
  if (interrupt?.aborted) giveBack();
  else interrupt?.addEventListener('abort', giveBack, { once: true });
  try {
    let supersededHeld: SupersededHeld[] = [];
    const record = await runImport(ctx, claim.uploadId, {
      onOutcome: async (client, rec) => {
        await fenceClaim(client, claim.uploadId, claim.token);
        await enqueueImportReport(client, rec, { from: ctx.config.MAIL_FROM, now: ctx.clock.now() });
      },
      onSupersededHeld: (held) => (supersededHeld = held),
      ...(ctx.importHook ? { at: ctx.importHook } : {}),
      ...(interrupt ? { signal: interrupt } : {}),
    });
    for (const s of supersededHeld) {
      await noteSuperseded(ctx, tenant, summary, tenantLog, { ...s, by: claim.uploadId, wasHeld: true });
    }
    summary.imported.push({ ...ref, status: record.status });
    ctx.onImported?.(record);
    const fields = {
      event: record.status === 'held' ? 'import.held' : 'import.outcome',
      status: record.status,
      counts: record.counts,
      durationMs: record.durationMs,
    };
    if (record.status === 'held') log.warn({ ...fields, reason: record.message }, 'held');
    else if (record.status === 'failed') log.warn({ ...fields, reason: record.message }, 'import failed: file rejected');
    else log.info(fields, 'imported');
    return true;
  } catch (caught) {
    if (givenBack !== undefined && (await givenBack)) {
      summary.interrupted.push({ ...ref, status: 'pending' });
      log.warn({ event: 'import.interrupted' }, 'import interrupted by the operator; nothing was kept and the upload is pending again');
    } else if (caught instanceof ClaimLostError) {
      log.warn({ err: caught }, 'claim lost: another process took this upload back; nothing from this attempt was kept');
    } else if (ctx.activeClaims !== undefined && !ctx.activeClaims.has(claim.token)) {
      // Shutdown gave the claim back: not a failed attempt, and the database may already be closing.
      log.info({ event: 'import.interrupted' }, 'import interrupted by shutdown; nothing was kept and the upload is pending again');
    } else {
      await endAttempt(ctx, claim, toError(caught), summary, ref, log);
    }
    return false;
  } finally {
    interrupt?.removeEventListener('abort', giveBack);
    stopHeartbeat();
    ctx.activeClaims?.delete(claim.token);
  }
}

/** Notes an upload a newer one superseded: a pending one (at the claim), or a held one (by the import of a whole roster). */
async function noteSuperseded(
  ctx: ScheduleContext,
  tenant: TenantRef,
  summary: ProcessSummary,
  log: Logger,
  s: { id: string; fileName: string; receivedAt: Date; by: string; wasHeld: boolean },
): Promise<void> {
  summary.superseded.push({ id: s.id, tenant: tenant.subdomain, file: s.fileName, status: 'superseded' });
  await noteOutcome(ctx, s.id);
  const fields = { event: 'import.superseded', uploadId: s.id, supersededBy: s.by, receivedAt: s.receivedAt.toISOString() };
  if (s.wasHeld) log.warn({ ...fields, wasHeld: true }, `held import superseded by a newer ${s.fileName}: it can no longer be approved`);
  else log.info(fields, 'superseded');
}

/** What `import show` says of an upload whose import the operator interrupted. */
const INTERRUPTED_BY_OPERATOR = 'interrupted by the operator (Ctrl-C on import run); imported at the next run';

/** Notes the tenant's uploads another process is importing. False when there is none. */
async function noteRunning(ctx: ScheduleContext, tenant: TenantRef, summary: ProcessSummary): Promise<boolean> {
  const running = await runningClaims(ctx.pool, tenant.id);
  for (const r of running) {
    summary.running.push({
      tenant: tenant.subdomain,
      id: r.uploadId,
      file: r.fileName,
      claimedBy: r.claimedBy,
      claimExpiresAt: r.expiresAt,
    });
  }
  return running.length > 0;
}

/**
 * Extends the claim every third of its lifetime while the import runs. It does so on the
 * connection that holds the claim's lock, which it thus keeps from idling out (idle_session_timeout)
 * and finds lost if it was.
 */
function heartbeat(ctx: ScheduleContext, claim: Claim, log: Logger): () => void {
  const ttlMs = ctx.config.CLAIM_TTL_SECONDS * 1000;
  claim.lock.onLost(() =>
    log.warn(
      { event: 'import.claim_lock_lost' },
      "the connection holding the claim's lock closed: another process takes the upload back at its next tick, and this attempt then rolls back",
    ),
  );
  const timer = setInterval(() => {
    if (ctx.activeClaims !== undefined && !ctx.activeClaims.has(claim.token)) return; // given back at shutdown
    extendClaim(claim.lock.client, claim.uploadId, claim.token, new Date(ctx.clock.now().getTime() + ttlMs)).catch((err: unknown) =>
      log.warn({ err: toError(err) }, 'could not extend the claim; it lapses if this goes on'),
    );
  }, ttlMs / 3);
  timer.unref();
  return () => clearInterval(timer);
}

async function endAttempt(
  ctx: ScheduleContext,
  claim: Claim,
  err: Error,
  summary: ProcessSummary,
  ref: { id: string; tenant: string; file: string },
  log: Logger,
): Promise<void> {
  try {
    const [ended] = await endAttempts(
      ctx.pool,
      {
        token: claim.token,
        uploadId: claim.uploadId,
        now: ctx.clock.now(),
        maxAttempts: ctx.config.IMPORT_MAX_ATTEMPTS,
        error: err.message,
      },
      (client, e) => reportFailed(ctx, client, e.uploadId),
    );
    if (!ended) {
      log.warn({ event: 'import.retried', err }, 'import attempt failed and its claim was already taken back');
    } else if (ended.status === 'failed') {
      summary.failed.push({ ...ref, status: 'failed', reason: err.message });
      await noteOutcome(ctx, ended.uploadId);
      log.error(
        { event: 'import.outcome', status: 'failed', err, attempts: ended.attempts },
        `import failed after ${ended.attempts} attempts; reported`,
      );
    } else {
      summary.retried.push({ ...ref, status: 'pending', reason: err.message });
      log.warn(
        { event: 'import.retried', err, attempts: ended.attempts, maxAttempts: ctx.config.IMPORT_MAX_ATTEMPTS },
        'import attempt failed; retried on a later tick',
      );
    }
  } catch (recordErr) {
    // The database is gone too: the claim lapses (its lock goes with its connection, or its
    // expiry comes) and a later tick, of this process or another, takes the upload back.
    summary.retried.push({ ...ref, status: 'running' });
    log.error(
      { err, recordErr: toError(recordErr), claimExpiresAt: claim.expiresAt.toISOString() },
      'import attempt failed and could not be recorded; a later tick takes the upload back',
    );
  }
}

/** What the log (and the upload's line in import run) says of a claim taken back, by why it lapsed. */
const TAKEN_BACK: Readonly<Record<Lapse, string>> = {
  expired: 'expired claim taken back',
  holder_gone: 'claim of a stopped importer taken back',
};

/**
 * An attempt of another process, found ended (takeBackClaimsOfTheGone) at the start of a pass,
 * whatever tenant the pass is for: not one this pass made.
 */
export const isTakenBack = (u: ProcessedUpload): boolean => Object.values(TAKEN_BACK).includes(u.reason ?? '');

/**
 * Takes back uploads whose importer died (its claim's lock is free: at once; or its claim
 * expired): a failed attempt each.
 */
async function takeBackClaimsOfTheGone(ctx: ScheduleContext, summary: ProcessSummary): Promise<void> {
  const ended = await takeBackLapsedClaims(ctx.pool, { now: ctx.clock.now(), maxAttempts: ctx.config.IMPORT_MAX_ATTEMPTS }, (client, e) =>
    reportFailed(ctx, client, e.uploadId),
  );
  for (const e of ended) {
    const record = await getImportRecord(ctx.pool, e.uploadId);
    if (record && e.status === 'failed') ctx.onImported?.(record);
    const ref = { id: e.uploadId, tenant: record?.tenant ?? '', file: record?.file ?? '', status: e.status, reason: TAKEN_BACK[e.lapsed] };
    (e.status === 'failed' ? summary.failed : summary.retried).push(ref);
    ctx.logger.warn(
      {
        event: 'import.claim_taken_back',
        uploadId: e.uploadId,
        tenant: ref.tenant,
        attempts: e.attempts,
        status: e.status,
        lapsed: e.lapsed,
        claimedBy: e.claimedBy,
      },
      TAKEN_BACK[e.lapsed],
    );
  }
}

async function reportFailed(ctx: ScheduleContext, client: pg.PoolClient, uploadId: string): Promise<void> {
  const record = await getImportRecord(client, uploadId);
  if (record) await enqueueImportReport(client, record, { from: ctx.config.MAIL_FROM, now: ctx.clock.now() });
}

/**
 * Tells onImported (metrics) of an outcome reached without an import of its own: an upload
 * superseded, or failed after its attempts. A metrics problem must never stop the scheduler.
 */
async function noteOutcome(ctx: ScheduleContext, uploadId: string): Promise<void> {
  if (!ctx.onImported) return;
  try {
    const record = await getImportRecord(ctx.pool, uploadId);
    if (record) ctx.onImported(record);
  } catch (err) {
    ctx.logger.debug({ err: toError(err), uploadId }, 'could not read an outcome for the metrics');
  }
}
