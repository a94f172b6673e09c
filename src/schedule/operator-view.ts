import { DateTime } from 'luxon';
import type { ImportRecord } from '../import/records.js';
import { deliveryStatuses, type DeliveryStatus } from '../report/outbox.js';
import type { Queryable } from '../store/db.js';
import { listTenants, type Tenant } from '../store/tenants.js';
import { firstTickInWindow, LOOKAHEAD_NIGHTS, type NextTick } from './next-tick.js';
import { windowFromParts, windowStatus } from './window.js';

/**
 * What an operator needs next to an import to answer "why wasn't our file imported last
 * night?": the tenant's window and whether it is open, when the upload will next be looked at,
 * and what became of the report email.
 */
export interface ScheduleView {
  window: string;
  timezone: string;
  tenantStatus: Tenant['status'];
  windowOpen: boolean;
  /** pending uploads only: when the scheduler will take it (ISO with the tenant's offset) */
  nextRunAt: string | null;
  /** a short sentence for people */
  note: string | null;
}

export interface ReportView {
  status: DeliveryStatus['status'];
  to: string[];
  attempts: number;
  sentAt: string | null;
  nextAttemptAt: string | null;
  lastError: string | null;
}

export type ImportView = ImportRecord & { schedule: ScheduleView; report: ReportView | null };

const iso = (d: Date | null, zone: string) =>
  d ? DateTime.fromJSDate(d).setZone(zone).startOf('second').toISO({ suppressMilliseconds: true }) : null;

/** What the scheduler runs on: SCHEDULE_CRON's next fire, and SETTLE_SECONDS. */
export interface SchedulerTiming {
  nextTick: NextTick;
  settleMs: number;
}

export interface TenantQueue {
  /** the tenant's held users.csv, if it has one; a pending groups.csv waits for it (claims.ts) */
  heldUsersId: string | null;
  /** when the tenant's newest pending upload arrived: the scheduler waits until it has settled */
  newestPendingAt: Date | null;
}

export function scheduleView(
  record: Pick<ImportRecord, 'status' | 'file'>,
  tenant: Tenant,
  now: Date,
  timing: SchedulerTiming,
  queue: TenantQueue = { heldUsersId: null, newestPendingAt: null },
): ScheduleView {
  const window = windowFromParts(tenant.windowStart, tenant.windowEnd);
  const status = windowStatus(window, tenant.timezone, now);
  const base = { window: tenant.window, timezone: tenant.timezone, tenantStatus: tenant.status, windowOpen: status.open };
  if (record.status !== 'pending') return { ...base, nextRunAt: null, note: null };
  if (tenant.status === 'suspended') {
    return { ...base, nextRunAt: null, note: `tenant is suspended: nothing is imported until "rosterd tenant resume ${tenant.subdomain}"` };
  }
  const { heldUsersId, newestPendingAt } = queue;
  if (heldUsersId !== null && record.file !== 'users.csv') {
    return {
      ...base,
      nextRunAt: null,
      note: `waiting until the held users.csv is decided: "rosterd import approve ${heldUsersId}" or "rosterd import reject ${heldUsersId}"`,
    };
  }
  // The first tick that finds the window open and the tenant's uploads settled (claims.ts decides
  // the same way at each tick).
  const settledAt = newestPendingAt === null ? now : new Date(Math.max(now.getTime(), newestPendingAt.getTime() + timing.settleMs));
  const run = firstTickInWindow(timing.nextTick, window, tenant.timezone, settledAt);
  const settling = settledAt > now ? `, once nothing new has arrived for ${Math.round(timing.settleMs / 1000)} s` : '';
  if (run === null) {
    return {
      ...base,
      nextRunAt: null,
      note:
        `SCHEDULE_CRON does not fire while the window (${tenant.window} ${tenant.timezone}) is open in the next ${LOOKAHEAD_NIGHTS} nights, so nothing is imported: ` +
        `change SCHEDULE_CRON or the window, or run "rosterd import run --now --tenant ${tenant.subdomain}"`,
    };
  }
  const nextRunAt = iso(run, tenant.timezone);
  if (status.open) return { ...base, nextRunAt, note: `window open: imported at the scheduler's next tick${settling}` };
  const opens = iso(status.opensAt, tenant.timezone);
  return { ...base, nextRunAt, note: `waiting for the window (${tenant.window} ${tenant.timezone}), which opens ${opens}` };
}

function reportView(deliveries: DeliveryStatus[] | undefined, zone: string): ReportView | null {
  const last = deliveries?.[deliveries.length - 1];
  if (!last) return null;
  return {
    status: last.status,
    to: last.to,
    attempts: last.attempts,
    sentAt: iso(last.sentAt, zone),
    nextAttemptAt: iso(last.nextAttemptAt, zone),
    lastError: last.lastError,
  };
}

/** Adds the schedule and report views to import records (one query for tenants, one for reports). */
export async function withOperatorView(db: Queryable, records: ImportRecord[], now: Date, timing: SchedulerTiming): Promise<ImportView[]> {
  const tenants = new Map((await listTenants(db)).map((t) => [t.subdomain, t]));
  const deliveries = await deliveryStatuses(
    db,
    records.map((r) => r.id),
  );
  const queues = records.some((r) => r.status === 'pending') ? await tenantQueues(db) : new Map<string, TenantQueue>();
  return records.flatMap((r) => {
    const tenant = tenants.get(r.tenant);
    if (!tenant) return [];
    const schedule = scheduleView(r, tenant, now, timing, queues.get(r.tenant));
    return [{ ...r, schedule, report: reportView(deliveries.get(r.id), tenant.timezone) }];
  });
}

/** Each tenant's newest held users.csv and newest pending arrival, for tenants with either. */
async function tenantQueues(db: Queryable): Promise<Map<string, TenantQueue>> {
  const { rows } = await db.query<{ subdomain: string; held: string | null; newest: Date | null }>(
    `SELECT t.subdomain,
            (SELECT u.id FROM uploads u WHERE u.tenant_id = t.id AND u.status = 'held' AND u.file_name = 'users.csv'
              ORDER BY u.arrival DESC LIMIT 1) AS held,
            (SELECT max(u.received_at) FROM uploads u WHERE u.tenant_id = t.id AND u.status = 'pending') AS newest
       FROM tenants t`,
  );
  return new Map(rows.map((r) => [r.subdomain, { heldUsersId: r.held, newestPendingAt: r.newest }]));
}
