import { z } from 'zod';
import { PG, RosterdError, pgCode } from '../errors.js';
import { checkWindowAllowed, formatTimeOfDay, isValidZone, parseWindow } from '../schedule/window.js';
import type { TenantStatus } from '../types.js';
import type { Queryable } from './db.js';

export interface Tenant {
  id: number;
  subdomain: string;
  name: string;
  timezone: string;
  adminEmails: string[];
  window: string; // 'HH:MM-HH:MM'
  windowStart: string;
  windowEnd: string;
  allowDaytime: boolean;
  thresholdPercent: number;
  thresholdCount: number | null;
  status: TenantStatus;
  createdAt: Date;
  updatedAt: Date;
}

/** What an operator may set on `tenant add` / `tenant update`; absent fields keep their value. */
export interface TenantInput {
  name?: string;
  timezone?: string;
  adminEmails?: string[];
  window?: string;
  allowDaytime?: boolean;
  thresholdPercent?: number;
  thresholdCount?: number | null;
}

const SUBDOMAIN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const email = z.email();

export function validateSubdomain(subdomain: string): string {
  if (!SUBDOMAIN.test(subdomain)) {
    throw new RosterdError(
      'INVALID_SUBDOMAIN',
      `"${subdomain}" is not a valid subdomain: use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen (e.g. lincoln-usd)`,
    );
  }
  return subdomain;
}

/** Validates operator input; throws a usage error naming the bad value. Nothing is written. */
export function validateTenantInput(input: TenantInput): TenantInput {
  if (input.name !== undefined && input.name.trim() === '') {
    throw new RosterdError('USAGE', 'the tenant name must not be empty');
  }
  if (input.timezone !== undefined && !isValidZone(input.timezone)) {
    throw new RosterdError(
      'INVALID_TIMEZONE',
      `"${input.timezone}" is not a known IANA time zone: use a name such as America/Chicago or Europe/London`,
    );
  }
  if (input.adminEmails !== undefined) {
    if (input.adminEmails.length === 0) {
      throw new RosterdError('INVALID_EMAIL', 'give at least one --admin-email: the administrator who receives import reports');
    }
    for (const e of input.adminEmails) {
      if (!email.safeParse(e).success) {
        throw new RosterdError('INVALID_EMAIL', `"${e}" is not a valid email address (--admin-email)`);
      }
    }
  }
  if (input.window !== undefined) checkWindowAllowed(parseWindow(input.window), input.allowDaytime ?? false);
  if (input.thresholdPercent !== undefined && !(input.thresholdPercent >= 0 && input.thresholdPercent <= 100)) {
    throw new RosterdError('INVALID_THRESHOLD', `--threshold must be a percentage from 0 to 100, not ${input.thresholdPercent}`);
  }
  if (
    input.thresholdCount !== undefined &&
    input.thresholdCount !== null &&
    !(Number.isInteger(input.thresholdCount) && input.thresholdCount >= 0)
  ) {
    throw new RosterdError(
      'INVALID_THRESHOLD',
      `--threshold-count must be a whole number of users (0 or more), not ${input.thresholdCount}`,
    );
  }
  return input;
}

interface TenantRow {
  id: number;
  subdomain: string;
  name: string;
  timezone: string;
  admin_emails: string[];
  window_start: string;
  window_end: string;
  allow_daytime: boolean;
  threshold_percent: string;
  threshold_count: number | null;
  status: TenantStatus;
  created_at: Date;
  updated_at: Date;
}

function toTenant(r: TenantRow): Tenant {
  return {
    id: r.id,
    subdomain: r.subdomain,
    name: r.name,
    timezone: r.timezone,
    adminEmails: r.admin_emails,
    window: `${r.window_start}-${r.window_end}`,
    windowStart: r.window_start,
    windowEnd: r.window_end,
    allowDaytime: r.allow_daytime,
    thresholdPercent: Number(r.threshold_percent),
    thresholdCount: r.threshold_count,
    status: r.status,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function windowColumns(window: string | undefined): [string | null, string | null] {
  if (window === undefined) return [null, null];
  const w = parseWindow(window);
  return [formatTimeOfDay(w.start), formatTimeOfDay(w.end)];
}

export async function createTenant(db: Queryable, subdomain: string, input: TenantInput & { adminEmails: string[] }): Promise<Tenant> {
  validateSubdomain(subdomain);
  validateTenantInput(input);
  const [start, end] = windowColumns(input.window);
  try {
    const { rows } = await db.query<TenantRow>(
      `INSERT INTO tenants (subdomain, name, timezone, admin_emails, window_start, window_end, allow_daytime,
                            threshold_percent, threshold_count)
       VALUES ($1, $2, COALESCE($3, 'America/New_York'), $4, COALESCE($5, '18:00'), COALESCE($6, '06:00'),
               $7, COALESCE($8, 10), $9)
       RETURNING *`,
      [
        subdomain,
        input.name ?? subdomain,
        input.timezone ?? null,
        input.adminEmails,
        start,
        end,
        input.allowDaytime ?? false,
        input.thresholdPercent ?? null,
        input.thresholdCount ?? null,
      ],
    );
    return toTenant(rows[0] as TenantRow);
  } catch (err) {
    if (pgCode(err) === PG.UNIQUE_VIOLATION) {
      throw new RosterdError(
        'TENANT_EXISTS',
        `a tenant "${subdomain}" already exists; use "rosterd tenant update ${subdomain}" to change it`,
      );
    }
    throw err;
  }
}

export async function findTenant(db: Queryable, subdomain: string): Promise<Tenant | undefined> {
  const { rows } = await db.query<TenantRow>('SELECT * FROM tenants WHERE subdomain = $1', [subdomain]);
  return rows[0] ? toTenant(rows[0]) : undefined;
}

export async function getTenant(db: Queryable, subdomain: string): Promise<Tenant> {
  const tenant = await findTenant(db, subdomain);
  if (!tenant) {
    throw new RosterdError('TENANT_NOT_FOUND', `no tenant "${subdomain}"; "rosterd tenant list" shows the registered ones`);
  }
  return tenant;
}

export async function listTenants(db: Queryable): Promise<Tenant[]> {
  const { rows } = await db.query<TenantRow>('SELECT * FROM tenants ORDER BY subdomain');
  return rows.map(toTenant);
}

export async function updateTenant(db: Queryable, subdomain: string, input: TenantInput & { status?: TenantStatus }): Promise<Tenant> {
  await getTenant(db, subdomain);
  // A daytime window must be forced each time it is set; the flag is not sticky.
  validateTenantInput({ ...input, allowDaytime: input.allowDaytime ?? false });
  const [start, end] = windowColumns(input.window);
  const { rows } = await db.query<TenantRow>(
    `UPDATE tenants SET
       name = COALESCE($2, name),
       timezone = COALESCE($3, timezone),
       admin_emails = COALESCE($4, admin_emails),
       window_start = COALESCE($5, window_start),
       window_end = COALESCE($6, window_end),
       allow_daytime = COALESCE($7, allow_daytime),
       threshold_percent = COALESCE($8, threshold_percent),
       threshold_count = CASE WHEN $9::boolean THEN $10::integer ELSE threshold_count END,
       status = COALESCE($11, status),
       updated_at = now()
     WHERE subdomain = $1
     RETURNING *`,
    [
      subdomain,
      input.name ?? null,
      input.timezone ?? null,
      input.adminEmails ?? null,
      start,
      end,
      input.window === undefined ? null : (input.allowDaytime ?? false),
      input.thresholdPercent ?? null,
      input.thresholdCount !== undefined,
      input.thresholdCount ?? null,
      input.status ?? null,
    ],
  );
  return toTenant(rows[0] as TenantRow);
}

export async function setTenantStatus(db: Queryable, subdomain: string, status: TenantStatus): Promise<Tenant> {
  return updateTenant(db, subdomain, { status });
}
