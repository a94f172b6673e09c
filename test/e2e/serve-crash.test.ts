/**
 * kill -9 of `rosterd serve` in the middle of an import (PRODUCT.md §5, issue 4): the import's
 * transaction dies with the process, so nothing of it is in the roster; so does the session that
 * held its claim's lock, so another serve takes the upload back at its first tick, long before the
 * claim expires (CLAIM_TTL_SECONDS, ten minutes here), and imports it, exactly once.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { rosterWriterPids } from '../support/db.js';
import { useServeFixture, writeLargeUsersCsv, zoneWhereItIsNight } from '../support/serve.js';
import { makeClientKey, sftpBatch, waitFor } from '../support/ssh.js';

const TENANT = 'crash-usd';
const ROWS = 200_000;

const fx = useServeFixture('crash');

const start = () => fx.start({ CLAIM_TTL_SECONDS: '600' });

async function tenantUsers(): Promise<{ n: number; distinct: number }> {
  const { rows } = await fx.db.pool.query<{ n: number; distinct: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT lower(username))::int AS distinct FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1`,
    [TENANT],
  );
  return rows[0] ?? { n: -1, distinct: -1 };
}

const rosterWriters = () => rosterWriterPids(fx.db.pool);

async function uploadRow(id: string) {
  const { rows } = await fx.db.pool.query<{
    status: string;
    attempts: number;
    claimed_by: string | null;
    claim_token: string | null;
    counts: { created: number } | null;
  }>(`SELECT status, attempts, claimed_by, claim_token, counts FROM uploads WHERE id = $1`, [id]);
  return rows[0];
}

it('kill -9 during an import leaves nothing partial; another serve takes the upload back at once, long before its claim expires, and imports it once', async () => {
  await createTenant(fx.db.pool, TENANT, { adminEmails: ['it@crash.example'], timezone: zoneWhereItIsNight() });
  const key = await makeClientKey(fx.tmp, 'ed25519');
  await addKey(fx.db.pool, TENANT, key.publicLine);
  const csv = path.join(fx.tmp, 'users.csv');
  await writeLargeUsersCsv(csv, ROWS);

  const first = await start();
  const put = await sftpBatch(first.sftpPort, TENANT, key, [`put ${csv} users.csv`]);
  expect(put.code, put.stderr).toBe(0);
  const { rows: ups } = await fx.db.pool.query<{ id: string; sha256: string }>(`SELECT id, sha256 FROM uploads`);
  expect(ups).toHaveLength(1);
  const id = ups[0]?.id ?? '';
  expect(ups[0]?.sha256).toBe(
    createHash('sha256')
      .update(await fs.readFile(csv))
      .digest('hex'),
  );

  // Catch it writing the roster: claimed (running) and its transaction holding a write lock on users.
  await waitFor(async () => (await uploadRow(id))?.status === 'running', 30_000, 'the import to start');
  await waitFor(
    async () => (await rosterWriters()).length > 0 || (await uploadRow(id))?.status !== 'running',
    60_000,
    'the import to write users',
  );
  const before = await uploadRow(id);
  const killedAt = Date.now();
  await first.kill();
  expect(before?.status, 'the import finished before the kill: this run proves nothing; make the file larger').toBe('running');
  expect(first.exit?.signal).toBe('SIGKILL');

  // Its transaction dies with it (Postgres rolls it back when it notices the client gone).
  await waitFor(async () => (await rosterWriters()).length === 0, 60_000, 'the dead import’s transaction to end');
  expect(await tenantUsers()).toEqual({ n: 0, distinct: 0 });
  // Nothing recorded either: still running under the dead process's claim, no report.
  const orphan = await uploadRow(id);
  expect(orphan).toMatchObject({ status: 'running', attempts: 0, claimed_by: `${os.hostname()}:${first.pid}` });
  expect(orphan?.claim_token).not.toBeNull();
  const { rows: noReport } = await fx.db.pool.query(`SELECT 1 FROM outbox WHERE upload_id = $1`, [id]);
  expect(noReport).toHaveLength(0);

  // Another serve: its first tick finds the claim's lock free, takes the upload back and imports it.
  const second = await start();
  const takenBack = await second.waitForLog(
    (l) => l.event === 'import.claim_taken_back' && l.uploadId === id,
    60_000,
    'the dead importer’s claim to be taken back',
  );
  expect(takenBack).toMatchObject({ lapsed: 'holder_gone', claimedBy: `${os.hostname()}:${first.pid}`, attempts: 1, status: 'pending' });
  expect(Date.now() - killedAt, 'taken back long before its claim would expire').toBeLessThan(300_000);
  const done = await waitFor(
    async () => {
      const r = await uploadRow(id);
      return r && !['pending', 'running'].includes(r.status) ? r : undefined;
    },
    120_000,
    'the retry to finish',
  );
  expect(done).toMatchObject({ status: 'succeeded', attempts: 1, claimed_by: `${os.hostname()}:${second.pid}`, claim_token: null });
  expect(done.counts?.created).toBe(ROWS);
  expect(await tenantUsers()).toEqual({ n: ROWS, distinct: ROWS });
  expect(second.logs.filter((l) => l.msg === 'imported' && l.uploadId === id)).toHaveLength(1);
  // One report, for the one import.
  const outbox = await waitFor(
    async () => {
      const { rows } = await fx.db.pool.query<{ status: string }>(`SELECT status FROM outbox WHERE upload_id = $1`, [id]);
      return rows.length > 0 && rows.every((r) => r.status === 'sent') ? rows : undefined;
    },
    30_000,
    'the report',
  );
  expect(outbox).toHaveLength(1);

  expect(await second.stop(), second.dump()).toEqual({ code: 0, signal: null });
}, 240_000);
