/**
 * Glossary
 * - tenant: a school district, identified by its subdomain (`lincoln-usd`). It owns SSH keys,
 *   schools, an SFTP jail folder and a roster of users.
 * - upload: one file (`users.csv` or `groups.csv`) received over SFTP and kept as an immutable
 *   copy. An upload row is also the record of its import.
 * - import: applying one upload to the tenant's roster, in one transaction.
 * - hold: an import that would deactivate more users than the tenant's threshold is not applied
 *   but held until an operator approves or rejects it.
 * - window: the tenant-local time range (`18:00-06:00` by default) in which imports may run.
 */
import type { Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/** Time is passed in so that windows, settling and retries are testable without waiting. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type TenantStatus = 'active' | 'suspended';

export type UploadStatus =
  'pending' | 'running' | 'succeeded' | 'completed_with_errors' | 'failed' | 'held' | 'rejected' | 'superseded' | 'validated';

/** What a password cell shows wherever a row's values are shown (report, JSON, error CSV). */
export const PASSWORD_MASK = '******';

export const ACCEPTED_FILE_NAMES = ['users.csv', 'groups.csv'] as const;
export type AcceptedFileName = (typeof ACCEPTED_FILE_NAMES)[number];

export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value)}`);
}
