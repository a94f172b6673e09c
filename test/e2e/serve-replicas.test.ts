/**
 * Two `rosterd serve` processes on one database and one data directory (PRODUCT.md §5, §9:
 * "several replicas can share one Postgres … without importing anything twice"), 20 pending
 * uploads, the window open: each upload is imported exactly once, each report is written once,
 * and nobody is created twice.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { createTenant } from '../../src/store/tenants.js';
import { receiveUpload, useServeFixture, zoneWhereItIsNight } from '../support/serve.js';
import { waitFor } from '../support/ssh.js';

const TENANTS = 10;
const USERS_PER_TENANT = 1500;

const fx = useServeFixture('replicas');

function usersCsv(t: number): string {
  const lines = ['username,password,email,first name,last name,role,sis id'];
  for (let i = 0; i < USERS_PER_TENANT; i++) {
    const n = `d${t}u${String(i).padStart(5, '0')}`;
    // two users with a password each: the hashing workers take part too
    lines.push(`${n},${i < 2 ? `Secret-${n}` : ''},${n}@district${t}.example.org,First${i},Last${i},student,SIS-${n}`);
  }
  return lines.join('\n') + '\n';
}

it('two replicas import 20 pending uploads, each exactly once, with one report each', async () => {
  const zone = zoneWhereItIsNight();
  const tenants = Array.from({ length: TENANTS }, (_, t) => `replica-${String(t).padStart(2, '0')}`);
  const ids: string[] = [];
  const base = Date.now() - 60_000;
  for (const [t, sub] of tenants.entries()) {
    await createTenant(fx.db.pool, sub, { adminEmails: [`admin@${sub}.example`], timezone: zone });
    // users.csv, then the groups.csv pushed with it: both imported, users first
    ids.push(await receiveUpload(fx.db.pool, fx.dataDir, sub, usersCsv(t), 'users.csv', new Date(base + t * 10)));
    ids.push(
      await receiveUpload(
        fx.db.pool,
        fx.dataDir,
        sub,
        `username,owner,group\nd${t}u00000,,Band\nd${t}u00001,,Band\n`,
        'groups.csv',
        new Date(base + t * 10 + 5),
      ),
    );
  }
  expect(ids).toHaveLength(20);

  // Both at once, as an orchestrator starts replicas.
  const [a, b] = await Promise.all([fx.start(), fx.start()]);
  if (!a || !b) throw new Error('two replicas');
  // Started at once on an empty data directory, they made host keys at once, and serve the same
  // ones: a client that reaches either sees one server.
  const hostKeys = (p: typeof a) =>
    p.logs.filter((l) => l.msg === 'SFTP host key').map((l) => `${String(l.type)} ${String(l.fingerprint)}`);
  expect(hostKeys(a)).toHaveLength(2);
  expect(hostKeys(b)).toEqual(hostKeys(a));

  const done = await waitFor(
    async () => {
      const { rows } = await fx.db.pool.query<{ id: string; status: string }>(`SELECT id, status FROM uploads WHERE id = ANY($1::uuid[])`, [
        ids,
      ]);
      return rows.every((r) => !['pending', 'running'].includes(r.status)) ? rows : undefined;
    },
    90_000,
    'every upload to be imported',
  );
  expect(done.map((r) => r.status).sort()).toEqual(Array(20).fill('succeeded'));

  // Each upload: one import, by one of the two replicas, on its first attempt.
  const { rows: uploads } = await fx.db.pool.query<{ id: string; claimed_by: string; attempts: number; claim_token: string | null }>(
    `SELECT id, claimed_by, attempts, claim_token FROM uploads WHERE id = ANY($1::uuid[])`,
    [ids],
  );
  const replicas = new Set([`${os.hostname()}:${a.pid}`, `${os.hostname()}:${b.pid}`]);
  for (const u of uploads) {
    expect(replicas.has(u.claimed_by), `claimed by ${u.claimed_by}`).toBe(true);
    expect(u).toMatchObject({ attempts: 0, claim_token: null });
  }
  // Both replicas did work (otherwise this test proves nothing about two of them).
  expect(new Set(uploads.map((u) => u.claimed_by)).size, 'both replicas imported something').toBe(2);

  // Each import is logged as imported by exactly one replica.
  // (The row commits before the line is written: give the last lines a moment to arrive.)
  const importedLogs = () => [...a.logs, ...b.logs].filter((l) => l.msg === 'imported').map((l) => String(l.uploadId));
  await waitFor(() => importedLogs().length >= ids.length, 10_000, 'an "imported" log line per upload').catch(() => undefined);
  const missing = ids.filter((id) => !importedLogs().includes(id));
  const about = [...a.lines, ...b.lines].filter((line) => missing.some((id) => line.includes(id)));
  expect(importedLogs().sort(), `log lines about the uploads not logged as imported:\n${about.join('\n')}`).toEqual([...ids].sort());
  // No attempt was lost, retried or taken back.
  expect(
    [...a.logs, ...b.logs].filter((l) => /^import\.retried$/.test(String(l.event)) || /claim (lost|taken back)/.test(String(l.msg))),
  ).toEqual([]);

  // One report per upload in the outbox, each delivered once (the .eml outbox: no SMTP_URL).
  const outbox = await waitFor(
    async () => {
      const { rows } = await fx.db.pool.query<{ upload_id: string; status: string; n: number }>(
        `SELECT upload_id, min(status) AS status, count(*)::int AS n FROM outbox WHERE upload_id = ANY($1::uuid[]) GROUP BY upload_id`,
        [ids],
      );
      return rows.length === 20 && rows.every((r) => r.status === 'sent') ? rows : undefined;
    },
    30_000,
    'every report to be sent',
  );
  expect(outbox.every((r) => r.n === 1)).toBe(true);
  const eml = (await fs.readdir(path.join(fx.dataDir, 'outbox'))).filter((f) => f.endsWith('.eml'));
  expect(eml).toHaveLength(20);

  // Nobody twice: every tenant has exactly its roster, and groups hold their two members once.
  const { rows: counts } = await fx.db.pool.query<{ subdomain: string; users: number; distinct_users: number }>(
    `SELECT t.subdomain, count(u.id)::int AS users, count(DISTINCT lower(u.username))::int AS distinct_users
       FROM tenants t LEFT JOIN users u ON u.tenant_id = t.id GROUP BY t.subdomain ORDER BY t.subdomain`,
  );
  expect(counts).toEqual(tenants.map((subdomain) => ({ subdomain, users: USERS_PER_TENANT, distinct_users: USERS_PER_TENANT })));
  const { rows: counted } = await fx.db.pool.query<{ counts: { created: number } }>(
    `SELECT counts FROM uploads WHERE id = ANY($1::uuid[]) AND file_name = 'users.csv'`,
    [ids],
  );
  expect(counted.map((c) => c.counts.created)).toEqual(Array(TENANTS).fill(USERS_PER_TENANT));

  // Both stop cleanly.
  const exits = await Promise.all([a.stop(), b.stop()]);
  expect(exits).toEqual([
    { code: 0, signal: null },
    { code: 0, signal: null },
  ]);
}, 180_000);
