/**
 * Sends what the outbox holds (PRODUCT.md §6). Each due message is locked by one sender for a
 * while (FOR UPDATE SKIP LOCKED), so replicas never send it twice; sent, it is marked so; refused
 * or unreachable, it is retried with exponential backoff until the server accepts it. Refused as
 * too large, it is sent again at once without its attachments, and so on every retry after.
 *
 * Exactly once has one gap no mail protocol closes: a process that dies after the server accepted
 * a message and before recording it sends it again when its lock lapses. The message keeps its
 * Message-ID, so the second copy is recognisably the same.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { toError } from '../errors.js';
import type { Clock, Logger } from '../types.js';
import { isConnectionError, isTooLarge, serverReply, type Mailer } from './mailer.js';
import type { MailMessage } from './types.js';
import { withoutAttachments } from './without-attachments.js';

export interface DeliveryContext {
  pool: pg.Pool;
  logger: Logger;
  clock: Clock;
}

export interface DeliveryOptions {
  /** most messages sent in one call */
  limit?: number;
  /** no further message is begun once aborted (the one being sent is finished or fails on its own) */
  signal?: AbortSignal;
}

/** How long a sender holds a message: longer than the mailer takes at most (SEND_DEADLINE_MS). */
export const LOCK_MS = 5 * 60_000;
const FIRST_RETRY_MS = 30_000;
const MAX_RETRY_MS = 60 * 60_000;
/**
 * Unsent for this long, each failed attempt is logged as an error, not a warning: a district has
 * gone a night without its report, which an operator alerts on. It is still retried, every hour,
 * until the server accepts it (PRODUCT.md §6): giving up would lose the report.
 */
export const OVERDUE_MS = 24 * 60 * 60_000;

/** Delay before attempt n+1 after n failed attempts: 30 s, 1 min, 2 min, … at most 1 h. */
export function retryDelayMs(failedAttempts: number): number {
  return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, failedAttempts - 1));
}

/**
 * A message as the outbox keeps it: who already has it, after a partly refused delivery; and the
 * server's reply when it refused the message as too large, after which it goes without its
 * attachments (without-attachments.ts).
 */
type StoredMessage = MailMessage & { deliveredTo?: string[]; tooLarge?: string };

interface Claimed {
  id: number;
  upload_id: string | null;
  message: StoredMessage;
  attempts: number;
  created_at: Date;
  /** the tenant's administrators now (null for a message that is no import's report) */
  admin_emails: string[] | null;
}

export interface DeliveryResult {
  sent: number;
  failed: number;
}

/** Send the messages that are due now. Returns what happened; never throws for a mail problem. */
export async function deliverDue(ctx: DeliveryContext, mailer: Mailer, opts: DeliveryOptions = {}): Promise<DeliveryResult> {
  const limit = opts.limit ?? 50;
  const result: DeliveryResult = { sent: 0, failed: 0 };
  while (result.sent + result.failed < limit && opts.signal?.aborted !== true) {
    const sender = `${os.hostname()}:${process.pid}:${randomUUID()}`;
    const found = await claimNext(ctx, sender);
    if (!found) break;
    const claimed = withCurrentRecipients(found);
    const log = ctx.logger.child({ outboxId: claimed.id, uploadId: claimed.upload_id });
    if (claimed.message.to.length === 0) {
      // Every administrator there is now has it already (the ones it was refused for were removed).
      await markSent(
        ctx,
        claimed,
        sender,
        claimed.message.deliveredTo?.length ? 'already delivered to every administrator' : 'no administrator',
      );
      result.sent++;
      continue;
    }
    const outcome = await sendClaimed(ctx, mailer, claimed, sender, log);
    if (outcome === 'sent') result.sent++;
    else result.failed++;
    // An unreachable server fails every message alike: leave the rest for the next tick.
    if (outcome === 'unreachable') break;
  }
  return result;
}

/** Sends one claimed message and records what became of it. */
async function sendClaimed(
  ctx: DeliveryContext,
  mailer: Mailer,
  claimed: Claimed,
  sender: string,
  log: Logger,
): Promise<'sent' | 'failed' | 'unreachable'> {
  const { deliveredTo: _kept, tooLarge, ...message } = claimed.message;
  const outgoing = tooLarge === undefined ? message : withoutAttachments(message, tooLarge, claimed.upload_id);
  try {
    const { deliveredAs, refused } = await mailer.send(outgoing, claimed.id);
    if (refused.length > 0) {
      await recordRefused(ctx, claimed, sender, deliveredAs, refused, log);
      return 'failed';
    }
    await markSent(ctx, claimed, sender, deliveredAs);
    log.info(
      {
        event: 'report.delivered',
        to: claimed.message.to,
        via: mailer.kind,
        deliveredAs,
        attempts: claimed.attempts,
        ...(tooLarge === undefined ? {} : { withoutAttachments: true }),
      },
      'report sent',
    );
    return 'sent';
  } catch (caught) {
    if (isTooLarge(caught) && tooLarge === undefined && message.attachments.length > 0) {
      // Refused for its size, with its attachments: sent again at once without them. Retrying it
      // as it is would be refused for ever, and the administrators would never hear of the import.
      const reply = serverReply(caught);
      log.warn(
        { event: 'report.too_large', reply, attachments: message.attachments.map((a) => a.filename) },
        'the mail server refused the report as too large; sending it again without its attachments',
      );
      const smaller = { ...claimed, message: { ...claimed.message, tooLarge: reply } };
      if (await rememberTooLarge(ctx, smaller, sender, reply, log)) return sendClaimed(ctx, mailer, smaller, sender, log);
      // The lock lapsed during the refused send and another sender may have the message now, or
      // the database failed: no second send under this lock; the next attempt sends it again.
      await recordFailure(ctx, claimed, sender, toError(caught), log);
      return 'failed';
    }
    const err = toError(caught);
    if (tooLarge !== undefined && isTooLarge(caught)) {
      // Even the body alone is too large for this server: no smaller report to send. It stays
      // queued (a report is never given up, PRODUCT.md §6) until the server takes it.
      await recordFailure(
        ctx,
        claimed,
        sender,
        new Error(
          `the mail server refuses this report as too large, also without its attachments (${serverReply(caught)}; ` +
            `with them: ${tooLarge}); raise its message size limit: the report is retried until it is accepted`,
          { cause: caught },
        ),
        log,
        'report.too_large',
      );
      return 'failed';
    }
    await recordFailure(ctx, claimed, sender, err, log);
    return isConnectionError(caught) ? 'unreachable' : 'failed';
  }
}

/**
 * Keeps the too-large refusal on the queued message, so that its retries go without attachments,
 * and renews the lock for the smaller send. False when the message is no longer this sender's.
 */
async function rememberTooLarge(ctx: DeliveryContext, claimed: Claimed, sender: string, reply: string, log: Logger): Promise<boolean> {
  try {
    const { rowCount } = await ctx.pool.query(
      // The smaller send gets a lock of its own length: another sender must not take the message
      // while this one still sends it (the first attempt may have used most of the lock).
      `UPDATE outbox SET message = jsonb_set(message, '{tooLarge}', to_jsonb($3::text)),
                         locked_until = $4::timestamptz + make_interval(secs => $5)
        WHERE id = $1 AND locked_by = $2`,
      [claimed.id, sender, reply.slice(0, 2000), ctx.clock.now(), LOCK_MS / 1000],
    );
    return (rowCount ?? 0) > 0;
  } catch (dbErr) {
    // A retry then tries it with its attachments first again, and is told the same.
    log.error({ err: toError(dbErr) }, 'could not record that the mail server refused a report as too large');
    return false;
  }
}

async function markSent(ctx: DeliveryContext, claimed: Claimed, sender: string, deliveredAs: string): Promise<void> {
  await ctx.pool.query(
    `UPDATE outbox SET status = 'sent', sent_at = $3, delivered_as = $4, last_error = NULL, locked_by = NULL, locked_until = NULL
     WHERE id = $1 AND locked_by = $2`,
    [claimed.id, sender, ctx.clock.now(), deliveredAs],
  );
}

async function claimNext(ctx: DeliveryContext, sender: string): Promise<Claimed | undefined> {
  const now = ctx.clock.now();
  const { rows } = await ctx.pool.query<Claimed>(
    `WITH claimed AS (
       UPDATE outbox SET locked_by = $2, locked_until = $1::timestamptz + make_interval(secs => $3), attempts = attempts + 1
        WHERE id = (
          SELECT id FROM outbox
          WHERE status = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)
          ORDER BY next_attempt_at, id
          LIMIT 1
          FOR UPDATE SKIP LOCKED)
        RETURNING id, upload_id, message, attempts, created_at)
     SELECT c.*, t.admin_emails
       FROM claimed c LEFT JOIN uploads u ON u.id = c.upload_id LEFT JOIN tenants t ON t.id = u.tenant_id`,
    [now, sender, LOCK_MS / 1000],
  );
  return rows[0];
}

/**
 * A report goes to the tenant's administrators as they are when it is sent, not as they were
 * when it was queued: an operator who replaces an address after a bounce expects the retry to
 * reach the new one, and a removed one must no longer get student data. Those who already have
 * it (a partly refused delivery) are left out.
 */
function withCurrentRecipients(claimed: Claimed): Claimed {
  if (claimed.admin_emails === null || claimed.admin_emails.length === 0) return claimed;
  const has = new Set((claimed.message.deliveredTo ?? []).map((a) => a.toLowerCase()));
  const to = claimed.admin_emails.filter((a) => !has.has(a.toLowerCase()));
  return { ...claimed, message: { ...claimed.message, to } };
}

/**
 * The server took the message for some recipients and refused others (a full mailbox, greylisting,
 * an address that no longer exists). Those who have it are not sent it again: the message stays
 * queued for the refused ones only, retried like any failure, and the log names them.
 */
async function recordRefused(
  ctx: DeliveryContext,
  claimed: Claimed,
  sender: string,
  deliveredAs: string,
  refused: Array<{ address: string; reply: string }>,
  log: Logger,
): Promise<void> {
  const to = refused.map((r) => r.address); // the envelope addresses the server was given: message.to's
  const remaining = new Set(to.map((address) => address.toLowerCase()));
  const delivered = claimed.message.to.filter((address) => !remaining.has(address.toLowerCase()));
  const deliveredTo = [...(claimed.message.deliveredTo ?? []), ...delivered];
  log.info({ event: 'report.delivered', to: delivered, via: 'smtp', deliveredAs, attempts: claimed.attempts }, 'report sent');
  try {
    await ctx.pool.query(
      `UPDATE outbox SET message = jsonb_set(jsonb_set(message, '{to}', $3::jsonb), '{deliveredTo}', $5::jsonb), delivered_as = $4
        WHERE id = $1 AND locked_by = $2`,
      [claimed.id, sender, JSON.stringify(to), deliveredAs, JSON.stringify(deliveredTo)],
    );
  } catch (dbErr) {
    // Left as it was, the message goes again to all of its recipients when its lock lapses.
    log.error({ err: toError(dbErr) }, 'could not record a partly refused report delivery');
    return;
  }
  const reason = refused.map((r) => `${r.address}: ${r.reply}`).join('; ');
  const rest = { ...claimed, message: { ...claimed.message, to } };
  await recordFailure(ctx, rest, sender, new Error(`the mail server refused ${reason}`), log);
}

/**
 * Keeps the message queued for its next attempt, with the error as last_error (`import show`).
 * `alarm`: a refusal that no retry will change until an operator steps in, logged as an error
 * with this event from the first attempt, rather than a warning until it is overdue.
 */
async function recordFailure(
  ctx: DeliveryContext,
  claimed: Claimed,
  sender: string,
  err: Error,
  log: Logger,
  alarm?: 'report.too_large',
): Promise<void> {
  const now = ctx.clock.now();
  const unsentMs = now.getTime() - claimed.created_at.getTime();
  const next = new Date(now.getTime() + retryDelayMs(claimed.attempts));
  const fields = { err, to: claimed.message.to, attempts: claimed.attempts, nextAttemptAt: next.toISOString() };
  if (alarm !== undefined && unsentMs < OVERDUE_MS) {
    log.error({ event: alarm, ...fields }, 'report not sent: the mail server refuses it as too large; retrying until it accepts it');
  } else if (unsentMs >= OVERDUE_MS) {
    const hours = Math.floor(unsentMs / 3600_000);
    log.error(
      { event: 'report.overdue', ...fields, unsentHours: hours },
      `report not sent for ${hours} hours; retrying every hour until the mail server accepts it (check SMTP_URL and the tenant's admin emails)`,
    );
  } else {
    log.warn({ event: 'report.retried', ...fields }, 'report not sent; will retry');
  }
  try {
    await ctx.pool.query(
      `UPDATE outbox SET last_error = $3, next_attempt_at = $4, locked_by = NULL, locked_until = NULL
       WHERE id = $1 AND locked_by = $2`,
      [claimed.id, sender, err.message.slice(0, 2000), next],
    );
  } catch (dbErr) {
    // The lock lapses by itself and the message is retried then.
    log.error({ err: toError(dbErr) }, 'could not record a failed report delivery');
  }
}
