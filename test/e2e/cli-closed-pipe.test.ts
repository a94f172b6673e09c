/**
 * `rosterd export users | head -1` and the like: the reader closes the pipe before rosterd has
 * written everything. rosterd stops writing and ends normally, without an EPIPE stack trace.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli, runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-pipe-'));
  env = { DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'data') };
  const added = await runCli(['tenant', 'add', 'pipe-usd', '--admin-email', 'it@pipe.example'], env);
  expect(added.code, added.stderr).toBe(0);
  await db.pool.query(
    `INSERT INTO users (tenant_id, username, email, active)
     SELECT t.id, 'user' || n, 'user' || n || '@pipe.example', true FROM tenants t, generate_series(1, 5000) n WHERE t.subdomain = 'pipe-usd'`,
  );
});

afterAll(async () => {
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a reader that closes the pipe early', () => {
  it.each([
    ['export users, streamed', ['export', 'users', '--tenant', 'pipe-usd']],
    ['export users --json', ['export', 'users', '--tenant', 'pipe-usd', '--json']],
    ['tenant list --json', ['tenant', 'list', '--json']],
    ['import list', ['import', 'list']],
  ])('%s: exit 0 and nothing on stderr', async (_name, args) => {
    const run = startCli(args, env);
    run.child.stdout?.destroy(); // as `| head -0` would
    const r = await run.result;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
