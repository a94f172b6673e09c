/**
 * The report of a night when the mail server is down (PRODUCT.md §6, issue 4 "delivery"), with
 * the whole daemon as it runs: two `rosterd serve` replicas on one database, a real SMTP server
 * that is down when the import finishes. The report waits in the outbox, is retried with backoff
 * (the first retry is due 30 s later), and arrives once the server is up: once, not once per
 * replica.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTenant } from '../../src/store/tenants.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { receiveUpload, startServe, zoneWhereItIsDay, zoneWhereItIsNight, type ServeProcess } from '../support/serve.js';
import { runCli } from '../support/cli.js';
import { startTestSmtp, type TestSmtp } from '../support/smtp.js';
import { waitFor } from '../support/ssh.js';

const TENANT = 'mail-usd';
const ADMINS = ['it@mail-usd.example', 'registrar@mail-usd.example'];

let db: TestDatabase;
let smtp: TestSmtp;
let tmp: string;
const daemons: ServeProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  smtp = await startTestSmtp();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-mail-'));
});

afterAll(async () => {
  for (const d of daemons) await d.stop('SIGKILL').catch(() => undefined);
  await smtp?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

interface OutboxRow {
  status: string;
  attempts: number;
  last_error: string | null;
}

async function outbox(uploadId: string): Promise<OutboxRow[]> {
  const { rows } = await db.pool.query<OutboxRow>(`SELECT status, attempts, last_error FROM outbox WHERE upload_id = $1 ORDER BY id`, [
    uploadId,
  ]);
  return rows;
}

it('with the mail server down the report waits, then arrives once when it is up, with two replicas sending', async () => {
  const dataDir = path.join(tmp, 'data');
  await createTenant(db.pool, TENANT, { adminEmails: ADMINS, timezone: zoneWhereItIsNight() });
  await smtp.stop(); // down before the night begins

  const env = { SMTP_URL: smtp.url, MAIL_FROM: 'rosterd <rosterd@rosterd.example>' };
  daemons.push(
    ...(await Promise.all([startServe({ databaseUrl: db.url, dataDir, env }), startServe({ databaseUrl: db.url, dataDir, env })])),
  );
  const id = await receiveUpload(
    db.pool,
    dataDir,
    TENANT,
    'username,email\nalice001,alice001@mail-usd.example\nbobby002,bobby002@mail-usd.example\n',
  );

  // Imported; its report could not be sent and waits in the outbox with the reason.
  const waiting = await waitFor(
    async () => {
      const rows = await outbox(id);
      return rows[0] && rows[0].attempts >= 1 && rows[0].last_error !== null ? rows : undefined;
    },
    30_000,
    'a first, failed, delivery attempt',
  );
  expect(waiting).toHaveLength(1);
  expect(waiting[0]).toMatchObject({ status: 'pending', attempts: 1 });
  expect(waiting[0]?.last_error).toMatch(/ECONNREFUSED|connect/i);
  const { rows: up } = await db.pool.query<{ status: string }>(`SELECT status FROM uploads WHERE id = $1`, [id]);
  expect(up[0]?.status).toBe('succeeded');
  // Both replicas tick every second, but nobody retries before the backoff says so.
  await new Promise((r) => setTimeout(r, 5_000));
  expect((await outbox(id))[0]).toMatchObject({ status: 'pending', attempts: 1 });

  await smtp.start();
  const [mail] = await smtp.waitFor(1, 60_000);
  expect(mail?.rcptTo.sort()).toEqual([...ADMINS].sort());
  expect(mail?.parsed.subject).toBe(`[rosterd] ${TENANT}: users.csv imported — 2 created, 0 updated, 0 deactivated`);
  const sent = await waitFor(
    async () => ((await outbox(id))[0]?.status === 'sent' ? outbox(id) : undefined),
    10_000,
    'the outbox to say sent',
  );
  expect(sent).toEqual([{ status: 'sent', attempts: 2, last_error: null }]);

  // Once: a few more ticks of both replicas send nothing more.
  await new Promise((r) => setTimeout(r, 3_000));
  expect(smtp.received).toHaveLength(1);
  const delivered = daemons.flatMap((d) => d.logs).filter((l) => l.event === 'report.delivered' && l.uploadId === id);
  expect(delivered).toHaveLength(1);

  const exits = await Promise.all(daemons.map((d) => d.stop()));
  expect(exits).toEqual([
    { code: 0, signal: null },
    { code: 0, signal: null },
  ]);
}, 120_000);

it('a report queued by an operator command from a shell without SMTP_URL is mailed by the daemon, not written as a file', async () => {
  // Before the fix, `import run` (or approve) wrote every due report to DATA_DIR/outbox as .eml and
  // marked it sent, so a daemon with a mail server never mailed it.
  const dataDir = path.join(tmp, 'data-cli');
  await createTenant(db.pool, 'cli-mail-usd', { adminEmails: ['it@cli-mail-usd.example'], timezone: zoneWhereItIsDay() });
  smtp.received.length = 0;
  // Ticks once a year: only the delivery between ticks can send it.
  const daemon = await startServe({
    databaseUrl: db.url,
    dataDir,
    env: { SMTP_URL: smtp.url, MAIL_FROM: 'rosterd <rosterd@rosterd.example>', SCHEDULE_CRON: '0 0 1 1 *' },
  });
  daemons.push(daemon);
  const id = await receiveUpload(db.pool, dataDir, 'cli-mail-usd', 'username,email\ncarol003,carol003@cli-mail-usd.example\n');
  const r = await runCli(['import', 'run', '--now', '--tenant', 'cli-mail-usd'], {
    DATABASE_URL: db.url,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
  });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain(`succeeded             ${id}  cli-mail-usd  users.csv`);
  expect(r.stdout).toMatch(/reports: \d+ queued; rosterd serve sends them within seconds/);
  const [mail] = await smtp.waitFor(1, 30_000);
  expect(mail?.rcptTo).toEqual(['it@cli-mail-usd.example']);
  expect(await fs.readdir(path.join(dataDir, 'outbox')).catch(() => [])).toEqual([]);
  // Marked sent once the server's answer is in: just after the server has the message.
  await waitFor(async () => (await outbox(id))[0]?.status === 'sent', 10_000, 'the report marked sent');
  expect(await daemon.stop()).toEqual({ code: 0, signal: null });
}, 60_000);
