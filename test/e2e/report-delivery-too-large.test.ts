/**
 * A report the mail server refuses as too large (552 5.3.4, from a real SMTP server with a size
 * limit, as smtp-server enforces it). Retried as it was, it was refused for ever and the district
 * never heard of its import. It is sent again at once without its attachments, the body saying
 * why and where the lists are; refused even so, it stays queued (PRODUCT.md §6: a report is
 * retried until the server accepts it; the outbox has no failed status), the server's reply in
 * last_error (`import show`) and an error in the log, and its retries go without attachments.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import type { ImportIssue } from '../../src/import/types.js';
import { emptyCounts } from '../../src/import/types.js';
import { createLogger } from '../../src/log/logger.js';
import { deliverDue, LOCK_MS, retryDelayMs } from '../../src/report/delivery.js';
import { createMailer, isTooLarge, type Mailer } from '../../src/report/mailer.js';
import { deliveryStatus, enqueueReport } from '../../src/report/outbox.js';
import { renderReport } from '../../src/report/render.js';
import type { MailMessage } from '../../src/report/types.js';
import { withTransaction } from '../../src/store/db.js';
import { createTenant } from '../../src/store/tenants.js';
import { insertUpload } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startTestSmtp, type TestSmtp } from '../support/smtp.js';

const LIMIT = 100_000;
let db: TestDatabase;
let smtp: TestSmtp;
let current = new Date('2026-11-22T03:00:00Z');
const clock = { now: () => current };
type LogLine = Record<string, unknown> & { level?: string; event?: string };
const logs: LogLine[] = [];
const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
const ctx = () => ({ pool: db.pool, logger, clock });
let n = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  smtp = await startTestSmtp({ maxBytes: LIMIT });
  await createTenant(db.pool, 'big-usd', { timezone: 'America/Chicago', adminEmails: ['it@big-usd.example'] });
});
afterAll(async () => {
  await smtp?.close();
  await db?.drop();
});
beforeEach(() => {
  smtp.received.length = 0;
  smtp.dataBytes.length = 0;
  logs.length = 0;
});

/** Queues the report of an import with 3,000 errors: its attachment is about 300 KB, its body a few. */
async function queueBigReport(): Promise<{ id: number; uploadId: string; message: MailMessage }> {
  n++;
  const upload = await insertUpload(db.pool, {
    tenantSubdomain: 'big-usd',
    fileName: 'users.csv',
    bytes: 500_000,
    sha256: n.toString(16).padStart(64, '0'),
    storedPath: `uploads/big-usd/${n}.csv`,
    keyFingerprint: null,
    remoteAddress: '127.0.0.1',
    receivedAt: new Date(current.getTime() - 3_600_000),
  });
  const errors: ImportIssue[] = Array.from({ length: 3000 }, (_, i) => ({
    line: i + 2,
    column: 'email',
    value: `student${i}@not an address`,
    message: 'Email address is not valid. Check the address in your student information system and export the file again.',
  }));
  const message = renderReport({
    from: 'rosterd <rosterd@rosterd.example>',
    tenant: { subdomain: 'big-usd', name: 'Big USD', timezone: 'America/Chicago', adminEmails: ['it@big-usd.example'] },
    import: {
      id: upload.id,
      file: 'users.csv',
      sha256: upload.sha256,
      bytes: upload.bytes,
      receivedAt: upload.receivedAt,
      status: 'completed_with_errors',
      mode: 'full',
      counts: { ...emptyCounts(), rows: 4000, created: 1000, errors: errors.length },
      errors,
      warnings: [],
      durationMs: 900,
    },
  });
  const id = await withTransaction(db.pool, (client) => enqueueReport(client, message, { uploadId: upload.id, now: clock.now() }));
  return { id, uploadId: upload.id, message };
}

it('a report refused as too large (552) is sent again at once without its attachments, the body saying why', async () => {
  const q = await queueBigReport();
  const attachment = q.message.attachments[0]?.filename ?? '';
  expect(q.message.attachments.reduce((sum, a) => sum + a.content.length, 0)).toBeGreaterThan(LIMIT);
  const mailer = createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
  try {
    expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 1, failed: 0 });
  } finally {
    mailer.close();
  }
  expect(smtp.received).toHaveLength(1);
  const mail = smtp.received[0]!.parsed;
  expect(mail.attachments).toEqual([]);
  expect(mail.subject).toBe(q.message.subject);
  const note =
    `This report comes without its attachments (${attachment}): the mail server refused the email with them as too large ` +
    `("552 Error: message exceeds fixed maximum message size ${LIMIT}"). Everything they hold was kept: your rosterd operator can ` +
    `list them with "rosterd import show ${q.uploadId}".`;
  expect(mail.text?.slice(0, note.length + 2)).toBe(`${note}\n\n`);
  expect(mail.text).toContain(`${attachment} (left out of this email: see the note at the top)`);
  expect(mail.text).not.toContain(`${attachment} (attached)`);
  expect(mail.html).toContain('rosterd import show ' + q.uploadId);
  const [status] = await deliveryStatus(db.pool, q.uploadId);
  expect(status).toMatchObject({ status: 'sent', attempts: 1, lastError: null });
  expect(logs.filter((l) => l.event === 'report.too_large')).toEqual([
    expect.objectContaining({ level: 'warn', reply: expect.stringMatching(/^552 /) as unknown }),
  ]);
  expect(logs.filter((l) => l.event === 'report.delivered')).toEqual([expect.objectContaining({ withoutAttachments: true })]);
});

it('refused even without attachments: kept queued with the reply for the operator, retried without attachments until accepted', async () => {
  const q = await queueBigReport();
  const mailer = () => createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
  await smtp.stop();
  smtp.maxBytes = 2_000; // smaller than the body alone
  await smtp.start();
  const first = mailer();
  try {
    expect(await deliverDue(ctx(), first)).toEqual({ sent: 0, failed: 1 });
  } finally {
    first.close();
  }
  expect(smtp.received).toEqual([]);
  const [waiting] = await deliveryStatus(db.pool, q.uploadId);
  expect(waiting).toMatchObject({ status: 'pending', attempts: 1, sentAt: null });
  expect(waiting?.lastError).toMatch(
    /^the mail server refuses this report as too large, also without its attachments \(552 Error: message exceeds fixed maximum message size 2000; with them: 552 .*\); raise its message size limit/,
  );
  expect(logs.filter((l) => l.event === 'report.too_large').map((l) => l.level)).toEqual(['warn', 'error']);
  const tries = smtp.dataBytes.length;

  // The server's limit raised enough for the body: the next retry goes without attachments, at once accepted.
  await smtp.stop();
  smtp.maxBytes = LIMIT;
  await smtp.start();
  current = new Date(current.getTime() + retryDelayMs(1));
  const second = mailer();
  try {
    expect(await deliverDue(ctx(), second)).toEqual({ sent: 1, failed: 0 });
  } finally {
    second.close();
  }
  expect(smtp.dataBytes.length - tries, 'one message sent: the smaller one, not the full one first').toBe(1);
  expect(smtp.received).toHaveLength(1);
  expect(smtp.received[0]?.parsed.attachments).toEqual([]);
  expect(await deliveryStatus(db.pool, q.uploadId)).toEqual([expect.objectContaining({ status: 'sent', attempts: 2, lastError: null })]);
});

it('the smaller send gets a lock of its own, and is not made at all once another sender has taken the message', async () => {
  const real = createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
  /** The real mailer, whose refused (first) send takes 4 of the lock's 5 minutes; `during` runs in it. */
  const slowRefusal = (during: (outboxId: number) => Promise<void>): Mailer & { locks: Date[] } => {
    const locks: Date[] = [];
    let calls = 0;
    return {
      kind: 'smtp',
      locks,
      async send(message, outboxId) {
        if (++calls === 1) {
          current = new Date(current.getTime() + 4 * 60_000);
          await during(outboxId);
        } else {
          const { rows } = await db.pool.query<{ locked_until: Date }>('SELECT locked_until FROM outbox WHERE id = $1', [outboxId]);
          locks.push(rows[0]!.locked_until);
        }
        return real.send(message, outboxId);
      },
      close: () => undefined,
    };
  };
  try {
    await queueBigReport();
    const renewed = slowRefusal(async () => undefined);
    expect(await deliverDue(ctx(), renewed)).toEqual({ sent: 1, failed: 0 });
    expect(renewed.locks.map((l) => l.getTime() - current.getTime())).toEqual([LOCK_MS]);

    const taken = await queueBigReport();
    const lapsed = slowRefusal(async (outboxId) => {
      await db.pool.query(`UPDATE outbox SET locked_by = 'another-replica' WHERE id = $1`, [outboxId]);
    });
    smtp.received.length = 0;
    expect(await deliverDue(ctx(), lapsed, { limit: 1 })).toEqual({ sent: 0, failed: 1 });
    expect(smtp.received, 'no second send under a lock that is not ours').toEqual([]);
    const [status] = await deliveryStatus(db.pool, taken.uploadId);
    expect(status).toMatchObject({ status: 'pending' });
  } finally {
    real.close();
    await db.pool.query(`UPDATE outbox SET status = 'sent' WHERE status = 'pending'`);
  }
});

it('tells a refusal for size from others that a 552 or 5.x.x may carry', () => {
  const refusal = (responseCode: number, response: string, command = 'DATA') => ({ responseCode, response, command });
  expect(isTooLarge(refusal(552, '552 5.3.4 Message size exceeds fixed maximum message size'))).toBe(true);
  expect(isTooLarge(refusal(552, '552 Message too large'))).toBe(true);
  expect(isTooLarge(refusal(554, '554 5.3.4 Message too big for system'))).toBe(true);
  expect(isTooLarge(refusal(550, '550 5.2.3 Message length exceeds administrative limit'))).toBe(true);
  expect(isTooLarge(refusal(552, '552 5.3.4 Message size exceeds fixed maximum message size', 'MAIL FROM'))).toBe(true);
  expect(isTooLarge(refusal(552, '552 5.2.2 Mailbox full'))).toBe(false);
  expect(isTooLarge(refusal(552, '552 5.3.4 too big', 'RCPT TO'))).toBe(false);
  expect(isTooLarge(refusal(554, '554 5.7.1 rejected as spam'))).toBe(false);
  expect(isTooLarge(refusal(452, '452 4.3.4 Message too big for now'))).toBe(false);
  expect(isTooLarge(new Error('connection refused'))).toBe(false);
});
