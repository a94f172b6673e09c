/**
 * The schedule against a real Postgres and a real SMTP server, with a fake clock: night windows in
 * each tenant's zone (DST nights included), settling, superseding, claims, retries, reports.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { ImportHook } from '../../src/import/engine-types.js';
import { createPasswordHasher, type PasswordHasher } from '../../src/import/hash-pool.js';
import { createLogger } from '../../src/log/logger.js';
import { deliverDue } from '../../src/report/delivery.js';
import { createMailer } from '../../src/report/mailer.js';
import { deliveryStatus } from '../../src/report/outbox.js';
import { CLAIM_LOCK_CLASS } from '../../src/schedule/claim-lock.js';
import { processPending, type ScheduleContext } from '../../src/schedule/process.js';
import { createTenant, updateTenant } from '../../src/store/tenants.js';
import { insertUpload } from '../../src/store/uploads.js';
import type { AcceptedFileName } from '../../src/types.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startTestSmtp, type TestSmtp } from '../support/smtp.js';
import { waitFor } from '../support/wait.js';

const SECRET = 'S3cret-Passw0rd';
let db: TestDatabase;
let smtp: TestSmtp;
let hasher: PasswordHasher;
let dataDir: string;
let config: Config;
let current = new Date('2026-11-20T20:00:00Z');
const clock = { now: () => current };
const logger = createLogger('silent');

function ctx(over: Partial<ScheduleContext> = {}): ScheduleContext {
  return { pool: db.pool, logger, clock, config, hasher, claimedBy: 'test:1', ...over };
}

beforeAll(async () => {
  db = await createTestDatabase();
  smtp = await startTestSmtp();
  hasher = createPasswordHasher({ workers: 1 });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-schedule-'));
  config = loadConfig({
    DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    SMTP_URL: smtp.url,
    MAIL_FROM: 'rosterd <rosterd@rosterd.example>',
    SETTLE_SECONDS: '120',
    IMPORT_MAX_ATTEMPTS: '3',
    CLAIM_TTL_SECONDS: '600',
  });
});
afterAll(async () => {
  await hasher?.close();
  await smtp?.close();
  await db?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});
beforeEach(() => {
  smtp.received.length = 0;
});

let tenantSeq = 0;
/** A fresh tenant per test, so tests do not see each other's uploads. */
async function tenant(timezone: string, opts: { window?: string; thresholdPercent?: number } = {}): Promise<string> {
  const subdomain = `t${++tenantSeq}-${timezone.split('/')[1]?.toLowerCase().replace('_', '')}`;
  await createTenant(db.pool, subdomain, { name: `District ${tenantSeq}`, timezone, adminEmails: [`admin@${subdomain}.example`], ...opts });
  return subdomain;
}

async function receive(subdomain: string, body: string, at: string | Date, fileName: AcceptedFileName = 'users.csv'): Promise<string> {
  const rel = path.join('uploads', subdomain, `${randomUUID()}.csv`);
  mkdirSync(path.join(dataDir, 'uploads', subdomain), { recursive: true });
  writeFileSync(path.join(dataDir, rel), body, { mode: 0o400 });
  const upload = await insertUpload(db.pool, {
    tenantSubdomain: subdomain,
    fileName,
    bytes: Buffer.byteLength(body),
    sha256: createHash('sha256').update(body).digest('hex'),
    storedPath: rel,
    keyFingerprint: null,
    remoteAddress: '192.0.2.1',
    receivedAt: new Date(at),
  });
  return upload.id;
}

const users = (...names: string[]) =>
  ['username,password,email,first name,last name', ...names.map((n) => `${n},${SECRET},${n}@school.example,${n},Tester`)].join('\n') + '\n';

async function upload(id: string) {
  const { rows } = await db.pool.query<{
    status: string;
    attempts: number;
    last_attempt_error: string | null;
    superseded_by: string | null;
    claim_token: string | null;
    claimed_by: string | null;
    message: string | null;
  }>('SELECT status, attempts, last_attempt_error, superseded_by, claim_token, claimed_by, message FROM uploads WHERE id = $1', [id]);
  return rows[0];
}

async function activeUsers(subdomain: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ username: string }>(
    `SELECT u.username FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 AND u.active ORDER BY u.username`,
    [subdomain],
  );
  return rows.map((r) => r.username);
}

async function outboxFor(id: string) {
  return deliveryStatus(db.pool, id);
}

describe('night window, judged by each tenant’s clock', () => {
  it('an upload at 14:00 tenant time waits; at 18:00 it is imported and reported', async () => {
    const t = await tenant('America/Chicago');
    current = new Date('2026-11-20T20:00:00Z'); // 14:00 CST
    const id = await receive(t, users('alice01', 'bobby02', 'carol03'), '2026-11-20T19:55:00Z');
    const day = await processPending(ctx(), { tenant: t });
    expect(day.imported).toEqual([]);
    expect(day.waiting).toEqual([{ tenant: t, timezone: 'America/Chicago', pending: 1, opensAt: new Date('2026-11-21T00:00:00Z') }]);
    expect((await upload(id))?.status).toBe('pending');

    current = new Date('2026-11-20T23:59:59Z'); // 17:59:59
    expect((await processPending(ctx(), { tenant: t })).imported).toEqual([]);

    current = new Date('2026-11-21T00:00:00Z'); // 18:00 CST
    const night = await processPending(ctx(), { tenant: t });
    expect(night.imported).toEqual([{ id, tenant: t, file: 'users.csv', status: 'succeeded' }]);
    expect(await activeUsers(t)).toEqual(['alice01', 'bobby02', 'carol03']);
    expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 0, claim_token: null, claimed_by: 'test:1' });

    // The report: queued with the outcome, delivered by SMTP to the administrator.
    expect(await outboxFor(id)).toMatchObject([{ status: 'pending', to: [`admin@${t}.example`] }]);
    const mailer = createMailer(config);
    expect(await deliverDue({ pool: db.pool, logger, clock }, mailer)).toEqual({ sent: 1, failed: 0 });
    mailer.close();
    const [mail] = await smtp.waitFor(1);
    expect(mail?.rcptTo).toEqual([`admin@${t}.example`]);
    expect(mail?.parsed.subject).toBe(`[rosterd] ${t}: users.csv imported — 3 created, 0 updated, 0 deactivated`);
    expect(mail?.parsed.text).toMatch(/Rows read\s+3/);
    expect(mail?.parsed.text).toContain('Friday, November 20, 2026, 1:55:00 PM CST (America/Chicago)');
    expect(mail?.raw.toString()).not.toContain(SECRET);
    expect(await outboxFor(id)).toMatchObject([{ status: 'sent', attempts: 1 }]);
  });

  it('a tenant in another zone is judged by its own clock', async () => {
    const chicago = await tenant('America/Chicago');
    const newYork = await tenant('America/New_York');
    const auckland = await tenant('Pacific/Auckland');
    const c = await receive(chicago, users('chi0001'), '2026-11-21T20:00:00Z');
    const n = await receive(newYork, users('nyc0001'), '2026-11-21T20:00:00Z');
    const a = await receive(auckland, users('akl0001'), '2026-11-21T20:00:00Z');

    current = new Date('2026-11-21T23:00:00Z'); // 18:00 New York, 17:00 Chicago, 12:00 (next day) Auckland
    let run = await processPending(ctx());
    expect(run.imported.map((i) => i.id)).toEqual([n]);
    expect(run.waiting).toEqual(
      expect.arrayContaining([
        { tenant: chicago, timezone: 'America/Chicago', pending: 1, opensAt: new Date('2026-11-22T00:00:00Z') },
        { tenant: auckland, timezone: 'Pacific/Auckland', pending: 1, opensAt: new Date('2026-11-22T05:00:00Z') },
      ]),
    );
    current = new Date('2026-11-22T00:00:00Z');
    run = await processPending(ctx());
    expect(run.imported.map((i) => i.id)).toEqual([c]);
    current = new Date('2026-11-22T05:00:00Z'); // 18:00 NZDT
    run = await processPending(ctx());
    expect(run.imported.map((i) => i.id)).toEqual([a]);
  });

  it('spring forward (2026-03-08): a 02:30-05:00 window opens at 03:00 EDT, when 02:30 is skipped', async () => {
    const t = await tenant('America/New_York', { window: '02:30-05:00' });
    const id = await receive(t, users('spring01'), '2026-03-07T23:00:00Z');
    current = new Date('2026-03-08T06:59:00Z'); // 01:59 EST
    expect((await processPending(ctx(), { tenant: t })).waiting).toEqual([
      { tenant: t, timezone: 'America/New_York', pending: 1, opensAt: new Date('2026-03-08T07:00:00Z') },
    ]);
    current = new Date('2026-03-08T07:00:00Z'); // 03:00 EDT
    expect((await processPending(ctx(), { tenant: t })).imported.map((i) => i.id)).toEqual([id]);
  });

  it('fall back (2026-11-01): a 01:30-05:00 window opens at the first 01:30 and stays open through the repeated hour', async () => {
    const t = await tenant('America/New_York', { window: '01:30-05:00' });
    const first = await receive(t, users('fall0001'), '2026-10-31T23:00:00Z');
    current = new Date('2026-11-01T05:29:00Z'); // 01:29 EDT
    expect((await processPending(ctx(), { tenant: t })).imported).toEqual([]);
    current = new Date('2026-11-01T05:30:00Z'); // 01:30 EDT
    expect((await processPending(ctx(), { tenant: t })).imported.map((i) => i.id)).toEqual([first]);
    // An upload during the repeated hour (01:05 EST, the clock reads before 01:30 again) is imported too.
    const second = await receive(t, users('fall0001', 'fall0002'), '2026-11-01T06:00:00Z');
    current = new Date('2026-11-01T06:05:00Z');
    expect((await processPending(ctx(), { tenant: t })).imported.map((i) => i.id)).toEqual([second]);
    // Closed at 05:00 EST.
    await receive(t, users('fall0003'), '2026-11-01T09:00:00Z');
    current = new Date('2026-11-01T10:00:00Z');
    expect((await processPending(ctx(), { tenant: t })).imported).toEqual([]);
  });

  it('--now imports outside the window without settling; a suspended tenant is skipped', async () => {
    const t = await tenant('America/Chicago');
    current = new Date('2026-11-23T17:00:00Z'); // 11:00 CST
    const id = await receive(t, users('now00001'), current);
    expect((await processPending(ctx(), { tenant: t, now: true })).imported.map((i) => i.id)).toEqual([id]);

    const s = await tenant('America/Chicago');
    await receive(s, users('susp0001'), '2026-11-23T10:00:00Z');
    await updateTenant(db.pool, s, { status: 'suspended' });
    const run = await processPending(ctx(), { tenant: s, now: true });
    expect(run.imported).toEqual([]);
    expect(await activeUsers(s)).toEqual([]);
  });
});

describe('settling and order', () => {
  it('waits until uploads are quiet, then imports users.csv before the groups.csv pushed with it', async () => {
    const t = await tenant('America/Chicago');
    current = new Date('2026-11-24T02:00:00Z'); // 20:00 CST
    // groups.csv arrives first; it names users that only the users.csv creates.
    const g = await receive(t, 'username,owner,group\nteach001,,Science\nstud0001,,Science\n', '2026-11-24T01:59:00Z', 'groups.csv');
    const u = await receive(t, users('teach001', 'stud0001'), '2026-11-24T01:59:30Z');
    const early = await processPending(ctx(), { tenant: t });
    expect(early.imported).toEqual([]);
    expect(early.settling).toEqual([{ tenant: t, timezone: 'America/Chicago', pending: 2, until: new Date('2026-11-24T02:01:30Z') }]);

    current = new Date('2026-11-24T02:01:30Z');
    const run = await processPending(ctx(), { tenant: t });
    expect(run.imported).toEqual([
      { id: u, tenant: t, file: 'users.csv', status: 'succeeded' },
      { id: g, tenant: t, file: 'groups.csv', status: 'succeeded' },
    ]);
  });

  it('of several pending users.csv the newest is imported and the older ones superseded', async () => {
    const t = await tenant('America/Chicago');
    const a = await receive(t, users('old00001'), '2026-11-24T15:00:00Z');
    const b = await receive(t, users('new00001'), '2026-11-24T16:00:00Z'); // the SIS sent tonight's file twice
    const c = await receive(t, users('new00001'), '2026-11-24T17:00:00Z');
    current = new Date('2026-11-25T00:00:00Z');
    const run = await processPending(ctx(), { tenant: t });
    expect(run.superseded.map((s) => s.id)).toEqual([a, b]);
    expect(run.imported.map((i) => i.id)).toEqual([c]);
    expect(await upload(a)).toMatchObject({ status: 'superseded', superseded_by: c });
    expect(await upload(b)).toMatchObject({ status: 'superseded', superseded_by: c });
    expect(await activeUsers(t)).toEqual(['new00001']);
    expect(await outboxFor(a)).toEqual([]); // not an import: no report
    // The report of the import names them, newest first, and says what to do about the one that differs.
    const { rows } = await db.pool.query<{ text: string }>(`SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1`, [c]);
    const text = rows[0]?.text ?? '';
    expect(text).toMatch(
      /Replaces: +users\.csv received Tuesday, November 24, 2026, 10:00:00 AM CST \(America\/Chicago\) \(\d+ bytes, the same content as this one\): not imported\n/,
    );
    expect(text).toMatch(
      /Replaces: +users\.csv received Tuesday, November 24, 2026, 9:00:00 AM CST \(America\/Chicago\) \(\d+ bytes\): not imported\n/,
    );
    expect(text.indexOf('10:00:00 AM CST')).toBeLessThan(text.indexOf('9:00:00 AM CST'));
    expect(text.replace(/\s+/g, ' ')).toContain(
      'This users.csv replaced an earlier one that arrived before the import ran; it was not imported, as only the newest users.csv waiting is. ' +
        'If it held anything this one does not (people sent in a separate file, or the changes of a file with an action column), ' +
        'upload it again combined with this one into one file.',
    );
    expect(text).not.toContain('Nothing to do.');
  });

  it('newest is the upload the database recorded last, even when a replica with a slow clock received it', async () => {
    const t = await tenant('America/Chicago');
    const older = await receive(t, users('old00002'), '2026-11-24T17:00:00Z');
    // received after it, by a replica whose clock is two minutes slow
    const newer = await receive(t, users('new00002'), '2026-11-24T16:58:00Z');
    current = new Date('2026-11-25T00:00:00Z');
    const run = await processPending(ctx(), { tenant: t });
    expect(run.superseded.map((s) => s.id)).toEqual([older]);
    expect(run.imported.map((i) => i.id)).toEqual([newer]);
    expect(await activeUsers(t)).toEqual(['new00002']);
  });
});

describe('failures', () => {
  /** The database connection of the import is killed at `point`, as in a network failure. */
  const killConnectionAt =
    (point: string): ImportHook =>
    async (p, client) => {
      if (p !== point) return;
      // pg emits 'error' on a checked-out client whose connection ends; without a listener that is an
      // uncaught exception. The pool should give every client one (see report: src/store/db.ts).
      client.on('error', () => undefined);
      await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
    };

  it('a lost connection mid-import leaves nothing partial; the upload goes back to pending and is imported later', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('lost0001', 'lost0002'), '2026-11-25T01:00:00Z');
    current = new Date('2026-11-25T02:00:00Z');
    const failed = await processPending(ctx({ importHook: killConnectionAt('created') }), { tenant: t });
    expect(failed.retried.map((r) => r.id)).toEqual([id]);
    expect(await upload(id)).toMatchObject({ status: 'pending', attempts: 1, claim_token: null });
    expect((await upload(id))?.last_attempt_error).toMatch(/terminat|connection/i);
    expect(await activeUsers(t)).toEqual([]);
    expect(await outboxFor(id)).toEqual([]);

    current = new Date('2026-11-25T02:05:00Z');
    const later = await processPending(ctx(), { tenant: t });
    expect(later.imported.map((i) => i.id)).toEqual([id]);
    expect(await activeUsers(t)).toEqual(['lost0001', 'lost0002']);
    expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 1, last_attempt_error: null });
  });

  it('after IMPORT_MAX_ATTEMPTS failed attempts the upload is failed and reported', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('fail0001'), '2026-11-25T01:00:00Z');
    const broken = ctx({ importHook: killConnectionAt('planned') });
    for (let i = 0; i < 3; i++) {
      current = new Date(Date.parse('2026-11-25T03:00:00Z') + i * 300_000);
      await processPending(broken, { tenant: t });
    }
    expect(await upload(id)).toMatchObject({ status: 'failed', attempts: 3 });
    expect((await upload(id))?.message).toMatch(/after 3 attempts/);
    const [report] = await outboxFor(id);
    expect(report?.subject).toBe(`[rosterd] ${t}: users.csv failed — nothing imported`);
    // a failed upload is not tried again
    current = new Date('2026-11-25T04:00:00Z');
    expect((await processPending(ctx(), { tenant: t })).imported).toEqual([]);
  });

  it('a crashed importer’s expired claim is taken back and the upload imported', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('crash001'), '2026-11-26T01:00:00Z');
    current = new Date('2026-11-26T02:00:00Z');
    // What a process killed mid-import leaves behind: running, claimed, never finished.
    await db.pool.query(
      `UPDATE uploads SET status = 'running', claimed_by = 'dead:99', claim_token = $2, claimed_at = $3, claim_expires_at = $4 WHERE id = $1`,
      [id, randomUUID(), new Date(current.getTime() - 700_000), new Date(current.getTime() + 1000)],
    );
    // Not expired yet: left alone.
    expect((await processPending(ctx(), { tenant: t })).imported).toEqual([]);
    expect((await upload(id))?.status).toBe('running');
    current = new Date(current.getTime() + 2000);
    const run = await processPending(ctx(), { tenant: t });
    expect(run.retried.map((r) => r.id)).toEqual([id]);
    expect(run.imported.map((i) => i.id)).toEqual([id]);
    expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 1, claimed_by: 'test:1' });
  });

  /** What a process on another connection leaves behind when it claims `id`: a claim backed by its session's lock. */
  async function claimedElsewhere(id: string, by: string, expiresAt: Date): Promise<pg.Client> {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const key = 4242 + ++tenantSeq;
    await holder.query('SELECT pg_advisory_lock($1, $2)', [CLAIM_LOCK_CLASS, key]);
    await db.pool.query(
      `UPDATE uploads SET status = 'running', claimed_by = $2, claim_token = $3, claimed_at = $4, claim_expires_at = $5, claim_lock = $6
        WHERE id = $1`,
      [id, by, randomUUID(), new Date(expiresAt.getTime() - 600_000), expiresAt, key],
    );
    return holder;
  }

  /** Claim locks held by any session of this database (none once every claim has ended). */
  async function claimLocksHeld(): Promise<number> {
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [CLAIM_LOCK_CLASS],
    );
    return rows[0]?.n ?? -1;
  }

  it('a claim whose holder’s connection closed (a process killed) is taken back at the next pass, long before it expires', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('gone0001'), '2026-11-26T01:00:00Z');
    current = new Date('2026-11-26T02:00:00Z');
    const holder = await claimedElsewhere(id, 'killed:77', new Date(current.getTime() + 600_000));
    // Alive, it keeps its claim: nothing taken back, nothing imported.
    let run = await processPending(ctx(), { tenant: t });
    expect(run.retried.map((r) => r.id)).not.toContain(id);
    expect(run.imported).toEqual([]);
    expect(await upload(id)).toMatchObject({ status: 'running', claimed_by: 'killed:77', attempts: 0 });

    // Killed: its connection closes (and Postgres, seeing it, drops the session's locks). A minute
    // on, nine before its claim would expire, the claim is taken back.
    await holder.end();
    await waitFor(async () => (await claimLocksHeld()) === 0, 5_000, 'Postgres to end the holder’s session');
    current = new Date(current.getTime() + 60_000);
    const lines: Array<Record<string, unknown>> = [];
    const capture = createLogger('warn', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    run = await processPending(ctx({ logger: capture }), { tenant: t });
    expect(run.retried.map((r) => r.id)).toEqual([id]);
    expect(run.imported).toEqual([{ id, tenant: t, file: 'users.csv', status: 'succeeded' }]);
    expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 1, claimed_by: 'test:1', claim_token: null });
    expect(await activeUsers(t)).toEqual(['gone0001']);
    expect(lines.filter((l) => l.uploadId === id && l.event === 'import.claim_taken_back')).toMatchObject([
      { msg: 'claim of a stopped importer taken back', lapsed: 'holder_gone', claimedBy: 'killed:77', attempts: 1, status: 'pending' },
    ]);
    expect(await outboxFor(id)).toHaveLength(1);
    expect(await claimLocksHeld()).toBe(0);
  });

  it('a claim whose holder still holds its lock (a host gone without closing its connection) is taken back once it expires', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('zomb0001'), '2026-11-26T01:00:00Z');
    current = new Date('2026-11-26T02:00:00Z');
    const holder = await claimedElsewhere(id, 'vanished:5', new Date(current.getTime() + 600_000));
    try {
      current = new Date(current.getTime() + 599_000);
      expect((await processPending(ctx(), { tenant: t })).retried).toEqual([]);
      expect((await upload(id))?.status).toBe('running');
      // Expired: taken back whatever its lock, and the lock it may hold for hours yet is no obstacle.
      current = new Date(current.getTime() + 2_000);
      const run = await processPending(ctx(), { tenant: t });
      expect(run.retried.map((r) => r.id)).toEqual([id]);
      expect(run.imported.map((i) => i.id)).toEqual([id]);
      expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 1, claimed_by: 'test:1' });
      expect(await claimLocksHeld()).toBe(1); // the vanished holder's, until Postgres notices it gone
    } finally {
      await holder.end();
    }
    expect(await claimLocksHeld()).toBe(0);
  });

  it('a live importer stalled in its import keeps its claim until it expires; taken back then, its import rolls back and the upload is imported once', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('stall001', 'stall002'), '2026-11-26T01:00:00Z');
    current = new Date('2026-11-26T04:00:00Z');
    let stalled!: () => void;
    const stalling = new Promise<void>((resolve) => (stalled = resolve));
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    const stall: ImportHook = async (p) => {
      if (p !== 'planned') return;
      stalled();
      await resumed;
    };
    const first = processPending(ctx({ claimedBy: 'stalled:1', importHook: stall }), { tenant: t });
    await stalling;
    try {
      // Another process, nine minutes on: the claim has not expired and its holder lives; left alone.
      current = new Date('2026-11-26T04:09:00Z');
      const other = await processPending(ctx({ claimedBy: 'other:2' }), { tenant: t });
      expect([...other.retried, ...other.failed].map((r) => r.id)).not.toContain(id);
      expect(other.imported).toEqual([]);
      expect(await upload(id)).toMatchObject({ status: 'running', claimed_by: 'stalled:1', attempts: 0 });
      expect(await claimLocksHeld()).toBe(1);

      // Past its expiry (it was not renewed): taken back and claimed anew; the new import waits for
      // the tenant's roster, which the stalled import's transaction holds.
      current = new Date('2026-11-26T04:11:00Z');
      const second = processPending(ctx({ claimedBy: 'other:2' }), { tenant: t });
      await waitFor(async () => (await upload(id))?.claimed_by === 'other:2', 10_000, 'the expired claim to be claimed anew');
      resume();
      const [a, b] = await Promise.all([first, second]);
      expect(a.imported).toEqual([]);
      expect(b.retried.map((r) => r.id)).toEqual([id]);
      expect(b.imported).toEqual([{ id, tenant: t, file: 'users.csv', status: 'succeeded' }]);
    } finally {
      resume();
      await first.catch(() => undefined);
    }
    expect(await upload(id)).toMatchObject({ status: 'succeeded', attempts: 1, claimed_by: 'other:2', claim_token: null });
    expect(await activeUsers(t)).toEqual(['stall001', 'stall002']);
    expect(await outboxFor(id)).toHaveLength(1);
    expect(await claimLocksHeld()).toBe(0);
  });

  it('every way a claim ends lets go of its lock and gives its connection back to the pool', async () => {
    const t = await tenant('America/Chicago');
    current = new Date('2026-11-27T01:00:00Z');
    // A failed attempt, then a success, a file rejected, and a claim lost.
    const id = await receive(t, users('ends0001'), '2026-11-27T00:00:00Z');
    await processPending(ctx({ importHook: killConnectionAt('created') }), { tenant: t });
    expect(await upload(id)).toMatchObject({ status: 'pending', attempts: 1 });
    expect(await claimLocksHeld()).toBe(0);
    current = new Date('2026-11-27T01:05:00Z');
    expect((await processPending(ctx(), { tenant: t })).imported.map((i) => i.status)).toEqual(['succeeded']);
    await receive(t, 'no header here\n', '2026-11-27T01:06:00Z');
    current = new Date('2026-11-27T01:10:00Z');
    expect((await processPending(ctx(), { tenant: t })).imported.map((i) => i.status)).toEqual(['failed']);
    const lost = await receive(t, users('ends0002'), '2026-11-27T01:11:00Z');
    const steal: ImportHook = async (p) => {
      if (p === 'planned') await db.pool.query(`UPDATE uploads SET claim_token = $2 WHERE id = $1`, [lost, randomUUID()]);
    };
    current = new Date('2026-11-27T01:15:00Z');
    expect((await processPending(ctx({ importHook: steal }), { tenant: t })).imported).toEqual([]);
    expect(await claimLocksHeld()).toBe(0);
    expect(db.pool.totalCount - db.pool.idleCount, 'connections still checked out').toBe(0);
    // The stolen claim has no real holder: out of the way of the next tests' passes.
    await db.pool.query(`UPDATE uploads SET status = 'superseded', claim_token = NULL, claim_lock = NULL WHERE id = $1`, [lost]);
  });

  it('an importer whose claim was taken back meanwhile rolls back instead of importing twice', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, users('fence001'), '2026-11-26T01:00:00Z');
    current = new Date('2026-11-26T03:00:00Z');
    // While this import runs, another process takes the claim over (as after a stall past the TTL).
    const stolen: ImportHook = async (p) => {
      if (p === 'planned')
        await db.pool.query(`UPDATE uploads SET claim_token = $2, claimed_by = 'other:2' WHERE id = $1`, [id, randomUUID()]);
    };
    const run = await processPending(ctx({ importHook: stolen }), { tenant: t });
    expect(run.imported).toEqual([]);
    expect(await activeUsers(t)).toEqual([]);
    expect(await upload(id)).toMatchObject({ status: 'running', claimed_by: 'other:2' });
    expect(await outboxFor(id)).toEqual([]);
  });
});

describe('reports of outcomes', () => {
  it('a held import is reported with the users it would deactivate and the approve command', async () => {
    const t = await tenant('America/Chicago', { thresholdPercent: 10 });
    current = new Date('2026-11-27T03:00:00Z');
    await receive(t, users('keep0001', 'gone0001', 'gone0002', 'gone0003'), '2026-11-27T01:00:00Z');
    await processPending(ctx(), { tenant: t });
    const held = await receive(t, users('keep0001'), '2026-11-27T02:00:00Z');
    current = new Date('2026-11-27T03:05:00Z');
    const run = await processPending(ctx(), { tenant: t });
    expect(run.imported).toEqual([{ id: held, tenant: t, file: 'users.csv', status: 'held' }]);

    const mailer = createMailer(config);
    await deliverDue({ pool: db.pool, logger, clock }, mailer);
    mailer.close();
    await smtp.waitFor(2);
    const mail = smtp.received.find((m) => m.parsed.subject?.includes('held'));
    expect(mail?.parsed.subject).toBe(`[rosterd] ${t}: users.csv held for approval — would deactivate 3 users`);
    expect(mail?.parsed.text).toContain(`rosterd import approve ${held}`);
    expect(mail?.parsed.text).toContain('nothing has been changed yet: this file would deactivate 3 of 4 active users (75%)');
    expect(mail?.parsed.text).not.toContain('approve it with'); // the operator's wording, in import show
    const list = mail?.parsed.attachments.find((a) => a.filename === 'users-would-deactivate.csv');
    expect(String(list?.content)).toContain('gone0001,gone0001@school.example,gone0001,Tester,');
    expect(String(list?.content).trim().split('\r\n')).toHaveLength(4);
    for (const m of smtp.received) expect(m.raw.toString()).not.toContain(SECRET);
  });

  it('a file without a header row fails, and its first line (which may hold a password) is in no report, message or log', async () => {
    const t = await tenant('America/Chicago');
    const lines: string[] = [];
    const capture = createLogger('debug', { write: (line: string) => void lines.push(line) });
    const id = await receive(t, `jsmith,${SECRET},jsmith@school.example\njdoe,${SECRET},jdoe@school.example\n`, '2026-11-27T01:00:00Z');
    current = new Date('2026-11-27T04:00:00Z');
    const run = await processPending(ctx({ logger: capture }), { tenant: t });
    expect(run.imported).toEqual([{ id, tenant: t, file: 'users.csv', status: 'failed' }]);
    expect((await upload(id))?.message).toMatch(/^The file has no header row/);

    const mailer = createMailer(config);
    await deliverDue({ pool: db.pool, logger: capture, clock }, mailer);
    mailer.close();
    await smtp.waitFor(1);
    expect(smtp.received[0]?.parsed.text).toContain('The file has no header row');
    expect(smtp.received[0]?.raw.toString()).not.toContain(SECRET);
    expect(JSON.stringify(await upload(id))).not.toContain(SECRET);
    expect(lines.join('\n')).toContain('no header row');
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('a file refused at the file level is reported as failed with its message', async () => {
    const t = await tenant('America/Chicago');
    const id = await receive(t, 'email,first name\nx@y.example,X\n', '2026-11-27T01:00:00Z');
    current = new Date('2026-11-27T04:00:00Z');
    const run = await processPending(ctx(), { tenant: t });
    expect(run.imported).toEqual([{ id, tenant: t, file: 'users.csv', status: 'failed' }]);
    const [report] = await outboxFor(id);
    expect(report?.subject).toMatch(/users\.csv failed — nothing imported/);
  });
});

describe('several processes', () => {
  it('two schedulers at once import each upload exactly once', async () => {
    const tenants = await Promise.all(Array.from({ length: 4 }, () => tenant('America/Chicago')));
    const ids: string[] = [];
    for (const [i, t] of tenants.entries()) {
      ids.push(await receive(t, users(`multi${i}01`, `multi${i}02`), '2026-11-28T01:00:00Z'));
      ids.push(await receive(t, `username,owner,group\nmulti${i}01,,Band\n`, '2026-11-28T01:00:01Z', 'groups.csv'));
    }
    current = new Date('2026-11-28T03:00:00Z');
    const [a, b] = await Promise.all([processPending(ctx({ claimedBy: 'a:1' })), processPending(ctx({ claimedBy: 'b:2' }))]);
    const imported = [...(a?.imported ?? []), ...(b?.imported ?? [])].map((i) => i.id).filter((id) => ids.includes(id));
    // What one pass left (a tenant busy with the other process) the next pass takes.
    const c = await processPending(ctx({ claimedBy: 'a:1' }));
    imported.push(...c.imported.map((i) => i.id).filter((id) => ids.includes(id)));
    expect(imported.sort()).toEqual([...ids].sort());
    const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE upload_id = ANY($1::uuid[])', [ids]);
    expect(rows[0]?.n).toBe(ids.length);
  });
});
