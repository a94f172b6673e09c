import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics, type Metrics } from '../../src/http/metrics.js';
import { observeSftp, recordImport } from '../../src/http/observe.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { createPasswordHasher, type PasswordHasher } from '../../src/import/hash-pool.js';
import { runImport } from '../../src/import/run-import.js';
import { createLogger } from '../../src/log/logger.js';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { makeClientKey, sftpBatch, startSftpServer, waitFor, type ClientKey, type TestSftpServer } from '../support/ssh.js';

/**
 * The metrics move with real events: an OpenSSH upload to the real SFTP server, a refused login,
 * and a real import of the received file; /metrics then shows them, and the tenant's last
 * successful import read from Postgres.
 */
const TENANT = 'lincoln-usd';
const logger = createLogger('silent');

describe('metrics after a real upload and import', () => {
  let db: TestDatabase;
  let tmp: string;
  let sftp: TestSftpServer;
  let http: HttpServer;
  let metrics: Metrics;
  let hasher: PasswordHasher;
  let key: ClientKey;
  let stranger: ClientKey;
  let base: string;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rosterd-http-flow-'));
    db = await createTestDatabase();
    [key, stranger] = await Promise.all([makeClientKey(tmp, 'ed25519'), makeClientKey(tmp, 'ed25519', 'stranger')]);
    await createTenant(db.pool, TENANT, { adminEmails: ['it@lincoln.example'] });
    await addKey(db.pool, TENANT, key.publicLine);
    sftp = await startSftpServer({ pool: db.pool, dataDir: path.join(tmp, 'data') });
    metrics = createMetrics({ pool: db.pool, logger, processMetrics: false });
    observeSftp(metrics, sftp.server.events);
    http = createHttpServer({
      config: { HTTP_HOST: '127.0.0.1', HTTP_PORT: 0, DATA_DIR: path.join(tmp, 'data') },
      logger,
      pool: db.pool,
      metrics,
      isSftpListening: () => true,
    });
    base = `http://127.0.0.1:${(await http.listen()).port}`;
    hasher = createPasswordHasher({ workers: 1 });
  });

  afterAll(async () => {
    await http?.close();
    await sftp?.close();
    await hasher?.close();
    await db?.drop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const scrape = async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    return (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(series + ' '));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
  };

  it('counts the received file and the refused login, and the import that follows', async () => {
    const csv =
      'username,password,email,first name,last name\nalice01,secret01,alice@lincoln.example,Alice,Able\nbobby02,secret02,bob@lincoln.example,Bob,Baker\n';
    const local = path.join(tmp, 'users.csv');
    writeFileSync(local, csv);

    const refused = await sftpBatch(sftp.port, TENANT, stranger, ['ls']);
    expect(refused.code).not.toBe(0);
    const sent = await sftpBatch(sftp.port, TENANT, key, [`put ${local} /users.csv`]);
    expect(sent.code, sent.stderr).toBe(0);

    let m = await waitFor(
      async () => {
        const got = await scrape();
        return got('rosterd_uploads_received_total{file="users.csv"}') === 1 && got('rosterd_sftp_sessions_open') === 0 ? got : undefined;
      },
      10_000,
      'the upload counted and the session closed',
    );
    expect(m('rosterd_uploads_received_bytes_total{file="users.csv"}')).toBe(Buffer.byteLength(csv));
    expect(m('rosterd_sftp_auth_failures_total{reason="key-not-registered"}')).toBeGreaterThanOrEqual(1);
    // No import yet: timed from the tenant's registration.
    const registered = (
      await db.pool.query<{ at: number }>('SELECT EXTRACT(EPOCH FROM created_at)::float8 AS at FROM tenants WHERE subdomain = $1', [TENANT])
    ).rows[0]?.at;
    expect(m(`rosterd_tenant_last_successful_import_timestamp_seconds{tenant="${TENANT}"}`)).toBe(registered);

    // The import as the scheduler runs it: claim (running), import, then record the outcome.
    const upload = (await listUploads(db.pool, { tenant: TENANT }))[0];
    expect(upload?.status).toBe('pending');
    await db.pool.query(`UPDATE uploads SET status = 'running' WHERE id = $1`, [upload?.id]);
    const config = sftp.config;
    const record = await runImport({ pool: db.pool, logger, clock: { now: () => new Date() }, config, hasher }, upload?.id ?? '');
    expect(record.status).toBe('succeeded');
    recordImport(metrics, record);

    m = await scrape();
    expect(m('rosterd_imports_total{outcome="succeeded"}')).toBe(1);
    expect(m('rosterd_import_rows_sum{file="users.csv"}')).toBe(2);
    expect(m('rosterd_import_duration_seconds_count{file="users.csv",outcome="succeeded"}')).toBe(1);
    const last = m(`rosterd_tenant_last_successful_import_timestamp_seconds{tenant="${TENANT}"}`);
    expect(last).toBeGreaterThan(Date.now() / 1000 - 60);
    // The outcome's report email waits in the outbox until the scheduler sends it (none is queued
    // here: runImport without onOutcome writes no report).
    expect(m('rosterd_outbox_messages_waiting')).toBe(0);
  });
});
