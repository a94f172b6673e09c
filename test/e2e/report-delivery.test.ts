import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import PostalMime from 'postal-mime';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { emptyCounts } from '../../src/import/types.js';
import { createLogger } from '../../src/log/logger.js';
import { deliverDue, retryDelayMs } from '../../src/report/delivery.js';
import { createMailer } from '../../src/report/mailer.js';
import { deliveryStatus, deliveryStatuses, enqueueReport } from '../../src/report/outbox.js';
import { renderReport } from '../../src/report/render.js';
import type { MailMessage } from '../../src/report/types.js';
import { withTransaction } from '../../src/store/db.js';
import { createTenant } from '../../src/store/tenants.js';
import { insertUpload, type Upload } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startTestSmtp, type TestSmtp } from '../support/smtp.js';

const SECRET = 'Pa55word-never-shown';
let db: TestDatabase;
let smtp: TestSmtp;
let current = new Date('2026-11-22T03:00:00Z');
const clock = { now: () => current };
const logger = createLogger('silent');
let n = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  smtp = await startTestSmtp();
  await createTenant(db.pool, 'lincoln-usd', {
    name: 'Lincoln USD',
    timezone: 'America/Chicago',
    adminEmails: ['it@lincoln.example', 'sis@lincoln.example'],
  });
});
afterAll(async () => {
  await smtp?.close();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('DELETE FROM outbox');
  smtp.received.length = 0;
});

async function newUpload(): Promise<Upload> {
  n++;
  return insertUpload(db.pool, {
    tenantSubdomain: 'lincoln-usd',
    fileName: 'users.csv',
    bytes: 2048,
    sha256: n.toString(16).padStart(64, '0'),
    storedPath: `uploads/lincoln-usd/${n}.csv`,
    keyFingerprint: null,
    remoteAddress: '127.0.0.1',
    receivedAt: new Date('2026-11-22T01:02:11Z'),
  });
}

function report(upload: Upload): MailMessage {
  return renderReport({
    from: 'rosterd <rosterd@rosterd.example>',
    tenant: {
      subdomain: 'lincoln-usd',
      name: 'Lincoln USD',
      timezone: 'America/Chicago',
      adminEmails: ['it@lincoln.example', 'sis@lincoln.example'],
    },
    import: {
      id: upload.id,
      file: 'users.csv',
      sha256: upload.sha256,
      bytes: upload.bytes,
      receivedAt: upload.receivedAt,
      status: 'completed_with_errors',
      mode: 'full',
      counts: { ...emptyCounts(), rows: 127, created: 120, updated: 4, deactivated: 2, errors: 2 },
      errors: [
        { line: 5, column: 'password', value: SECRET, message: 'a password needs at least 6 characters', username: 'jdoe0005' },
        { line: 9, column: 'email', value: '=cmd|calc', message: 'not a valid email address', username: 'jdoe0009' },
      ],
      warnings: [],
      durationMs: 1500,
    },
  });
}

async function enqueue(upload: Upload): Promise<number> {
  return withTransaction(db.pool, (client) => enqueueReport(client, report(upload), { uploadId: upload.id, now: clock.now() }));
}

describe('outbox', () => {
  it('commits with the outcome or not at all', async () => {
    const upload = await newUpload();
    await expect(
      withTransaction(db.pool, async (client) => {
        await enqueueReport(client, report(upload), { uploadId: upload.id, now: clock.now() });
        throw new Error('the outcome could not be recorded');
      }),
    ).rejects.toThrow(/outcome/);
    expect(await deliveryStatus(db.pool, upload.id)).toEqual([]);
  });
});

describe('delivery over SMTP', () => {
  it('the administrators receive the report: recipients, subject, counts, attachment, no password', async () => {
    const upload = await newUpload();
    const id = await enqueue(upload);
    const mailer = createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
    expect(await deliverDue({ pool: db.pool, logger, clock }, mailer)).toEqual({ sent: 1, failed: 0 });
    mailer.close();

    const [mail] = await smtp.waitFor(1);
    expect(mail?.rcptTo.sort()).toEqual(['it@lincoln.example', 'sis@lincoln.example']);
    const parsed = mail!.parsed;
    expect(parsed.to?.map((a) => ('address' in a ? a.address : ''))).toEqual(['it@lincoln.example', 'sis@lincoln.example']);
    expect(parsed.subject).toBe('[rosterd] lincoln-usd: users.csv imported with 2 errors — 120 created, 4 updated, 2 deactivated');
    // Unique across databases (outbox ids start at 1 in each): it holds the import's id too.
    expect(parsed.messageId).toBe(`<rosterd-report-${id}.${upload.id}@rosterd.example>`);
    expect(parsed.text).toMatch(/Rows read\s+127/);
    expect(parsed.text).toContain('Saturday, November 21, 2026, 7:02:11 PM CST (America/Chicago)');
    expect(parsed.html).toContain('<h3>Errors (2)</h3>');
    expect(parsed.attachments).toHaveLength(1);
    const csv = parsed.attachments[0]!;
    expect(csv.filename).toBe('users-errors.csv');
    expect(csv.mimeType).toBe('text/csv');
    expect(String(csv.content)).toContain(`9,jdoe0009,email,'=cmd|calc,not a valid email address`);
    expect(mail!.raw.toString('utf8')).not.toContain(SECRET);

    const [status] = await deliveryStatus(db.pool, upload.id);
    expect(status).toMatchObject({ status: 'sent', attempts: 1, lastError: null, to: ['it@lincoln.example', 'sis@lincoln.example'] });
    expect(status?.sentAt).toEqual(current);
    expect(status?.subject).toContain('imported with 2 errors');
  });

  it('with the server down the report waits, then arrives once when it is up', async () => {
    const upload = await newUpload();
    await enqueue(upload);
    const mailer = createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
    const ctx = { pool: db.pool, logger, clock };
    await smtp.stop();
    try {
      expect(await deliverDue(ctx, mailer)).toEqual({ sent: 0, failed: 1 });
      const [waiting] = await deliveryStatus(db.pool, upload.id);
      expect(waiting).toMatchObject({ status: 'pending', attempts: 1 });
      expect(waiting?.lastError).toMatch(/ECONNREFUSED|connect/i);
      expect(waiting?.nextAttemptAt).toEqual(new Date(current.getTime() + retryDelayMs(1)));

      // Not due yet: nothing is tried.
      expect(await deliverDue(ctx, mailer)).toEqual({ sent: 0, failed: 0 });
      current = new Date(current.getTime() + 31_000);
      expect(await deliverDue(ctx, mailer)).toEqual({ sent: 0, failed: 1 });
      const [again] = await deliveryStatus(db.pool, upload.id);
      expect(again?.nextAttemptAt).toEqual(new Date(current.getTime() + 60_000)); // backoff doubled
    } finally {
      await smtp.start();
    }
    current = new Date(current.getTime() + 61_000);
    expect(await deliverDue(ctx, mailer)).toEqual({ sent: 1, failed: 0 });
    current = new Date(current.getTime() + 3_600_000);
    expect(await deliverDue(ctx, mailer)).toEqual({ sent: 0, failed: 0 });
    mailer.close();
    await smtp.waitFor(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(smtp.received).toHaveLength(1);
    expect(await deliveryStatus(db.pool, upload.id)).toMatchObject([{ status: 'sent', attempts: 3, lastError: null }]);
  });

  it('two senders at once deliver each message once', async () => {
    const uploads = await Promise.all(Array.from({ length: 12 }, () => newUpload()));
    for (const u of uploads) await enqueue(u);
    const a = createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
    const b = createMailer({ SMTP_URL: smtp.url, DATA_DIR: '/nonexistent' });
    const ctx = { pool: db.pool, logger, clock };
    const [ra, rb] = await Promise.all([deliverDue(ctx, a), deliverDue(ctx, b)]);
    a.close();
    b.close();
    expect((ra?.sent ?? 0) + (rb?.sent ?? 0)).toBe(12);
    await smtp.waitFor(12);
    await new Promise((r) => setTimeout(r, 200));
    const ids = smtp.received.map((m) => m.parsed.headers.find((h) => h.key === 'x-rosterd-import')?.value);
    expect(new Set(ids).size).toBe(12);
    expect(smtp.received).toHaveLength(12);
    const statuses = await deliveryStatuses(
      db.pool,
      uploads.map((u) => u.id),
    );
    expect([...statuses.values()].flat().map((s) => s.status)).toEqual(Array(12).fill('sent'));
  });
});

describe('delivery without SMTP_URL', () => {
  it('writes each report as an .eml file in DATA_DIR/outbox', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'rosterd-eml-'));
    try {
      const upload = await newUpload();
      const id = await enqueue(upload);
      const mailer = createMailer({ DATA_DIR: dataDir });
      expect(mailer.kind).toBe('eml');
      expect(await deliverDue({ pool: db.pool, logger, clock }, mailer)).toEqual({ sent: 1, failed: 0 });
      const files = await readdir(path.join(dataDir, 'outbox'));
      const name = `${String(id).padStart(8, '0')}-lincoln-usd.eml`;
      expect(files).toEqual([name]);
      const raw = await readFile(path.join(dataDir, 'outbox', name));
      const parsed = await PostalMime.parse(raw, { attachmentEncoding: 'utf8' });
      expect(parsed.subject).toContain('[rosterd] lincoln-usd: users.csv imported with 2 errors');
      expect(parsed.attachments.map((x) => x.filename)).toEqual(['users-errors.csv']);
      expect(raw.toString('utf8')).not.toContain(SECRET);
      expect(await deliveryStatus(db.pool, upload.id)).toMatchObject([{ status: 'sent', deliveredAs: name }]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('leaves no partial .eml.tmp behind when writing fails (it would keep a full disk full), and retries', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'rosterd-eml-'));
    try {
      const upload = await newUpload();
      const id = await enqueue(upload);
      const name = `${String(id).padStart(8, '0')}-lincoln-usd.eml`;
      // Something in the way of the final name makes the write fail after the temporary file is written.
      await mkdir(path.join(dataDir, 'outbox', name, 'in-the-way'), { recursive: true });
      const mailer = createMailer({ DATA_DIR: dataDir });
      expect(await deliverDue({ pool: db.pool, logger, clock }, mailer)).toEqual({ sent: 0, failed: 1 });
      expect(await readdir(path.join(dataDir, 'outbox'))).toEqual([name]);
      expect(await deliveryStatus(db.pool, upload.id)).toMatchObject([{ status: 'pending' }]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
