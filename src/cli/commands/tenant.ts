import type { Command } from 'commander';
import { RosterdError } from '../../errors.js';
import {
  MAX_THRESHOLD_COUNT,
  createTenant,
  getTenant,
  listTenants,
  setTenantStatus,
  updateTenant,
  type Tenant,
  type TenantInput,
} from '../../store/tenants.js';
import { firstTickInWindow, LOOKAHEAD_NIGHTS, withNextTick } from '../../schedule/next-tick.js';
import { windowFromParts } from '../../schedule/window.js';
import { systemClock } from '../../types.js';
import { logOperatorAction } from '../audit.js';
import { decimalOption, intOption, leaf, table, type CliContext, type Output } from '../context.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function tenantJson(t: Tenant) {
  return {
    subdomain: t.subdomain,
    name: t.name,
    timezone: t.timezone,
    adminEmails: t.adminEmails,
    window: t.window,
    allowDaytime: t.allowDaytime,
    thresholdPercent: t.thresholdPercent,
    thresholdCount: t.thresholdCount,
    status: t.status,
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
  };
}

function describe(t: Tenant): string {
  return [
    `tenant     ${t.subdomain} (${t.name})`,
    `status     ${t.status}`,
    `admins     ${t.adminEmails.join(', ')}`,
    `time zone  ${t.timezone}`,
    `window     ${t.window}${t.allowDaytime ? ' (daytime allowed by operator)' : ''}`,
    `threshold  ${t.thresholdPercent}% of active users${t.thresholdCount === null ? '' : ` or ${t.thresholdCount} users`}`,
  ].join('\n');
}

function inputFrom(opts: Record<string, unknown>): TenantInput {
  const input: TenantInput = {};
  if (typeof opts.name === 'string') input.name = opts.name;
  if (typeof opts.timezone === 'string') input.timezone = opts.timezone;
  if (Array.isArray(opts.adminEmail)) input.adminEmails = opts.adminEmail.map(String);
  if (typeof opts.window === 'string') input.window = opts.window;
  if (opts.allowDaytime === true) input.allowDaytime = true;
  // threshold_percent is numeric(5,2) (migration 001): two decimal places at most.
  const percent = decimalOption(opts.threshold, '--threshold', 2);
  if (percent !== undefined) input.thresholdPercent = percent;
  if (opts.thresholdCount === 'none') input.thresholdCount = null;
  else {
    const count = intOption(
      opts.thresholdCount,
      '--threshold-count',
      0,
      MAX_THRESHOLD_COUNT,
      '"none" for no limit on the count (only --threshold holds an import)',
    );
    if (count !== undefined) input.thresholdCount = count;
  }
  return input;
}

function withTenantOptions(cmd: Command, adding: boolean): Command {
  return cmd
    .option('--admin-email <email>', `administrator who receives reports (repeatable${adding ? '' : '; replaces the list'})`, collect)
    .option('--name <name>', 'display name')
    .option('--timezone <zone>', `IANA time zone${adding ? ' (default America/New_York)' : ''}`)
    .option('--window <HH:MM-HH:MM>', `import window in the tenant's time${adding ? ' (default 18:00-06:00)' : ''}`)
    .option('--allow-daytime', 'accept a window outside 18:00-06:00')
    .option(
      '--threshold <percent>',
      `hold an import that deactivates more than this % of active users, or a groups.csv that removes more than this % of memberships${adding ? ' (default 10)' : ''}`,
    )
    .option(
      '--threshold-count <n>',
      `also hold above this many deactivations (${adding ? '"none": no such limit, the default' : '"none" removes it'})`,
    );
}

const UPDATE_OPTIONS = '--admin-email, --name, --timezone, --window (with --allow-daytime), --threshold, --threshold-count';

const one = (t: Tenant, verb: string): Output => ({ json: tenantJson(t), text: `${verb} ${t.subdomain}\n${describe(t)}` });

/**
 * tenant add and update: the tenant, and a warning when SCHEDULE_CRON (as configured for this
 * command) never fires while its window is open, so its uploads would wait for ever. A window
 * narrower than the cron's step (02:01-02:04 under every 5 minutes) was accepted in silence; only
 * doctor, or import list once a file waited, said so. A warning, not a refusal: the daemon may run
 * with another SCHEDULE_CRON than this shell.
 */
async function changed(ctx: CliContext, t: Tenant, verb: string): Promise<Output> {
  const cron = ctx.config.SCHEDULE_CRON;
  const never =
    t.status === 'active' &&
    (await withNextTick(cron, (next) =>
      firstTickInWindow(next, windowFromParts(t.windowStart, t.windowEnd), t.timezone, systemClock.now()),
    )) === null;
  const warning = never
    ? `SCHEDULE_CRON "${cron}" (as configured here) does not fire while the window ${t.window} ${t.timezone} is open, ` +
      `in the next ${LOOKAHEAD_NIGHTS} nights: its uploads would not be imported. Widen the window ` +
      `(rosterd tenant update ${t.subdomain} --window HH:MM-HH:MM) or make rosterd serve's SCHEDULE_CRON fire inside it`
    : null;
  const out = one(t, verb);
  return { json: { ...tenantJson(t), scheduleWarning: warning }, text: warning === null ? out.text : `${out.text}\nwarning: ${warning}` };
}

export function registerTenantCommands(program: Command): void {
  const tenant = program.command('tenant').description('register and manage tenants (school districts)');

  leaf(withTenantOptions(tenant.command('add <subdomain>').description('register a tenant'), true), async (ctx, [subdomain], opts) => {
    const input = inputFrom(opts);
    if (!input.adminEmails) {
      throw new RosterdError('USAGE', 'give at least one --admin-email: the administrator who receives import reports');
    }
    const t = await createTenant(ctx.pool, subdomain ?? '', { ...input, adminEmails: input.adminEmails });
    logOperatorAction(ctx, 'tenant.added', { tenant: t.subdomain }, 'tenant added');
    return changed(ctx, t, 'added');
  });

  leaf(tenant.command('list').description('list tenants'), async (ctx) => {
    const tenants = await listTenants(ctx.pool);
    return {
      json: tenants.map(tenantJson),
      text:
        tenants.length === 0
          ? 'no tenants yet; add one with: rosterd tenant add SUBDOMAIN --admin-email EMAIL'
          : table(
              ['SUBDOMAIN', 'NAME', 'STATUS', 'TIME ZONE', 'WINDOW', 'ADMINS'],
              tenants.map((t) => [t.subdomain, t.name, t.status, t.timezone, t.window, t.adminEmails.join(',')]),
            ),
    };
  });

  leaf(tenant.command('show <subdomain>').description('show one tenant'), async (ctx, [subdomain]) => {
    const t = await getTenant(ctx.pool, subdomain ?? '');
    return { json: tenantJson(t), text: describe(t) };
  });

  leaf(withTenantOptions(tenant.command('update <subdomain>').description('change a tenant'), false), async (ctx, [subdomain], opts) => {
    const input = inputFrom(opts);
    if (Object.keys(input).length === 0) {
      throw new RosterdError(
        'USAGE',
        `nothing to change: give at least one of ${UPDATE_OPTIONS}, e.g. rosterd tenant update ${subdomain ?? 'SUBDOMAIN'} --threshold 15`,
      );
    }
    const t = await updateTenant(ctx.pool, subdomain ?? '', input);
    logOperatorAction(ctx, 'tenant.updated', { tenant: t.subdomain, changed: Object.keys(input) }, 'tenant updated');
    return changed(ctx, t, 'updated');
  });

  leaf(tenant.command('suspend <subdomain>').description("refuse the tenant's logins and imports"), async (ctx, [subdomain]) => {
    const t = await setTenantStatus(ctx.pool, subdomain ?? '', 'suspended');
    logOperatorAction(ctx, 'tenant.suspended', { tenant: t.subdomain }, 'tenant suspended');
    return one(t, 'suspended');
  });

  leaf(tenant.command('resume <subdomain>').description('make a suspended tenant active again'), async (ctx, [subdomain]) => {
    const t = await setTenantStatus(ctx.pool, subdomain ?? '', 'active');
    logOperatorAction(ctx, 'tenant.resumed', { tenant: t.subdomain }, 'tenant resumed');
    return one(t, 'resumed');
  });
}
