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

export function isValidSubdomain(text: string): boolean {
  return SUBDOMAIN.test(text);
}

export function validateSubdomain(subdomain: string): string {
  if (!isValidSubdomain(subdomain)) {
    throw new RosterdError(
      'INVALID_SUBDOMAIN',
      `"${subdomain}" is not a valid subdomain: use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen (e.g. lincoln-usd)`,
    );
  }
  return subdomain;
}

/** Longest display name; it heads every report email. */
export const MAX_TENANT_NAME = 200;
/** threshold_count is a Postgres integer. */
export const MAX_THRESHOLD_COUNT = 2_147_483_647;

/**
 * Validates operator input and returns it normalised (trimmed name, canonical zone name, each
 * administrator email once); throws a usage error naming the bad value. Nothing is written.
 */
export function validateTenantInput(input: TenantInput): TenantInput {
  const out: TenantInput = { ...input };
  if (input.name !== undefined) {
    const name = input.name.trim();
    if (name === '') throw new RosterdError('USAGE', 'the tenant name must not be empty (--name)');
    if (name.length > MAX_TENANT_NAME) {
      throw new RosterdError('USAGE', `the tenant name has ${name.length} characters; use at most ${MAX_TENANT_NAME} (--name)`);
    }
    // The name heads every report: a line break in it would make lines of the email's body.
    if (/\p{Cc}/u.test(name)) {
      throw new RosterdError('USAGE', 'the tenant name holds a line break, tab or other control character; give it on one line (--name)');
    }
    out.name = name;
  }
  if (input.timezone !== undefined) out.timezone = canonicalZone(input.timezone.trim());
  if (input.adminEmails !== undefined) out.adminEmails = normaliseEmails(input.adminEmails);
  if (input.allowDaytime === true && input.window === undefined) {
    throw new RosterdError(
      'INVALID_WINDOW',
      '--allow-daytime only applies with --window: give the daytime window it allows, e.g. --window 09:00-15:00 --allow-daytime',
    );
  }
  if (input.window !== undefined) checkWindowAllowed(parseWindow(input.window), input.allowDaytime ?? false);
  const percent = input.thresholdPercent;
  if (percent !== undefined) {
    if (!(percent >= 0 && percent <= 100)) {
      throw new RosterdError('INVALID_THRESHOLD', `--threshold must be a percentage from 0 to 100, not ${percent}`);
    }
    // threshold_percent is numeric(5,2): refuse what Postgres would round silently.
    if (Number(percent.toFixed(2)) !== percent) {
      throw new RosterdError('INVALID_THRESHOLD', `--threshold takes at most 2 decimal places (e.g. 2.5 or 12.75), not ${percent}`);
    }
  }
  const count = input.thresholdCount;
  if (count !== undefined && count !== null && !(Number.isInteger(count) && count >= 0 && count <= MAX_THRESHOLD_COUNT)) {
    throw new RosterdError(
      'INVALID_THRESHOLD',
      `--threshold-count must be a whole number of users from 0 to ${MAX_THRESHOLD_COUNT}, not ${count}`,
    );
  }
  return out;
}

/**
 * What to use instead of an abbreviation an operator may type. Abbreviations are no IANA zones:
 * Node's ICU reads some as Java's old three-letter IDs, each one region of several it could mean
 * (AST is Alaska there, not Atlantic time; CST is Chicago, yet also China Standard Time), and EST
 * and MST as fixed offsets with no daylight saving time, an hour off all summer for a district in
 * New York or Denver. Where an abbreviation is listed, its entry says what it would have been.
 */
const ABBREVIATION_HINTS: Readonly<Record<string, string>> = {
  EST: 'it is UTC-5 all year, with no daylight saving time; for Eastern time use America/New_York',
  MST: 'it is UTC-7 all year, with no daylight saving time; use America/Denver for Mountain time, or America/Phoenix for Arizona',
  AST: 'it would be read as Alaska time, not Atlantic time; for Puerto Rico or the U.S. Virgin Islands use America/Puerto_Rico',
  SST: 'it would be read as Solomon Islands time, not Samoa time; for American Samoa use Pacific/Pago_Pago',
  NST: 'it would be read as New Zealand time, not Newfoundland time; for Newfoundland use America/St_Johns',
  BST: 'it would be read as Bangladesh time, not British Summer Time; for the UK use Europe/London',
  IST: 'it means India, Ireland or Israel; use Asia/Kolkata, Europe/Dublin or Asia/Jerusalem',
  CST: 'it also means China Standard Time; for Central time use America/Chicago',
};

export const US_ZONE_EXAMPLES =
  'America/New_York (Eastern), America/Chicago (Central), America/Denver (Mountain), America/Phoenix (Arizona), ' +
  'America/Los_Angeles (Pacific), America/Anchorage (Alaska) or Pacific/Honolulu (Hawaii)';

/** Names without a region that are still one time everywhere. */
const UNIVERSAL_ZONES = new Set(['UTC', 'GMT', 'UCT', 'UNIVERSAL', 'ZULU', 'GREENWICH']);

/** Why a zone stored before abbreviations were refused is one (EST, CST…), or undefined. */
export function zoneAbbreviation(zone: string): string | undefined {
  const name = zone.trim();
  if (name.includes('/') || UNIVERSAL_ZONES.has(name.toUpperCase())) return undefined;
  return (
    ABBREVIATION_HINTS[name.toUpperCase()] ?? `an abbreviation is no time zone; use the district's region, such as ${US_ZONE_EXAMPLES}`
  );
}

/**
 * The zone as the operator named it, its letter case fixed where Intl knows the name
 * (america/chicago → America/Chicago, utc → UTC). Intl's own name is not taken otherwise: Node's
 * ICU resolves current IANA names to old aliases (Asia/Kolkata → Asia/Calcutta, Europe/Kyiv →
 * Europe/Kiev), which would store and show a name the operator did not type. A name without a
 * region (EST, CST, EST5EDT) is refused, UTC aside: see ABBREVIATION_HINTS.
 */
function canonicalZone(zone: string): string {
  const abbreviation = zoneAbbreviation(zone);
  if (abbreviation !== undefined) {
    throw new RosterdError('INVALID_TIMEZONE', `"${zone}" is not a region's time zone: ${abbreviation}`);
  }
  if (!isValidZone(zone)) {
    throw new RosterdError(
      'INVALID_TIMEZONE',
      `"${zone}" is not a known IANA time zone: use a name such as America/Chicago or Europe/London`,
    );
  }
  const resolved = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
}

/** Trimmed, each address once (compared ignoring case; the first spelling is kept), all valid. */
function normaliseEmails(emails: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of emails) {
    const e = raw.trim();
    if (!email.safeParse(e).success) {
      throw new RosterdError('INVALID_EMAIL', `"${raw}" is not a valid email address (--admin-email)`);
    }
    if (seen.has(e.toLowerCase())) continue;
    seen.add(e.toLowerCase());
    out.push(e);
  }
  if (out.length === 0) {
    throw new RosterdError('INVALID_EMAIL', 'give at least one --admin-email: the administrator who receives import reports');
  }
  return out;
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
  const valid = validateTenantInput(input);
  const adminEmails = valid.adminEmails ?? input.adminEmails;
  const [start, end] = windowColumns(input.window);
  try {
    const { rows } = await db.query<TenantRow>(
      `INSERT INTO tenants (subdomain, name, timezone, admin_emails, window_start, window_end, allow_daytime,
                            threshold_percent, threshold_count)
       VALUES ($1, $2, COALESCE($3, 'America/New_York'), $4, COALESCE($5, '18:00'), COALESCE($6, '06:00'),
               $7, COALESCE($8::numeric, 10), $9)
       RETURNING *`,
      [
        subdomain,
        valid.name ?? subdomain,
        valid.timezone ?? null,
        adminEmails,
        start,
        end,
        valid.allowDaytime ?? false,
        valid.thresholdPercent ?? null,
        valid.thresholdCount ?? null,
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

/** The tenant named on a command line; a name no tenant can have is a usage error, as in tenant add. */
export async function getTenant(db: Queryable, subdomain: string): Promise<Tenant> {
  const tenant = await findTenant(db, validateSubdomain(subdomain));
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
  const valid = validateTenantInput({ ...input, allowDaytime: input.allowDaytime ?? false });
  const [start, end] = windowColumns(valid.window);
  const { rows } = await db.query<TenantRow>(
    `UPDATE tenants SET
       name = COALESCE($2, name),
       timezone = COALESCE($3, timezone),
       admin_emails = COALESCE($4, admin_emails),
       window_start = COALESCE($5, window_start),
       window_end = COALESCE($6, window_end),
       allow_daytime = COALESCE($7, allow_daytime),
       threshold_percent = COALESCE($8::numeric, threshold_percent),
       threshold_count = CASE WHEN $9::boolean THEN $10::integer ELSE threshold_count END,
       status = COALESCE($11, status),
       updated_at = now()
     WHERE subdomain = $1
     RETURNING *`,
    [
      subdomain,
      valid.name ?? null,
      valid.timezone ?? null,
      valid.adminEmails ?? null,
      start,
      end,
      valid.window === undefined ? null : (valid.allowDaytime ?? false),
      valid.thresholdPercent ?? null,
      valid.thresholdCount !== undefined,
      valid.thresholdCount ?? null,
      input.status ?? null,
    ],
  );
  return toTenant(rows[0] as TenantRow);
}

export async function setTenantStatus(db: Queryable, subdomain: string, status: TenantStatus): Promise<Tenant> {
  return updateTenant(db, subdomain, { status });
}
