import { DateTime } from 'luxon';
import type { ImportRecord } from '../import/records.js';
import { deliveryStatuses, type DeliveryStatus } from '../report/outbox.js';
import type { Queryable } from '../store/db.js';
import { listTenants, type Tenant } from '../store/tenants.js';
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

/**
 * `heldUsersId`: the tenant's held users.csv, if it has one; a pending groups.csv waits for it
 * to be approved or rejected (claims.ts).
 */
export function scheduleView(
  record: Pick<ImportRecord, 'status' | 'file'>,
  tenant: Tenant,
  now: Date,
  heldUsersId: string | null = null,
): ScheduleView {
  const status = windowStatus(windowFromParts(tenant.windowStart, tenant.windowEnd), tenant.timezone, now);
  const base = { window: tenant.window, timezone: tenant.timezone, tenantStatus: tenant.status, windowOpen: status.open };
  if (record.status !== 'pending') return { ...base, nextRunAt: null, note: null };
  if (tenant.status === 'suspended') {
    return { ...base, nextRunAt: null, note: `tenant is suspended: nothing is imported until "rosterd tenant resume ${tenant.subdomain}"` };
  }
  if (heldUsersId !== null && record.file !== 'users.csv') {
    return {
      ...base,
      nextRunAt: null,
      note: `waiting until the held users.csv is decided: "rosterd import approve ${heldUsersId}" or "rosterd import reject ${heldUsersId}"`,
    };
  }
  if (status.open) {
    return {
      ...base,
      nextRunAt: iso(now, tenant.timezone),
      note: 'window open: imported at the next scheduler tick once the upload has settled',
    };
  }
  const opens = iso(status.opensAt, tenant.timezone);
  return { ...base, nextRunAt: opens, note: `waiting for the window (${tenant.window} ${tenant.timezone}), which opens ${opens}` };
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
export async function withOperatorView(db: Queryable, records: ImportRecord[], now: Date): Promise<ImportView[]> {
  const tenants = new Map((await listTenants(db)).map((t) => [t.subdomain, t]));
  const deliveries = await deliveryStatuses(
    db,
    records.map((r) => r.id),
  );
  const held = records.some((r) => r.status === 'pending') ? await heldUsersFiles(db) : new Map<string, string>();
  return records.flatMap((r) => {
    const tenant = tenants.get(r.tenant);
    if (!tenant) return [];
    const schedule = scheduleView(r, tenant, now, held.get(r.tenant) ?? null);
    return [{ ...r, schedule, report: reportView(deliveries.get(r.id), tenant.timezone) }];
  });
}

/** Each tenant's newest held users.csv (subdomain → import ID). */
async function heldUsersFiles(db: Queryable): Promise<Map<string, string>> {
  const { rows } = await db.query<{ subdomain: string; id: string }>(
    `SELECT DISTINCT ON (t.subdomain) t.subdomain, u.id FROM uploads u JOIN tenants t ON t.id = u.tenant_id
      WHERE u.status = 'held' AND u.file_name = 'users.csv' ORDER BY t.subdomain, u.arrival DESC`,
  );
  return new Map(rows.map((r) => [r.subdomain, r.id]));
}
