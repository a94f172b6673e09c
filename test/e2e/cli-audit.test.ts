/**
 * The changes an operator makes from the command line are logged with who made them, as approve,
 * reject and import run --now are: a JSON line on stderr (LOG_LEVEL=info), never on stdout, where
 * a script reads --json, and never with a key's material.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-cli-audit-'));
  env = { DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'data'), LOG_LEVEL: 'info', SUDO_USER: 'jane' };
});

afterAll(async () => {
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** The command's log lines with an event, after checking that stdout is its JSON alone. */
function events(r: CliResult): Array<Record<string, unknown>> {
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(() => r.json(), 'stdout is the --json document alone').not.toThrow();
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => typeof l.event === 'string');
}

describe('operator actions', () => {
  it('are logged with the operator, the tenant and what changed, once per change', async () => {
    const by = `jane@${os.hostname()}`;
    expect(events(await runCli(['tenant', 'add', 'audit-usd', '--admin-email', 'it@audit.example', '--json'], env))).toEqual([
      expect.objectContaining({ level: 'info', event: 'tenant.added', by, tenant: 'audit-usd' }),
    ]);
    expect(events(await runCli(['tenant', 'update', 'audit-usd', '--threshold', '15', '--json'], env))).toEqual([
      expect.objectContaining({ event: 'tenant.updated', by, tenant: 'audit-usd', changed: ['thresholdPercent'] }),
    ]);
    expect(events(await runCli(['tenant', 'suspend', 'audit-usd', '--json'], env))).toEqual([
      expect.objectContaining({ event: 'tenant.suspended', by, tenant: 'audit-usd' }),
    ]);
    expect(events(await runCli(['tenant', 'resume', 'audit-usd', '--json'], env))).toEqual([
      expect.objectContaining({ event: 'tenant.resumed', by, tenant: 'audit-usd' }),
    ]);

    const file = path.join(dir, 'sis');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'sis@audit', '-f', file]);
    const material = readFileSync(`${file}.pub`, 'utf8').split(' ')[1] ?? '';
    const added = await runCli(['key', 'add', 'audit-usd', `${file}.pub`, '--json'], env);
    const fingerprint = added.json<{ fingerprint: string }>().fingerprint;
    expect(events(added)).toEqual([
      expect.objectContaining({ event: 'key.added', by, tenant: 'audit-usd', fingerprint, keyType: 'ssh-ed25519', bits: 256 }),
    ]);
    expect(added.stderr).not.toContain(material);
    // Nothing changed, nothing logged.
    expect(events(await runCli(['key', 'add', 'audit-usd', `${file}.pub`, '--json'], env))).toEqual([]);
    expect(events(await runCli(['key', 'revoke', fingerprint, '--json'], env))).toEqual([
      expect.objectContaining({ event: 'key.revoked', by, tenant: 'audit-usd', fingerprint }),
    ]);
    expect(events(await runCli(['key', 'revoke', fingerprint, '--json'], env))).toEqual([]);

    expect(events(await runCli(['school', 'add', 'audit-usd', '--name', 'Audit High', '--json'], env))).toEqual([
      expect.objectContaining({ event: 'school.added', by, tenant: 'audit-usd', school: 'Audit High' }),
    ]);
    expect(events(await runCli(['school', 'update', 'audit-usd', 'Audit High', '--nces', '062271003230', '--json'], env))).toEqual([
      expect.objectContaining({ event: 'school.updated', by, tenant: 'audit-usd', school: 'Audit High', changed: ['ncesId'] }),
    ]);
    const schools = path.join(dir, 'schools.csv');
    writeFileSync(schools, 'name,nces id,state id\nAudit Middle,,\n');
    expect(events(await runCli(['school', 'import', 'audit-usd', schools, '--json'], env))).toEqual([
      expect.objectContaining({ event: 'schools.imported', by, tenant: 'audit-usd', file: schools, added: 1 }),
    ]);
  });
});
