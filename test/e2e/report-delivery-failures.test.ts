/**
 * Report delivery when the mail server misbehaves (PRODUCT.md §6: reports are "written to a
 * Postgres outbox first and retried with backoff until the server accepts them, so no report is
 * lost"). report-delivery.test.ts covers a server that is down (connection refused); this file
 * covers a server that answers but refuses: 550 (permanent) or 451 (temporary) to RCPT TO, 451
 * or 554 to the message itself (after DATA); a server that accepts the connection and never
 * greets; and a report refused for weeks. What src/report/delivery.ts does with a refusal: it
 * does not tell permanent from temporary: the message stays pending and is retried with backoff
 * (30 s, 1 min, … at most 1 h) until the server takes it, however long that is; unsent for
 * OVERDUE_MS, each failure is logged as an error (`report.overdue`). A refused
 * message does not stop the pass: the next queued message is sent; a connection-level failure
 * (refused, timed out) ends the pass, the rest wait for the next one. A refusal for the message's
 * size is the one told apart (sent again without attachments): report-delivery-too-large.test.ts.
 *
 * The clock of delivery is a fake object; no test waits for a backoff. The never-greeting server
 * is timed out with the mailer's own (production) timeouts, on fake timers.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { emptyCounts } from '../../src/import/types.js';
import { createLogger } from '../../src/log/logger.js';
import { deliverDue, LOCK_MS, OVERDUE_MS, retryDelayMs, type DeliveryResult } from '../../src/report/delivery.js';
import { createMailer, reportMessageId, SEND_DEADLINE_MS, type Mailer } from '../../src/report/mailer.js';
import { deliveryStatus, enqueueReport } from '../../src/report/outbox.js';
import { renderReport } from '../../src/report/render.js';
import { withTransaction } from '../../src/store/db.js';
import { createTenant } from '../../src/store/tenants.js';
import { insertUpload } from '../../src/store/uploads.js';
import { SMTPServer } from 'smtp-server';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startTestSmtp, type TestSmtp } from '../support/smtp.js';
import { waitFor } from '../support/wait.js';

/** Tenants and their administrators; each test queues reports of some of them. */
const ADMINS = {
  'refused-usd': ['it@refused-usd.example'],
  'working-usd': ['it@working-usd.example'],
  'split-usd': ['deferred@split-usd.example', 'it@split-usd.example'],
  'moved-usd': ['gone@moved-usd.example', 'it@moved-usd.example'],
} as const;
type Tenant = keyof typeof ADMINS;

const START = new Date('2026-11-22T03:00:00Z');
let current = START;
const clock = { now: () => current };
const advance = (ms: number) => (current = new Date(current.getTime() + ms));

type LogLine = Record<string, unknown> & { level?: string; event?: string; outboxId?: number };
const logs: LogLine[] = [];
const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
const events = (event: string, outboxId: number) => logs.filter((l) => l.event === event && l.outboxId === outboxId);

let db: TestDatabase;
let policy: PolicySmtp;
let n = 0;

// ---------------------------------------------------------------------------------------------
// A real SMTP server (smtp-server) that refuses what it is told to. test/support/smtp.ts accepts
// everything; this one answers RCPT TO or the end of DATA with a chosen reply for chosen
// recipients, a given number of times (greylisting) or always.

interface Refusal {
  code: number;
  text: string;
  /** how many more times to refuse; undefined: always */
  times?: number;
}

interface Delivered {
  rcptTo: string[];
  messageId: string;
}

interface PolicySmtp {
  url: string;
  /** refuse RCPT TO of this address */
  rcpt: Map<string, Refusal>;
  /** refuse the message (the reply after DATA) when this address is among its recipients */
  data: Map<string, Refusal>;
  /** every RCPT TO the server was sent, in order */
  rcptSeen: string[];
  /** the messages it accepted */
  delivered: Delivered[];
  /** accepted messages that went to `address` */
  to(address: string): Delivered[];
  reset(): void;
  close(): Promise<void>;
}

function refusal(rule: Refusal | undefined): Error | null {
  if (!rule) return null;
  if (rule.times !== undefined) {
    if (rule.times <= 0) return null;
    rule.times--;
  }
  return Object.assign(new Error(rule.text), { responseCode: rule.code });
}

async function startPolicySmtp(): Promise<PolicySmtp> {
  const rcpt = new Map<string, Refusal>();
  const data = new Map<string, Refusal>();
  const rcptSeen: string[] = [];
  const delivered: Delivered[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, callback) {
      rcptSeen.push(address.address);
      callback(refusal(rcpt.get(address.address)));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const rcptTo = session.envelope.rcptTo.map((r) => r.address);
        for (const address of rcptTo) {
          const err = refusal(data.get(address));
          if (err) return callback(err);
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        delivered.push({ rcptTo, messageId: /^Message-ID:\s*(\S+)/im.exec(raw)?.[1] ?? '' });
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    rcpt,
    data,
    rcptSeen,
    delivered,
    to: (address) => delivered.filter((d) => d.rcptTo.includes(address)),
    reset() {
      rcpt.clear();
      data.clear();
      rcptSeen.length = 0;
      delivered.length = 0;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  db = await createTestDatabase();
  policy = await startPolicySmtp();
  for (const [subdomain, adminEmails] of Object.entries(ADMINS)) {
    await createTenant(db.pool, subdomain, { timezone: 'America/Chicago', adminEmails: [...adminEmails] });
  }
});
afterAll(async () => {
  await policy?.close();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('DELETE FROM outbox');
  policy.reset();
  logs.length = 0;
  current = START;
});

const ctx = () => ({ pool: db.pool, logger, clock });

interface Queued {
  id: number;
  uploadId: string;
  /** the Message-ID the mailer gives it */
  messageId: string;
}

/** Queues the report of an import of `tenant` (as the import's outcome transaction does). */
async function queueReport(tenant: Tenant): Promise<Queued> {
  n++;
  const upload = await insertUpload(db.pool, {
    tenantSubdomain: tenant,
    fileName: 'users.csv',
    bytes: 100 + n,
    sha256: n.toString(16).padStart(64, '0'),
    storedPath: `uploads/${tenant}/${n}.csv`,
    keyFingerprint: null,
    remoteAddress: '127.0.0.1',
    receivedAt: new Date(current.getTime() - 3_600_000),
  });
  const message = renderReport({
    from: 'rosterd <rosterd@rosterd.example>',
    tenant: { subdomain: tenant, name: tenant, timezone: 'America/Chicago', adminEmails: [...ADMINS[tenant]] },
    import: {
      id: upload.id,
      file: 'users.csv',
      sha256: upload.sha256,
      bytes: upload.bytes,
      receivedAt: upload.receivedAt,
      status: 'succeeded',
      mode: 'full',
      counts: { ...emptyCounts(), rows: 3, created: 3 },
      errors: [],
      warnings: [],
      durationMs: 120,
    },
  });
  const id = await withTransaction(db.pool, (client) => enqueueReport(client, message, { uploadId: upload.id, now: clock.now() }));
  return { id, uploadId: upload.id, messageId: reportMessageId(message, id) };
}

async function status(q: Queued) {
  const [s] = await deliveryStatus(db.pool, q.uploadId);
  return s;
}

describe('a server that refuses a message', () => {
  const cases: Array<{
    what: string;
    code: number;
    refuse: (p: PolicySmtp, r: Refusal) => void;
    /** what nodemailer makes of it, in last_error */
    error: RegExp;
  }> = [
    {
      what: '550 (permanent) to RCPT TO',
      code: 550,
      refuse: (p, r) => p.rcpt.set(ADMINS['refused-usd'][0], r),
      error: /all recipients were rejected: 550 5\.1\.1 no such mailbox/,
    },
    {
      what: '451 (temporary) to RCPT TO',
      code: 451,
      refuse: (p, r) => p.rcpt.set(ADMINS['refused-usd'][0], r),
      error: /all recipients were rejected: 451 4\.7\.1 try again later/,
    },
    {
      what: '451 (temporary) to the message after DATA',
      code: 451,
      refuse: (p, r) => p.data.set(ADMINS['refused-usd'][0], r),
      error: /Message failed: 451 4\.7\.1 try again later/,
    },
    {
      what: '554 (permanent) to the message after DATA',
      code: 554,
      refuse: (p, r) => p.data.set(ADMINS['refused-usd'][0], r),
      error: /Message failed: 554 5\.7\.1 rejected as spam/,
    },
  ];

  it.each(cases)(
    '$what: kept pending and retried with backoff, the next message is sent in the same pass, and it is delivered once when accepted',
    async ({ code, refuse, error }) => {
      const text = { 550: '5.1.1 no such mailbox', 451: '4.7.1 try again later', 554: '5.7.1 rejected as spam' }[code] ?? '';
      const rule: Refusal = { code, text };
      refuse(policy, rule);
      const refused = await queueReport('refused-usd'); // queued first: tried first
      const working = await queueReport('working-usd');
      const mailer = createMailer({ SMTP_URL: policy.url, DATA_DIR: '/nonexistent' });
      try {
        // One pass: the refused message is not lost nor given up, and it does not stop the other.
        expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 1, failed: 1 });
        expect(policy.rcptSeen).toEqual([ADMINS['refused-usd'][0], ADMINS['working-usd'][0]]);
        expect(policy.delivered).toEqual([{ rcptTo: [...ADMINS['working-usd']], messageId: working.messageId }]);
        expect(await status(working)).toMatchObject({ status: 'sent', attempts: 1, lastError: null });
        const waiting = await status(refused);
        expect(waiting).toMatchObject({ status: 'pending', attempts: 1, sentAt: null });
        expect(waiting?.lastError).toMatch(error);
        expect(waiting?.nextAttemptAt).toEqual(new Date(START.getTime() + retryDelayMs(1)));
        expect(events('report.retried', refused.id)).toEqual([
          expect.objectContaining({ level: 'warn', attempts: 1, nextAttemptAt: waiting?.nextAttemptAt?.toISOString() }),
        ]);
        expect(events('report.delivered', working.id)).toHaveLength(1);

        // Not due yet: nothing is tried.
        advance(retryDelayMs(1) - 1_000);
        expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 0, failed: 0 });
        expect(policy.rcptSeen).toHaveLength(2);

        // Due: tried again, still refused; the backoff doubles.
        advance(1_000);
        expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 0, failed: 1 });
        const again = await status(refused);
        expect(again).toMatchObject({ status: 'pending', attempts: 2 });
        expect(again?.nextAttemptAt).toEqual(new Date(current.getTime() + retryDelayMs(2)));
        expect(retryDelayMs(2)).toBe(2 * retryDelayMs(1));

        // The server takes it (the mailbox is back, the greylisting is over): sent once, never again.
        rule.times = 0;
        advance(retryDelayMs(2));
        expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 1, failed: 0 });
        advance(30 * 24 * 3600_000);
        expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 0, failed: 0 });
        expect(policy.to(ADMINS['refused-usd'][0])).toEqual([{ rcptTo: [...ADMINS['refused-usd']], messageId: refused.messageId }]);
        expect(policy.delivered).toHaveLength(2);
        expect(await status(refused)).toMatchObject({ status: 'sent', attempts: 3, lastError: null });
        expect(events('report.delivered', refused.id)).toEqual([expect.objectContaining({ attempts: 3 })]);
      } finally {
        mailer.close();
      }
    },
  );

  // The server accepts some recipients and refuses others: nodemailer resolves and lists the
  // refused ones on the side. The message stays queued for those alone (a greylisted or full
  // mailbox gets it later), and the one who has it never gets it twice.
  it('one of two administrators deferred (451 to RCPT TO): the other gets it at once, the deferred one later', async () => {
    const [deferred, accepted] = ADMINS['split-usd'];
    policy.rcpt.set(deferred, { code: 451, text: '4.7.1 greylisted, try again later', times: 1 });
    const report = await queueReport('split-usd');
    const mailer = createMailer({ SMTP_URL: policy.url, DATA_DIR: '/nonexistent' });
    try {
      expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 0, failed: 1 });
      expect(policy.to(accepted)).toHaveLength(1);
      expect(policy.to(deferred)).toHaveLength(0);
      expect(await status(report)).toMatchObject({ status: 'pending' });
      // A day of passes, every time one is due: the deferred administrator must get the report.
      for (let i = 0; i < 30 && policy.to(deferred).length === 0; i++) {
        advance(retryDelayMs(i + 1));
        await deliverDue(ctx(), mailer);
      }
      expect(policy.to(deferred)).toEqual([expect.objectContaining({ messageId: report.messageId })]);
      expect(policy.to(accepted)).toHaveLength(1);
      expect(await status(report)).toMatchObject({ status: 'sent' });
    } finally {
      mailer.close();
    }
  });
});

describe('administrators changed while a report waits', () => {
  // An operator who replaces an address after a bounce expects the retry to reach the new one;
  // the removed address must no longer get a report that names students.
  it('the retry goes to the administrators as they are now, less those who already have it', async () => {
    const [gone, kept] = ADMINS['moved-usd'];
    policy.rcpt.set(gone, { code: 550, text: '5.1.1 no such user' });
    const report = await queueReport('moved-usd');
    const mailer = createMailer({ SMTP_URL: policy.url, DATA_DIR: '/nonexistent' });
    try {
      expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 0, failed: 1 });
      expect(policy.to(kept)).toHaveLength(1);
      await db.pool.query(`UPDATE tenants SET admin_emails = $2 WHERE subdomain = $1`, ['moved-usd', [kept, 'new@moved-usd.example']]);
      advance(retryDelayMs(1));
      expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 1, failed: 0 });
      expect(policy.to('new@moved-usd.example')).toEqual([expect.objectContaining({ messageId: report.messageId })]);
      expect(policy.to(gone)).toHaveLength(0);
      expect(policy.to(kept)).toHaveLength(1); // not twice
      expect(await status(report)).toMatchObject({ status: 'sent' });
    } finally {
      mailer.close();
    }
  });
});

describe('a server that accepts the connection and never greets', () => {
  /** A TCP front on its own port: holds connections silently, or forwards them to `target`. */
  interface Front {
    port: number;
    mode: 'silent' | 'greet-then-stall' | 'forward';
    server: net.Server;
    sockets: Set<net.Socket>;
  }
  let front: Front;
  let smtp: TestSmtp;

  beforeAll(async () => {
    smtp = await startTestSmtp();
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      if (front.mode === 'silent') return; // never a greeting, never a byte
      if (front.mode === 'greet-then-stall') {
        socket.resume(); // reads (and drops) what the client sends, so its FIN is seen
        return void socket.write('220 stall.example ESMTP\r\n'); // then never a reply
      }
      const upstream = net.connect(smtp.port, '127.0.0.1');
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    front = { port: (server.address() as AddressInfo).port, mode: 'silent', server, sockets };
  });
  afterAll(async () => {
    if (front) {
      for (const s of front.sockets) s.destroy();
      await new Promise<void>((resolve) => front.server.close(() => resolve()));
    }
    await smtp?.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a server that greets and then never answers is given up on at the send deadline, even when SMTP_URL raises every timeout', async () => {
    front.mode = 'greet-then-stall';
    const report = await queueReport('working-usd');
    // nodemailer lets the URL's query override the mailer's timeouts; the deadline still holds
    // (a test-sized one here; SEND_DEADLINE_MS, under the lock, in the daemon).
    const url = `smtp://127.0.0.1:${front.port}/?connectionTimeout=600000&greetingTimeout=600000&socketTimeout=600000`;
    const mailer: Mailer = createMailer({ SMTP_URL: url, DATA_DIR: '/nonexistent' }, { sendDeadlineMs: 1_000 });
    try {
      const result = await deliverDue(ctx(), mailer);
      expect(result).toEqual({ sent: 0, failed: 1 });
      expect(await status(report)).toMatchObject({
        status: 'pending',
        attempts: 1,
        lastError: 'the mail server did not take the report within 1 s; it will be tried again',
      });
      await waitFor(() => front.sockets.size === 0, 10_000, 'the mailer to close its connection');
    } finally {
      mailer.close();
    }
    expect(SEND_DEADLINE_MS).toBeLessThan(LOCK_MS);
  });

  it('the attempt times out within the lock, the pass ends, and the report is sent on a later pass', async () => {
    front.mode = 'silent';
    smtp.received.length = 0;
    const first = await queueReport('working-usd');
    const second = await queueReport('refused-usd');
    const mailer: Mailer = createMailer({ SMTP_URL: `smtp://127.0.0.1:${front.port}`, DATA_DIR: '/nonexistent' });
    try {
      const connected = once(front.server, 'connection');
      // The mailer's own timeouts run on fake timers: no real waiting.
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      let settled: DeliveryResult | Error | undefined;
      const pass = deliverDue(ctx(), mailer).then(
        (r) => (settled = r),
        (e: unknown) => (settled = e instanceof Error ? e : new Error(String(e))),
      );
      await connected;
      await db.pool.query('SELECT 1'); // a round trip, for the mailer to see its socket connect
      expect(settled).toBeUndefined(); // waiting for the greeting
      // Fake time runs in steps of a second until the mailer gives up (its failure is logged before
      // it is recorded), at most the message's lock (delivery.ts: longer than the mailer's timeouts).
      // Real timers come back at once: the recording's database connection must not time out on
      // fake time.
      let waitedMs = 0;
      while (events('report.retried', first.id).length === 0 && waitedMs < LOCK_MS) {
        await vi.advanceTimersByTimeAsync(1_000);
        await new Promise((r) => setImmediate(r));
        waitedMs += 1_000;
      }
      vi.useRealTimers();
      expect(waitedMs).toBeLessThan(LOCK_MS);
      await waitFor(() => settled, 10_000, 'the delivery pass to give up on the silent server');
      await pass;
      expect(settled).toEqual({ sent: 0, failed: 1 });

      const waiting = await status(first);
      expect(waiting).toMatchObject({ status: 'pending', attempts: 1 });
      expect(waiting?.lastError).toMatch(/Greeting never received/);
      expect(waiting?.nextAttemptAt).toEqual(new Date(START.getTime() + retryDelayMs(1)));
      // An unreachable server fails every message alike: the second waits for the next pass untried.
      expect(await status(second)).toMatchObject({ status: 'pending', attempts: 0, lastError: null });
      expect(events('report.retried', first.id)).toHaveLength(1);
      await waitFor(() => front.sockets.size === 0, 10_000, 'the mailer to close its connection');

      // The server greets again: the next pass, once due, sends both.
      front.mode = 'forward';
      advance(retryDelayMs(1));
      expect(await deliverDue(ctx(), mailer)).toEqual({ sent: 2, failed: 0 });
      const mails = await smtp.waitFor(2);
      expect(mails.map((m) => m.parsed.messageId).sort()).toEqual([first.messageId, second.messageId].sort());
      expect(await status(first)).toMatchObject({ status: 'sent', attempts: 2, lastError: null });
      expect(await status(second)).toMatchObject({ status: 'sent', attempts: 1 });
    } finally {
      vi.useRealTimers();
      mailer.close();
    }
  });
});

describe('never giving up', () => {
  /** A port nothing listens on: connection refused. */
  async function closedPort(): Promise<number> {
    const s = net.createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return port;
  }

  it.each([
    { what: 'refused with 550 to RCPT TO', down: false, error: /550 5\.1\.1 no such mailbox/ },
    { what: 'the server down (connection refused)', down: true, error: /ECONNREFUSED|connect/i },
  ])('$what for 30 days: retried hourly, an error in the log once overdue, and sent once a server takes it', async ({ down, error }) => {
    const report = await queueReport('refused-usd');
    const url = down ? `smtp://127.0.0.1:${await closedPort()}` : policy.url;
    if (!down) policy.rcpt.set(ADMINS['refused-usd'][0], { code: 550, text: '5.1.1 no such mailbox' });
    const failing = createMailer({ SMTP_URL: url, DATA_DIR: '/nonexistent' });
    const working = createMailer({ SMTP_URL: policy.url, DATA_DIR: '/nonexistent' });
    try {
      expect(await deliverDue(ctx(), failing)).toEqual({ sent: 0, failed: 1 });
      expect(events('report.retried', report.id)).toEqual([expect.objectContaining({ level: 'warn', attempts: 1 })]);

      // 30 days of failures, tried whenever due (the backoff stops growing at an hour).
      for (let day = 0; day < 30; day++) {
        advance(24 * 3600_000);
        expect(await deliverDue(ctx(), failing)).toEqual({ sent: 0, failed: 1 });
      }
      const waiting = await status(report);
      expect(waiting).toMatchObject({ status: 'pending', attempts: 31, sentAt: null });
      expect(waiting?.lastError).toMatch(error);
      expect(waiting?.nextAttemptAt).toEqual(new Date(current.getTime() + 3600_000));
      expect(retryDelayMs(31)).toBe(3600_000);
      // Past OVERDUE_MS every failure is an error, naming how long the district has waited.
      expect(OVERDUE_MS).toBe(24 * 3600_000);
      const overdue = events('report.overdue', report.id);
      expect(overdue).toHaveLength(30);
      expect(overdue[0]).toMatchObject({ level: 'error', attempts: 2, unsentHours: 24, to: [...ADMINS['refused-usd']] });
      expect(overdue[29]).toMatchObject({ level: 'error', attempts: 31, unsentHours: 720 });
      expect(String(overdue[29]?.msg)).toMatch(/not sent for 720 hours; retrying every hour until the mail server accepts it/);

      // The mailbox is back (or the server is): the next due attempt sends it, once.
      policy.rcpt.clear();
      advance(3600_000);
      expect(await deliverDue(ctx(), working)).toEqual({ sent: 1, failed: 0 });
      advance(3600_000);
      expect(await deliverDue(ctx(), working)).toEqual({ sent: 0, failed: 0 });
      expect(policy.to(ADMINS['refused-usd'][0])).toEqual([{ rcptTo: [...ADMINS['refused-usd']], messageId: report.messageId }]);
      expect(await status(report)).toMatchObject({ status: 'sent', attempts: 32, lastError: null });
    } finally {
      failing.close();
      working.close();
    }
  });
});
