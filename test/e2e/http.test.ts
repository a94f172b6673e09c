import { EventEmitter } from 'node:events';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createMetrics, type Metrics } from '../../src/http/metrics.js';
import { observeSftp, recordImport } from '../../src/http/observe.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { createLogger } from '../../src/log/logger.js';
import type { SftpEvents } from '../../src/sftp/server.js';
import { createPool } from '../../src/store/db.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

const logger = createLogger('silent');
/** DATA_DIR as rosterd serve leaves it: with the spool folder where uploads are written. */
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-http-'));
mkdirSync(path.join(dataDir, 'spool'));
const config = { HTTP_HOST: '127.0.0.1', HTTP_PORT: 0, DATA_DIR: dataDir };

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject('adminUrl') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function get(base: string, path: string) {
  const res = await fetch(base + path);
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, json: () => JSON.parse(text) as Record<string, unknown> };
}

/** A metric's value in Prometheus text, e.g. value(text, 'rosterd_imports_total{outcome="held"}'). */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('health and metrics endpoint', () => {
  let db: TestDatabase;
  let metrics: Metrics;
  let server: HttpServer;
  let base: string;
  let sftpListening = true;

  beforeAll(async () => {
    db = await createTestDatabase();
    metrics = createMetrics({ pool: db.pool, logger });
    server = createHttpServer({ config, logger, pool: db.pool, metrics, isSftpListening: () => sftpListening });
    const { port } = await server.listen();
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await server?.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers /healthz with 200 while the process is alive', async () => {
    const res = await get(base, '/healthz');
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz with 200 when the database answers, migrations are current and SFTP listens', async () => {
    const res = await get(base, '/readyz');
    expect(res.status, res.text).toBe(200);
    expect(res.json()).toMatchObject({
      status: 'ready',
      ready: true,
      checks: { database: { ok: true }, migrations: { ok: true }, sftp: { ok: true }, dataDir: { ok: true } },
    });
  });

  it('answers /readyz with 503 naming DATA_DIR when uploads cannot be written there, and 200 once they can', async () => {
    // The spool folder, where every upload starts, replaced by a file: a write there fails as on
    // a read-only remount or a folder taken from the rosterd user (which root, running tests, would pass).
    const spool = path.join(dataDir, 'spool');
    rmSync(spool, { recursive: true });
    writeFileSync(spool, '');
    try {
      const res = await get(base, '/readyz');
      expect(res.status, res.text).toBe(503);
      expect(res.json()).toMatchObject({ ready: false, checks: { database: { ok: true }, sftp: { ok: true }, dataDir: { ok: false } } });
      expect(String(res.json().reason)).toBe(
        `DATA_DIR cannot take uploads: writing in ${spool} failed (a part of the path is a file, not a directory; check the path); ` +
          'uploads fail until it is fixed (free space, permissions for the rosterd user, a read-write mount)',
      );
    } finally {
      rmSync(spool);
      mkdirSync(spool);
    }
    const res = await get(base, '/readyz');
    expect(res.status, res.text).toBe(200);
    expect(readdirSync(spool), 'the probe leaves nothing in the spool').toEqual([]);
  });

  it('answers /readyz with 503 when DATA_DIR has less free space than an upload needs', async () => {
    const full = createHttpServer({
      config,
      logger,
      pool: db.pool,
      metrics,
      isSftpListening: () => true,
      minFreeBytes: Number.MAX_SAFE_INTEGER,
    });
    try {
      const { port } = await full.listen();
      const res = await get(`http://127.0.0.1:${port}`, '/readyz');
      expect(res.status, res.text).toBe(503);
      expect(res.json()).toMatchObject({ ready: false, checks: { dataDir: { ok: false } } });
      expect(String(res.json().reason)).toMatch(
        new RegExp(
          `^DATA_DIR ${dataDir} is nearly full: [0-9.]+ MiB free, less than the [0-9.]+ MiB uploads need; free some space or grow the volume$`,
        ),
      );
    } finally {
      await full.close();
    }
  });

  it('answers /readyz with 503 naming SFTP when the SFTP server is not listening', async () => {
    sftpListening = false;
    try {
      const res = await get(base, '/readyz');
      expect(res.status).toBe(503);
      expect(res.json()).toMatchObject({ ready: false, reason: 'the SFTP server is not listening' });
    } finally {
      sftpListening = true;
    }
  });

  it('turns /readyz 503 when the database goes away, and 200 when it comes back', async () => {
    await admin(async (c) => {
      await c.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
    });
    try {
      const down = await get(base, '/readyz');
      expect(down.status, down.text).toBe(503);
      expect(down.json()).toMatchObject({ ready: false, checks: { database: { ok: false } } });
      expect(String(down.json().reason)).toMatch(/^database unreachable: /);
      // Liveness does not depend on the database, and a scrape still succeeds without it.
      expect((await get(base, '/healthz')).status).toBe(200);
      const scrape = await get(base, '/metrics');
      expect(scrape.status).toBe(200);
      expect(value(scrape.text, 'rosterd_outbox_messages_waiting')).toBeNaN();
      expect(value(scrape.text, 'rosterd_uploads_waiting{status="held"}')).toBeNaN();
      expect(value(scrape.text, 'rosterd_clock_skew_seconds')).toBeNaN();
      expect(value(scrape.text, 'rosterd_database_up')).toBe(0);
    } finally {
      await admin((c) => c.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`));
    }
    const up = await get(base, '/readyz');
    expect(up.status, up.text).toBe(200);
  });

  it('serves Prometheus text with every rosterd metric, moved by its handle', async () => {
    metrics.sftpSessionsOpen.inc();
    metrics.authFailures.inc({ reason: 'unknown_key' });
    metrics.uploadsReceived.inc({ file: 'users.csv' });
    metrics.uploadBytesReceived.inc({ file: 'users.csv' }, 1234);
    metrics.imports.inc({ outcome: 'succeeded' });
    metrics.importDuration.observe({ file: 'users.csv', outcome: 'succeeded' }, 1.5);
    metrics.importRows.observe({ file: 'users.csv' }, 250);

    const res = await get(base, '/metrics');
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(value(res.text, 'rosterd_sftp_sessions_open')).toBe(1);
    expect(value(res.text, 'rosterd_sftp_auth_failures_total{reason="unknown_key"}')).toBe(1);
    expect(value(res.text, 'rosterd_uploads_received_total{file="users.csv"}')).toBe(1);
    expect(value(res.text, 'rosterd_uploads_received_bytes_total{file="users.csv"}')).toBe(1234);
    expect(value(res.text, 'rosterd_imports_total{outcome="succeeded"}')).toBe(1);
    expect(value(res.text, 'rosterd_import_duration_seconds_count{file="users.csv",outcome="succeeded"}')).toBe(1);
    expect(value(res.text, 'rosterd_import_rows_sum{file="users.csv"}')).toBe(250);
    expect(value(res.text, 'rosterd_outbox_messages_waiting')).toBe(0);
    expect(value(res.text, 'rosterd_outbox_oldest_waiting_age_seconds')).toBe(0);
    expect(value(res.text, 'rosterd_database_up')).toBe(1);
    expect(Math.abs(value(res.text, 'rosterd_clock_skew_seconds') ?? NaN)).toBeLessThan(1);
    expect(res.text).toContain('rosterd_process_resident_memory_bytes');
  });

  it("shows how far the process's clock is from the database's", async () => {
    const slow = createMetrics({ pool: db.pool, logger, processMetrics: false, clock: { now: () => new Date(Date.now() - 90_000) } });
    const text = await slow.registry.metrics();
    expect(value(text, 'rosterd_clock_skew_seconds')).toBeCloseTo(-90, 0);
  });

  it("reads the outbox and each tenant's last successful import from Postgres at scrape time", async () => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('lincoln-usd', 'Lincoln', ARRAY['it@lincoln.example']) RETURNING id`,
    );
    const tenantId = rows[0]?.id;
    const finished = new Date('2026-11-20T03:15:00Z');
    const upload = (status: string, finishedAt: Date | null) =>
      db.pool.query(
        `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, status, finished_at)
         VALUES ($1, 'users.csv', 10, repeat('a', 64), 'uploads/lincoln-usd/x.csv', $2, $3)`,
        [tenantId, status, finishedAt],
      );
    await upload('succeeded', new Date('2026-11-19T03:00:00Z'));
    await upload('completed_with_errors', finished);
    await upload('failed', new Date('2026-11-21T03:00:00Z'));
    await db.pool.query(`INSERT INTO outbox (message, created_at) VALUES ('{}', now() - interval '90 seconds'), ('{}', now())`);
    await db.pool.query(`INSERT INTO outbox (message, status) VALUES ('{}', 'sent')`);

    const res = await get(base, '/metrics');
    expect(value(res.text, 'rosterd_outbox_messages_waiting')).toBe(2);
    expect(value(res.text, 'rosterd_outbox_oldest_waiting_age_seconds')).toBeGreaterThanOrEqual(90);
    expect(value(res.text, 'rosterd_tenant_last_successful_import_timestamp_seconds{tenant="lincoln-usd"}')).toBe(
      finished.getTime() / 1000,
    );

    // A district whose imports never succeeded is timed from its registration, so an alert on
    // "no success for two days" fires for it too; a suspended one has no series.
    const registered = new Date('2026-11-10T12:00:00Z');
    const { rows: failing } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails, created_at) VALUES ('never-usd', 'Never', ARRAY['it@never.example'], $1) RETURNING id`,
      [registered],
    );
    await db.pool.query(
      `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, status, finished_at)
       VALUES ($1, 'users.csv', 10, repeat('a', 64), 'uploads/never-usd/x.csv', 'failed', now())`,
      [failing[0]?.id],
    );
    await db.pool.query(
      `INSERT INTO tenants (subdomain, name, admin_emails, status) VALUES ('gone-usd', 'Gone', ARRAY['it@gone.example'], 'suspended')`,
    );
    const again = await get(base, '/metrics');
    expect(value(again.text, 'rosterd_tenant_last_successful_import_timestamp_seconds{tenant="never-usd"}')).toBe(
      registered.getTime() / 1000,
    );
    expect(again.text).not.toContain('tenant="gone-usd"');
  });

  it('counts the uploads pending, running and held, whoever received them, with the age of the oldest of each', async () => {
    const before = await get(base, '/metrics');
    const held = () => value(before.text, 'rosterd_uploads_waiting{status="held"}');
    expect(held()).toBe(0); // the series is there before the first hold, for an alert on it
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('waiting-usd', 'Waiting', ARRAY['it@waiting.example']) RETURNING id`,
    );
    const upload = (status: string, ageSeconds: number) =>
      db.pool.query(
        `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, status, received_at)
         VALUES ($1, 'users.csv', 10, repeat('a', 64), 'uploads/waiting-usd/x.csv', $2, now() - make_interval(secs => $3))`,
        [rows[0]?.id, status, ageSeconds],
      );
    await upload('pending', 60);
    await upload('pending', 7200);
    await upload('held', 90_000);
    await upload('rejected', 500_000);
    const res = await get(base, '/metrics');
    expect(value(res.text, 'rosterd_uploads_waiting{status="pending"}')).toBe(2);
    expect(value(res.text, 'rosterd_uploads_waiting{status="held"}')).toBe(1);
    expect(value(res.text, 'rosterd_uploads_waiting{status="running"}')).toBe(0);
    expect(value(res.text, 'rosterd_uploads_oldest_waiting_age_seconds{status="pending"}')).toBeGreaterThanOrEqual(7200);
    expect(value(res.text, 'rosterd_uploads_oldest_waiting_age_seconds{status="pending"}')).toBeLessThan(90_000);
    expect(value(res.text, 'rosterd_uploads_oldest_waiting_age_seconds{status="held"}')).toBeGreaterThanOrEqual(90_000);
    expect(value(res.text, 'rosterd_uploads_oldest_waiting_age_seconds{status="running"}')).toBe(0);
  });

  it('does not fail a scrape when the schema is not there yet (42P01)', async () => {
    const bare = `rosterd_t_bare_${process.pid}`;
    await admin(async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${bare}`);
      await c.query(`CREATE DATABASE ${bare}`);
    });
    const url = new URL(inject('adminUrl'));
    url.pathname = `/${bare}`;
    const pool = createPool(url.toString(), logger, 2);
    const bareMetrics = createMetrics({ pool, logger, processMetrics: false });
    const bareServer = createHttpServer({ config, logger, pool, metrics: bareMetrics, isSftpListening: () => true });
    try {
      const { port } = await bareServer.listen();
      const scrape = await get(`http://127.0.0.1:${port}`, '/metrics');
      expect(scrape.status).toBe(200);
      expect(value(scrape.text, 'rosterd_outbox_messages_waiting')).toBe(0);
      expect(value(scrape.text, 'rosterd_database_up')).toBe(1);
      const ready = await get(`http://127.0.0.1:${port}`, '/readyz');
      expect(ready.status).toBe(503);
      expect(String(ready.json().reason)).toMatch(/^migrations not applied: 001_foundation/);
    } finally {
      await bareServer.close();
      await pool.end();
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${bare} WITH (FORCE)`));
    }
  });

  it('answers /readyz with 503 when DATA_DIR is on a disk that is really full (a tmpfs; needs root)', async (ctx) => {
    const small = mkdtempSync(path.join(os.tmpdir(), 'rosterd-http-full-'));
    try {
      // Tried rather than guessed: being root is not enough in a container without CAP_SYS_ADMIN.
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', small], { stdio: 'pipe' });
    } catch (err) {
      rmSync(small, { recursive: true, force: true });
      ctx.skip(`cannot mount a tmpfs as DATA_DIR (needs root or CAP_SYS_ADMIN): ${String((err as Error).message).split('\n')[0]}`);
    }
    const onSmall = createHttpServer({
      config: { ...config, DATA_DIR: small },
      logger,
      pool: db.pool,
      metrics,
      isSftpListening: () => true,
    });
    try {
      mkdirSync(path.join(small, 'spool'));
      const { port } = await onSmall.listen();
      const nearlyFull = await get(`http://127.0.0.1:${port}`, '/readyz');
      expect(nearlyFull.status, nearlyFull.text).toBe(503);
      expect(String(nearlyFull.json().reason)).toMatch(
        /^DATA_DIR .* is nearly full: [01]\.\d MiB free, less than the 64\.0 MiB uploads need/,
      );
      expect(() => writeFileSync(path.join(small, 'filler'), Buffer.alloc(2 * 1024 ** 2))).toThrow(/ENOSPC/);
      const full = await get(`http://127.0.0.1:${port}`, '/readyz');
      expect(full.status, full.text).toBe(503);
      expect(String(full.json().reason)).toMatch(/^DATA_DIR cannot take uploads: writing in .*spool failed \(the disk is full\)/);
    } finally {
      await onSmall.close();
      execFileSync('umount', [small]);
      rmSync(small, { recursive: true, force: true });
    }
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    expect((await get(base, '/nope')).status).toBe(404);
    const post = await fetch(base + '/healthz', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('turns /readyz 503 once shutdown begins, and closes idempotently', async () => {
    const other = createHttpServer({ config, logger, pool: db.pool, metrics, isSftpListening: () => true });
    const { port } = await other.listen();
    expect((await other.listen()).port).toBe(port);
    other.markShuttingDown();
    const res = await get(`http://127.0.0.1:${port}`, '/readyz');
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ reason: 'shutting down' });
    await Promise.all([other.close(), other.close()]);
    await other.close();
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it('refuses to start on a port in use, naming HTTP_PORT', async () => {
    const port = Number(new URL(base).port);
    const clash = createHttpServer({
      config: { HTTP_HOST: '127.0.0.1', HTTP_PORT: port, DATA_DIR: dataDir },
      logger,
      pool: db.pool,
      metrics,
      isSftpListening: () => true,
    });
    await expect(clash.listen()).rejects.toThrow(/HTTP_PORT .* is already in use/);
    await clash.close();
  });
});

describe("metrics moved by the SFTP server's events and by import outcomes", () => {
  it('counts sessions, refused logins and received files from SftpEvents', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const events = new EventEmitter<SftpEvents>();
    const stop = observeSftp(metrics, events);
    const session = { tenant: 'lincoln-usd', remoteAddress: '192.0.2.7' };
    events.emit('sessionOpened', session);
    events.emit('sessionOpened', session);
    events.emit('sessionClosed', { ...session, durationMs: 1200 });
    events.emit('authFailed', {
      reason: 'key-not-registered',
      remoteAddress: '192.0.2.9',
      username: 'x',
      fingerprint: null,
      method: 'publickey',
    });
    events.emit('uploadReceived', { tenant: 'lincoln-usd', fileName: 'users.csv', bytes: 2048, sha256: 'a'.repeat(64), uploadId: 'u1' });
    events.emit('uploadReceived', { tenant: 'lincoln-usd', fileName: 'users.csv', bytes: 1000, sha256: 'b'.repeat(64), uploadId: 'u2' });
    events.emit('uploadFailed', { tenant: 'lincoln-usd', fileName: 'users.csv', reason: 'cut-off' });
    stop();
    events.emit('sessionOpened', session); // no longer observed

    const text = await metrics.registry.metrics();
    expect(value(text, 'rosterd_sftp_sessions_open')).toBe(1);
    expect(value(text, 'rosterd_sftp_auth_failures_total{reason="key-not-registered"}')).toBe(1);
    expect(value(text, 'rosterd_uploads_received_total{file="users.csv"}')).toBe(2);
    expect(value(text, 'rosterd_uploads_received_bytes_total{file="users.csv"}')).toBe(3048);
    expect(value(text, 'rosterd_uploads_failed_total{reason="cut-off"}')).toBe(1);
  });

  it("records an import's outcome, duration and rows", async () => {
    const metrics = createMetrics({ processMetrics: false });
    recordImport(metrics, { file: 'users.csv', status: 'held', counts: { rows: 5000 }, durationMs: 2500 });
    recordImport(metrics, { file: 'groups.csv', status: 'failed', counts: { rows: 0 }, durationMs: null });
    const text = await metrics.registry.metrics();
    expect(value(text, 'rosterd_imports_total{outcome="held"}')).toBe(1);
    expect(value(text, 'rosterd_imports_total{outcome="failed"}')).toBe(1);
    expect(value(text, 'rosterd_import_duration_seconds_sum{file="users.csv",outcome="held"}')).toBe(2.5);
    expect(value(text, 'rosterd_import_rows_bucket{le="5000",file="users.csv"}')).toBe(1);
    // no pool: the database-backed gauges are unknown, not zero
    expect(value(text, 'rosterd_outbox_messages_waiting')).toBeNaN();
  });
});

describe('the free space of DATA_DIR', () => {
  it("is a gauge of the bytes free on DATA_DIR's file system, as statfs tells them; unknown (NaN) when it cannot be read", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-free-'));
    try {
      const stats = statfsSync(dir);
      const text = await createMetrics({ processMetrics: false, dataDir: dir }).registry.metrics();
      const free = value(text, 'rosterd_data_dir_free_bytes') ?? Number.NaN;
      // Others write to the same file system meanwhile: close, not equal.
      expect(Math.abs(free - stats.bavail * stats.bsize)).toBeLessThan(512 * 1024 ** 2);
      expect(free).toBeGreaterThan(0);
      const gone = await createMetrics({ processMetrics: false, dataDir: path.join(dir, 'missing') }).registry.metrics();
      expect(value(gone, 'rosterd_data_dir_free_bytes')).toBeNaN();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
