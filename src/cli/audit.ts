import type { CliContext } from './context.js';
import { operator } from './commands/import.js';

/**
 * Logs a change an operator made from the command line (a tenant suspended, a key revoked, a
 * school renamed), with who made it, as approve, reject and import run --now are logged: a JSON
 * line on stderr at info (shown with LOG_LEVEL=info, as systemd or a wrapper script keeps it).
 * `fields` are the command's own values, never a key file's content or anything from a roster.
 */
export function logOperatorAction(ctx: CliContext, event: string, fields: Record<string, unknown>, message: string): void {
  ctx.logger.info({ event, by: operator(), ...fields }, message);
}
