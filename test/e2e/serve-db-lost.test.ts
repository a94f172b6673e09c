/**
 * The database connection is lost in the middle of the night (PRODUCT.md §5, issue 4): every
 * connection of `rosterd serve` is terminated by Postgres while an import is writing the roster.
 * The process survives (no uncaught error from an idle or checked-out client), the import leaves
 * nothing partial, the upload goes back to pending and is imported on a later tick, once; the SFTP
 * server keeps accepting uploads.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { createTestDatabase, rosterWriterPids, tenantUserCount, type TestDatabase } from '../support/db.js';
import { receiveUpload, startServe, writeLargeUsersCsv, zoneWhereItIsNight, type ServeProcess } from '../support/serve.js';
import { makeClientKey, sftpBatch, waitFor } from '../support/ssh.js';

const TENANT = 'dblost-usd';
const OTHER = 'dblost-other';
const ROWS = 200_000;

let db: TestDatabase;
let tmp: string;
let daemon: ServeProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-dblost-'));
});

afterAll(async () => {
  await daemon?.stop('SIGKILL').catch(() => undefined);
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function uploadRow(id: string) {
  const { rows } = await db.pool.query<{ status: string; attempts: number; last_attempt_error: string | null; claim_token: string | null }>(
    `SELECT status, attempts, last_attempt_error, claim_token FROM uploads WHERE id = $1`,
    [id],
  );
  return rows[0];
}

const userCount = (subdomain: string) => tenantUserCount(db.pool, subdomain);

const rosterWriters = async () => (await rosterWriterPids(db.pool)).length;

it('every connection terminated mid-import: the daemon lives on, nothing partial, imported later exactly once', async () => {
  const zone = zoneWhereItIsNight();
  await createTenant(db.pool, TENANT, { adminEmails: ['it@dblost.example'], timezone: zone });
  await createTenant(db.pool, OTHER, { adminEmails: ['it@dblost-other.example'], timezone: zone });
  const key = await makeClientKey(tmp, 'ed25519');
  await addKey(db.pool, OTHER, key.publicLine);
  const dataDir = path.join(tmp, 'data');
  const file = path.join(tmp, 'users.csv');
  await writeLargeUsersCsv(file, ROWS, 'lost');
  const id = await receiveUpload(db.pool, dataDir, TENANT, await fs.readFile(file));

  daemon = await startServe({ databaseUrl: db.url, dataDir });
  await waitFor(async () => (await uploadRow(id))?.status === 'running', 30_000, 'the import to start');
  await waitFor(
    async () => (await rosterWriters()) > 0 || (await uploadRow(id))?.status !== 'running',
    60_000,
    'the import to write users',
  );
  expect((await uploadRow(id))?.status, 'the import finished before the connections were cut: make the file larger').toBe('running');

  // Postgres drops every connection of the daemon (a failover, a restart, a network cut).
  // (Two steps: in one WHERE clause Postgres may call pg_terminate_backend before the other
  // conditions, and cut connections of other databases too, such as the test runner's.)
  const { rows: daemonBackends } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
  );
  expect(daemonBackends.length).toBeGreaterThan(0);
  for (const { pid } of daemonBackends) await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
  expect(await userCount(TENANT)).toBe(0);

  // The daemon lives on and keeps accepting uploads.
  await new Promise((r) => setTimeout(r, 2_000));
  expect(daemon.exit, `the daemon died:\n${daemon.dump()}`).toBeUndefined();
  const other = path.join(tmp, 'other.csv');
  await writeLargeUsersCsv(other, 5, 'other');
  const put = await sftpBatch(daemon.sftpPort, OTHER, key, [`put ${other} users.csv`]);
  expect(put.code, put.stderr).toBe(0);

  // The cut import counts as one failed attempt; a later tick imports the upload, once.
  const done = await waitFor(
    async () => {
      const r = await uploadRow(id);
      return r && !['pending', 'running'].includes(r.status) ? r : undefined;
    },
    90_000,
    'the upload to be imported again',
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}: the upload is ${JSON.stringify(await uploadRow(id))}; the daemon's log:\n${daemon?.dump() ?? ''}`);
  });
  expect(done).toMatchObject({ status: 'succeeded', attempts: 1, claim_token: null });
  expect(await userCount(TENANT)).toBe(ROWS);
  expect(daemon.logs.filter((l) => l.msg === 'imported' && l.uploadId === id)).toHaveLength(1);
  const { rows: reports } = await db.pool.query(`SELECT 1 FROM outbox WHERE upload_id = $1`, [id]);
  expect(reports).toHaveLength(1);
  await waitFor(async () => (await userCount(OTHER)) === 5, 30_000, 'the other tenant’s upload to be imported');

  expect((await fetch(`http://127.0.0.1:${daemon.httpPort}/readyz`)).status).toBe(200);
  expect(await daemon.stop(), daemon.dump()).toEqual({ code: 0, signal: null });
}, 180_000);
