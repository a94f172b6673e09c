import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createLogger } from '../src/log/logger.js';
import { startEmbeddedPostgres, type EmbeddedHandle } from '../src/store/embedded.js';
import { createPool } from '../src/store/db.js';
import { migrate } from '../src/store/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDb: string;
    /** the embedded Postgres's server.log, '' when the run uses DATABASE_URL (its log is not ours) */
    pgServerLog: string;
  }
}

/**
 * One Postgres for the whole run: DATABASE_URL if set, else an embedded one in a temp dir. The
 * migrated schema is built once as a template; each test file clones it (test/support/db.ts).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const logger = createLogger('warn');
  let embedded: EmbeddedHandle | undefined;
  let dir: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-test-pg-'));
    embedded = await startEmbeddedPostgres(dir, logger);
    adminUrl = embedded.url;
  }
  const templateDb = `rosterd_template_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  // A dropped connection must not crash the runner before teardown stops the embedded Postgres.
  admin.on('error', () => undefined);
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${templateDb}`);
  await admin.query(`CREATE DATABASE ${templateDb}`);
  const url = new URL(adminUrl);
  url.pathname = `/${templateDb}`;
  const pool = createPool(url.toString(), logger, 2);
  await migrate(pool, logger);
  await pool.end();
  project.provide('adminUrl', adminUrl);
  project.provide('templateDb', templateDb);
  project.provide('pgServerLog', dir ? path.join(dir, 'pg', 'server.log') : '');
  return async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${templateDb} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
    await embedded?.release();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
}
