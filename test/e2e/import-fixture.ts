/**
 * What the import engine's tests share: a fresh database, a data directory, a tenant, and helpers
 * to receive a file as a claimed upload and import it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { loadConfig } from '../../src/config/config.js';
import { RosterdError } from '../../src/errors.js';
import { createPasswordHasher, type PasswordHasher } from '../../src/import/hash-pool.js';
import { runImport, type ImportContext, type RunImportOptions } from '../../src/import/run-import.js';
import { getImportRecord, type ImportRecord } from '../../src/import/records.js';
import { createLogger } from '../../src/log/logger.js';
import { processPending } from '../../src/schedule/process.js';
import { insertUpload } from '../../src/store/uploads.js';
import { createTenant, type TenantInput } from '../../src/store/tenants.js';
import type { AcceptedFileName } from '../../src/types.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

export interface UserState {
  username: string;
  email: string | null;
  first_name: string | null;
  last_name: string | null;
  school_id: number | null;
  graduation_year: number | null;
  access_type: string | null;
  role: string | null;
  sis_id: string | null;
  active: boolean;
  created_by_import: boolean;
  password_hash: string | null;
  password_check: string | null;
}

export interface QueuedReport {
  subject: string;
  text: string;
  html: string;
  attachments: Array<{ filename: string; content: string }>;
}

export interface ImportFixture {
  db: TestDatabase;
  ctx: ImportContext;
  hasher: PasswordHasher;
  dataDir: string;
  addTenant(subdomain: string, input?: TenantInput): Promise<number>;
  /** Stores `csv` as a received upload, claimed (status running), and returns its id. */
  receive(subdomain: string, csv: string | Buffer, fileName?: AcceptedFileName, status?: 'running' | 'pending'): Promise<string>;
  /** receive + runImport */
  importCsv(subdomain: string, csv: string | Buffer, fileName?: AcceptedFileName, opts?: RunImportOptions): Promise<ImportRecord>;
  /** receive (pending), then one scheduler pass for the tenant, so that its report is queued in the outbox */
  importReported(subdomain: string, csv: string | Buffer, fileName?: AcceptedFileName): Promise<ImportRecord>;
  /** The report of an upload as the outbox holds it. */
  report(uploadId: string): Promise<QueuedReport>;
  users(subdomain: string): Promise<UserState[]>;
  /** A snapshot of everything an import may change, to compare before and after. */
  snapshot(): Promise<string>;
  close(): Promise<void>;
}

export async function importFixture(): Promise<ImportFixture> {
  const db = await createTestDatabase();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-import-'));
  const config = loadConfig({ DATA_DIR: dataDir, DATABASE_URL: db.url, HASH_WORKERS: '2' });
  const hasher = createPasswordHasher({ workers: 2 });
  const ctx: ImportContext = { pool: db.pool, logger: createLogger('silent'), clock: { now: () => new Date() }, config, hasher };
  let tick = Date.now() - 3_600_000;

  const fixture: ImportFixture = {
    db,
    ctx,
    hasher,
    dataDir,
    async addTenant(subdomain, input = {}) {
      const t = await createTenant(db.pool, subdomain, { adminEmails: [`admin@${subdomain}.example.com`], ...input });
      return t.id;
    },
    async receive(subdomain, csv, fileName = 'users.csv', status = 'running') {
      const bytes = Buffer.isBuffer(csv) ? csv : Buffer.from(csv, 'utf8');
      const rel = path.join('uploads', subdomain, `${randomUUID()}.csv`);
      mkdirSync(path.join(dataDir, 'uploads', subdomain), { recursive: true });
      writeFileSync(path.join(dataDir, rel), bytes, { mode: 0o400 });
      tick += 1000; // distinct arrival times keep "newest first" well defined
      const upload = await insertUpload(db.pool, {
        tenantSubdomain: subdomain,
        fileName,
        bytes: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        storedPath: rel,
        keyFingerprint: null,
        remoteAddress: null,
        receivedAt: new Date(tick),
        status,
      });
      return upload.id;
    },
    async importCsv(subdomain, csv, fileName = 'users.csv', opts = {}) {
      return runImport(ctx, await fixture.receive(subdomain, csv, fileName), opts);
    },
    async importReported(subdomain, csv, fileName = 'users.csv') {
      const id = await fixture.receive(subdomain, csv, fileName, 'pending');
      await processPending({ ...ctx, claimedBy: 'test:1' }, { now: true, tenant: subdomain });
      const record = await getImportRecord(db.pool, id);
      if (!record) throw new Error(`import ${id} vanished`);
      return record;
    },
    async report(uploadId) {
      const { rows } = await db.pool.query<{ message: QueuedReport }>('SELECT message FROM outbox WHERE upload_id = $1', [uploadId]);
      if (!rows[0]) throw new Error(`no report of ${uploadId}`);
      return rows[0].message;
    },
    async users(subdomain) {
      const { rows } = await db.pool.query<UserState>(
        `SELECT u.username, u.email, u.first_name, u.last_name, u.school_id, u.graduation_year, u.access_type, u.role,
                u.sis_id, u.active, u.created_by_import, u.password_hash, u.password_check
           FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 ORDER BY lower(u.username)`,
        [subdomain],
      );
      return rows;
    },
    async snapshot() {
      const parts = await Promise.all(
        [
          `SELECT id, tenant_id, username, email, first_name, last_name, school_id, graduation_year, access_type, role, sis_id,
                  password_hash, password_check, active, created_by_import, updated_at, deactivated_at FROM users ORDER BY id`,
          'SELECT * FROM groups ORDER BY id',
          'SELECT group_id, user_id, import_id FROM memberships ORDER BY group_id, user_id',
        ].map((q) => db.pool.query(q).then((r) => JSON.stringify(r.rows))),
      );
      return parts.join('\n');
    },
    async close() {
      await hasher.close();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return fixture;
}

/** A users.csv from a header and rows. */
export function csv(header: string, ...rows: string[]): string {
  return [header, ...rows].join('\n') + '\n';
}

/** `username,email` rows user001 … of users `from` to `to`. */
export const users = (from: number, to: number): string[] =>
  Array.from({ length: to - from + 1 }, (_, k) => `user${String(from + k).padStart(3, '0')},u${from + k}@district.example.org`);

/** The usernames of users(from, to). */
export const names = (from: number, to: number): string[] => users(from, to).map((u) => u.split(',')[0] as string);

/** When an upload was received, as a row message says it: in the tenant's zone (by default New York's). */
export async function receivedAsSaid(f: ImportFixture, uploadId: string, zone = 'America/New_York'): Promise<string> {
  const { rows } = await f.db.pool.query<{ received_at: Date }>('SELECT received_at FROM uploads WHERE id = $1', [uploadId]);
  const at = DateTime.fromJSDate(rows[0]?.received_at ?? new Date(NaN)).setZone(zone);
  return `${at.toFormat('LLLL d, yyyy, h:mm a', { locale: 'en-US' })} (${zone})`;
}

/** The RosterdError `p` rejects with (an approval refused, say); fails the test if it resolves or throws another. */
export async function rosterdError(p: Promise<unknown>): Promise<RosterdError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RosterdError) return err;
    throw err;
  }
  throw new Error('expected a RosterdError');
}
