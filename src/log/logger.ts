import { pino, type DestinationStream } from 'pino';
import type { Logger } from '../types.js';

/**
 * Paths that must never reach a log line. Roster rows and passwords are never logged on purpose;
 * these rules are the safety net for an object logged by mistake.
 */
const REDACT = [
  'password',
  '*.password',
  'passwordHash',
  '*.passwordHash',
  'privateKey',
  '*.privateKey',
  'row',
  '*.row',
  'rows',
  // A Postgres error's detail and where can quote a row: "Key (tenant_id, lower(username))=(4, ann01)".
  'err.detail',
  'err.where',
  'err.cause.detail',
  'err.cause.where',
  'config.DATABASE_URL',
  'config.SMTP_URL',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'rosterd' },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
