import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { startEmbeddedPostgres } from '../../src/store/embedded.js';
import { runCli } from '../support/cli.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-embedded-'));
const env = { DATA_DIR: dir };
const pidFile = path.join(dir, 'pg', 'postmaster.pid');
const postmasterPid = () => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : undefined);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('embedded Postgres (no DATABASE_URL)', () => {
  it('a CLI command on a fresh data directory starts it, keeps the data, and stops it afterwards', async () => {
    const r = await runCli(['tenant', 'add', 'lincoln-usd', '--admin-email', 'it@lincoln.k12.us'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(postmasterPid()).toBeUndefined();
    const list = await runCli(['tenant', 'list', '--json'], env);
    expect(list.json()).toEqual([expect.objectContaining({ subdomain: 'lincoln-usd' })]);
  });

  it('a CLI command while another process (serve) holds it connects to that server and leaves it running', async () => {
    const held = await startEmbeddedPostgres(dir, createLogger('silent'));
    const pid = postmasterPid();
    expect(pid).toBeGreaterThan(0);
    const [a, b] = await Promise.all([
      runCli(['tenant', 'add', 'oak-isd', '--admin-email', 'it@oak.org'], env),
      runCli(['tenant', 'list', '--json'], env),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(postmasterPid()).toBe(pid);
    // An error's DETAIL can quote a roster row ("Key (…)=(…)"): the embedded server leaves it out of server.log.
    const client = new pg.Client({ connectionString: held.url });
    await client.connect();
    const { rows } = await client.query<{ log_error_verbosity: string }>('SHOW log_error_verbosity');
    await client.end();
    expect(rows[0]?.log_error_verbosity).toBe('terse');
    await held.release();
    expect(postmasterPid()).toBeUndefined();
  });

  it("keeps its password out of the world's reach", () => {
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(mode(path.join(dir, 'pg.secret'))).toBe(0o600);
  });
});
