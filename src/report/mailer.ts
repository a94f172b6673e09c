/**
 * Where report emails go: the SMTP server of SMTP_URL, or, without it, `.eml` files in
 * DATA_DIR/outbox (PRODUCT.md §6). Either way one call hands over one message.
 */
import { createHash } from 'node:crypto';
import { mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Config } from '../config/config.js';
import { isImportId } from '../import/records.js';
import type { MailMessage } from './types.js';

export interface Delivered {
  deliveredAs: string;
  /** recipients the server refused, with its reply; the others have the message */
  refused: Array<{ address: string; reply: string }>;
}

export interface Mailer {
  /** 'smtp' or 'eml', for logs and doctor */
  readonly kind: 'smtp' | 'eml';
  /**
   * Hand one message over. `outboxId` makes its Message-ID stable, so a message sent again after
   * a crash (between the server's acceptance and our record of it) is recognisably the same one.
   * Resolves with how it was delivered (the server's answer, or the file written) and the
   * recipients the server refused while it accepted others (it throws when it accepts none).
   */
  send(message: MailMessage, outboxId: number): Promise<Delivered>;
  close(): void;
}

/** An error that means the mail server is unreachable, not that this message is at fault. */
export function isConnectionError(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  return ['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ECONNREFUSED', 'EGREETING', 'ETLS'].includes(code);
}

/**
 * The server refused the message for its size: SMTP 552 (RFC 1870's reply to a message over the
 * SIZE limit), or the enhanced codes 5.3.4 (message too big for system) or 5.2.3 (message length
 * exceeds administrative limit) with any reply code. Not 552 5.2.2 (mailbox full), and not a
 * refusal of a recipient (RCPT TO), which says nothing of this message's size.
 */
export function isTooLarge(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { responseCode?: unknown; response?: unknown; command?: unknown };
  if (e.command === 'RCPT TO') return false;
  const enhanced = /\b([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(typeof e.response === 'string' ? e.response : '');
  if (enhanced) return enhanced[1] === '5' && ['3.4', '2.3'].includes(`${enhanced[2]}.${enhanced[3]}`);
  return e.responseCode === 552;
}

/** The server's reply in a mailer error (code and text), or the error's message. */
export function serverReply(err: unknown): string {
  const response = typeof err === 'object' && err !== null ? (err as { response?: unknown }).response : undefined;
  return typeof response === 'string' && response !== '' ? response : err instanceof Error ? err.message : String(err);
}

/**
 * The longest one message may take to hand over, whatever the server does (a reply a byte a
 * minute) and whatever timeouts SMTP_URL's query sets (nodemailer lets them override ours): less
 * than the lock a sender holds on it (delivery.ts LOCK_MS), so no other replica ever sends a
 * message that is still being sent.
 */
export const SEND_DEADLINE_MS = 4 * 60_000;

export function createMailer(config: Pick<Config, 'SMTP_URL' | 'DATA_DIR'>, opts: { sendDeadlineMs?: number } = {}): Mailer {
  return config.SMTP_URL ? smtpMailer(config.SMTP_URL, opts.sendDeadlineMs ?? SEND_DEADLINE_MS) : emlMailer(outboxDir(config.DATA_DIR));
}

/** Where reports go as `.eml` files without SMTP_URL. */
export function outboxDir(dataDir: string): string {
  return path.join(dataDir, 'outbox');
}

/** A file the `.eml` mailer writes: a report, or `.NAME.eml.tmp` while (or if a crash stopped) writing it. */
export function isOutboxFile(name: string): boolean {
  return name.endsWith('.eml') || name.endsWith('.eml.tmp');
}

/**
 * The Message-ID of one outbox row: the same on every attempt (a resend is recognisably the same
 * message), and unique across installations: outbox ids start at 1 in every database and MAIL_FROM's
 * domain is often localhost, and a mailbox that has seen a Message-ID drops the next message with
 * it (Gmail does). So it also holds the import's id (a random UUID, in the X-Rosterd-Import header
 * of every report), or, for a message without one, a hash of its content. Not the recipients: a
 * message partly refused is retried with only the refused ones (delivery.ts).
 */
export function reportMessageId(message: MailMessage, outboxId: number): string {
  const domain = /@([^>\s]+)>?\s*$/.exec(message.from)?.[1] ?? 'rosterd.invalid';
  const importId = message.headers['X-Rosterd-Import'];
  const unique =
    importId !== undefined && isImportId(importId)
      ? importId.toLowerCase()
      : createHash('sha256')
          .update(JSON.stringify([message.from, message.subject, message.text]))
          .digest('hex')
          .slice(0, 32);
  return `<rosterd-report-${outboxId}.${unique}@${domain}>`;
}

function smtpMailer(url: string, deadlineMs: number): Mailer {
  const transport = nodemailer.createTransport({
    url,
    // Shorter than nodemailer's defaults (2 min, 10 min): a hung server must not hold the
    // message's lock past its expiry (see delivery.ts).
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 60_000,
  });
  return {
    kind: 'smtp',
    async send(message, outboxId) {
      const deadline = AbortSignal.timeout(deadlineMs);
      const info = await transport
        .sendMail({ ...message, messageId: reportMessageId(message, outboxId), signal: deadline })
        .catch((err: unknown) => {
          if (!deadline.aborted) throw err;
          throw Object.assign(new Error(`the mail server did not take the report within ${deadlineMs / 1000} s; it will be tried again`), {
            code: 'ETIMEDOUT',
          });
        });
      // nodemailer resolves when the server takes the message for at least one recipient and
      // lists the ones it refused (RCPT TO answered 4xx/5xx) on the side.
      const replies = new Map((info.rejectedErrors ?? []).map((e) => [String(e.recipient), e.response ?? e.message]));
      const refused = (info.rejected ?? []).map((r) => ({ address: String(r), reply: replies.get(String(r)) ?? 'refused' }));
      return { deliveredAs: `${info.messageId} ${info.response}`.trim(), refused };
    },
    close: () => transport.close(),
  };
}

function emlMailer(dir: string): Mailer {
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  return {
    kind: 'eml',
    async send(message, outboxId) {
      const info = await transport.sendMail({ ...message, messageId: reportMessageId(message, outboxId) });
      const raw = info.message;
      if (!Buffer.isBuffer(raw)) throw new Error('the .eml transport returned no message');
      // Reports name students: readable by the daemon's user only, like the rest of DATA_DIR.
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const tenant = (message.headers['X-Rosterd-Tenant'] ?? 'report').replace(/[^a-z0-9-]/g, '');
      // One name per outbox row: writing it again after a crash replaces it, never duplicates it.
      const name = `${String(outboxId).padStart(8, '0')}-${tenant}.eml`;
      const tmp = path.join(dir, `.${name}.tmp`);
      try {
        await writeFile(tmp, raw, { mode: 0o600 });
        await rename(tmp, path.join(dir, name));
      } catch (err) {
        // A write cut short by a full disk would keep the disk full for every upload until retried.
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
      return { deliveredAs: name, refused: [] };
    },
    close: () => transport.close(),
  };
}
