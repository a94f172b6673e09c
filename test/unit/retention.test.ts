import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { applyRetention, startRetention } from '../../src/ops/retention.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

const logger = createLogger('silent');
const NOW = new Date('2026-11-21T12:00:00Z');
const CONTENT = 'username,password\nalice01,secret1\n';
const clock = { now: () => NOW };
const daysAgo = (days: number) => new Date(NOW.getTime() - days * 86_400_000);

describe('retention of received upload copies', () => {
  let db: TestDatabase;
  let dataDir: string;
  let tenantId: number;

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-retention-'));
    db = await createTestDatabase();
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('lincoln-usd', 'Lincoln', ARRAY['it@lincoln.example']) RETURNING id`,
    );
    tenantId = rows[0]?.id ?? 0;
  });

  afterAll(async () => {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** A copy on disk (mode 0400, as receipt leaves it) and, unless orphan, its upload row. */
  async function copy(name: string, receivedAt: Date, status: string | null): Promise<{ rel: string; id: string | null }> {
    const rel = path.join('uploads', 'lincoln-usd', name);
    const abs = path.join(dataDir, rel);
    mkdirSync(path.dirname(abs), { recursive: true, mode: 0o700 });
    writeFileSync(abs, CONTENT, { mode: 0o400 });
    utimesSync(abs, receivedAt, receivedAt);
    if (status === null) return { rel, id: null };
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, received_at, status)
       VALUES ($1, 'users.csv', $5, repeat('b', 64), $2, $3, $4) RETURNING id`,
      [tenantId, rel, receivedAt, status, CONTENT.length],
    );
    return { rel, id: rows[0]?.id ?? null };
  }

  it('deletes copies older than RETENTION_DAYS whose import is finished, keeps their records, and keeps the rest', async () => {
    const oldDone = await copy('old-succeeded-users.csv', daysAgo(31), 'succeeded');
    const oldFailed = await copy('old-failed-users.csv', daysAgo(45), 'failed');
    const oldHeld = await copy('old-held-users.csv', daysAgo(60), 'held');
    const oldPending = await copy('old-pending-users.csv', daysAgo(40), 'pending');
    const recent = await copy('recent-users.csv', daysAgo(29), 'succeeded');
    const oldOrphan = await copy('old-orphan-users.csv', daysAgo(31), null);
    const newOrphan = await copy('new-orphan-users.csv', daysAgo(1), null);

    const result = await applyRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger });

    expect(result.cutoff).toEqual(daysAgo(30));
    expect(result.failed).toEqual([]);
    expect(result.removed.map((r) => r.path).sort()).toEqual([oldDone.rel, oldFailed.rel, oldOrphan.rel].sort());
    expect(result.removed.find((r) => r.path === oldDone.rel)).toEqual({ path: oldDone.rel, uploadId: oldDone.id, bytes: CONTENT.length });
    expect(result.removed.find((r) => r.path === oldOrphan.rel)?.uploadId).toBeNull();
    for (const gone of [oldDone, oldFailed, oldOrphan]) expect(existsSync(path.join(dataDir, gone.rel)), gone.rel).toBe(false);
    for (const kept of [oldHeld, oldPending, recent, newOrphan]) expect(existsSync(path.join(dataDir, kept.rel)), kept.rel).toBe(true);

    const records = await db.pool.query<{ id: string; stored_path: string }>(
      'SELECT id, stored_path FROM uploads WHERE id = ANY($1::uuid[])',
      [[oldDone.id, oldFailed.id]],
    );
    expect(records.rows).toHaveLength(2);

    // A second run (or another replica) finds nothing more to do.
    const again = await applyRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger });
    expect(again.removed).toEqual([]);
  });

  it('deletes the users.csv a district sees once it is that old too (it is the latest copy under another name)', async () => {
    const folder = path.join(dataDir, 'sftp', 'lincoln-usd');
    mkdirSync(folder, { recursive: true });
    const visible = path.join(folder, 'users.csv');
    const fresh = path.join(folder, 'groups.csv');
    const temp = path.join(folder, 'users.csv.filepart');
    for (const f of [visible, fresh, temp]) writeFileSync(f, CONTENT, { mode: 0o400 });
    for (const f of [visible, temp]) utimesSync(f, daysAgo(31), daysAgo(31));
    const result = await applyRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger });
    expect(result.visibleRemoved).toEqual([path.join('sftp', 'lincoln-usd', 'users.csv')]);
    expect(existsSync(visible)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(temp)).toBe(true); // temporary files are the SFTP server's to sweep
  });

  it('removes the bodies of reports sent before the cut-off, and their .eml files; a report not yet sent keeps its body, however old', async () => {
    const message = {
      from: 'rosterd@example.com',
      to: ['it@lincoln.example'],
      subject: 'lincoln-usd: users.csv imported with 1 error',
      text: 'line 3: alice01 ...',
      html: '<p>alice01</p>',
      attachments: [{ filename: 'users-errors.csv', content: 'line,username\n3,alice01\n' }],
      headers: { 'X-Rosterd-Tenant': 'lincoln-usd' },
    };
    const report = async (status: string, at: Date, sentAt = status === 'sent' ? at : null) => {
      const { rows } = await db.pool.query<{ id: string }>(
        `INSERT INTO outbox (message, status, created_at, sent_at) VALUES ($1, $2, $3, $4) RETURNING id`,
        [message, status, at, sentAt],
      );
      return rows[0]?.id;
    };
    const oldSent = await report('sent', daysAgo(31));
    const olderSent = await report('sent', daysAgo(40));
    const oldPending = await report('pending', daysAgo(400)); // still to be delivered: never touched
    const recentSent = await report('sent', daysAgo(2));
    const lateSent = await report('sent', daysAgo(40), daysAgo(2)); // written long ago, sent lately: aged from sending
    const eml = (name: string, at: Date) => {
      mkdirSync(path.join(dataDir, 'outbox'), { recursive: true });
      writeFileSync(path.join(dataDir, 'outbox', name), 'Subject: report\r\n\r\nalice01\r\n');
      utimesSync(path.join(dataDir, 'outbox', name), at, at);
    };
    eml('00000001-lincoln-usd.eml', daysAgo(31));
    eml('00000002-lincoln-usd.eml', daysAgo(3));
    eml('.00000003-lincoln-usd.eml.tmp', daysAgo(40)); // left by a crash mid-write

    const result = await applyRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger });

    expect(result.reportsCleared).toBe(2);
    expect(result.emlRemoved.sort()).toEqual([
      path.join('outbox', '.00000003-lincoln-usd.eml.tmp'),
      path.join('outbox', '00000001-lincoln-usd.eml'),
    ]);
    expect(existsSync(path.join(dataDir, 'outbox', '00000002-lincoln-usd.eml'))).toBe(true);
    const { rows } = await db.pool.query<{ id: string; message: Record<string, unknown> }>(
      'SELECT id::text, message FROM outbox WHERE id = ANY($1::bigint[])',
      [[oldSent, olderSent, oldPending, recentSent, lateSent]],
    );
    const byId = new Map(rows.map((r) => [r.id, r.message]));
    for (const id of [oldSent, olderSent]) {
      // Who it went to, the subject and the record stay; nothing naming a student does.
      expect(byId.get(String(id))).toEqual({
        from: message.from,
        to: message.to,
        subject: message.subject,
        headers: message.headers,
        bodyRemoved: 'retention',
      });
    }
    for (const id of [oldPending, recentSent, lateSent]) expect(byId.get(String(id))).toEqual(message);

    const again = await applyRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger });
    expect(again.reportsCleared).toBe(0);
    expect(again.emlRemoved).toEqual([]);
  });

  it('keeps everything when RETENTION_DAYS is 0', async () => {
    const ancient = await copy('ancient-users.csv', daysAgo(3_000), 'succeeded');
    const result = await applyRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 0 }, pool: db.pool, clock, logger });
    expect(result).toEqual({ cutoff: null, removed: [], failed: [], reportsCleared: 0, emlRemoved: [], visibleRemoved: [] });
    expect(existsSync(path.join(dataDir, ancient.rel))).toBe(true);
  });

  it('does nothing, without failing, when no upload has arrived yet', async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'rosterd-retention-empty-'));
    try {
      const result = await applyRetention({ config: { DATA_DIR: empty, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger });
      expect(result.removed).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('runs at start when started as a task, and stops idempotently', async () => {
    const due = await copy('task-users.csv', daysAgo(90), 'superseded');
    const task = startRetention({ config: { DATA_DIR: dataDir, RETENTION_DAYS: 30 }, pool: db.pool, clock, logger }, 60_000);
    await task.stop();
    await task.stop();
    expect(existsSync(path.join(dataDir, due.rel))).toBe(false);
  });
});
