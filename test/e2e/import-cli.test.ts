/**
 * The import commands as an operator runs them (PRODUCT.md §7): `import list | show | approve |
 * reject`, `validate` and `export users`, as subprocesses against a real database.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportUsersJson } from '../../src/import/export.js';
import type { ImportRecord } from '../../src/import/records.js';
import { IMPORT_JSON_FIELDS, runCli } from '../support/cli.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
let env: Record<string, string>;
const H = 'username,email,first name,last name,school,access type';
let first: ImportRecord;
let held: ImportRecord;

beforeAll(async () => {
  f = await importFixture();
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent' };
  await f.addTenant('cli-usd', { timezone: 'America/Chicago' });
  await f.addTenant('other-usd');
  await f.db.pool.query(`INSERT INTO schools (tenant_id, name) SELECT id, 'Lincoln High' FROM tenants WHERE subdomain = 'cli-usd'`);
  const rows = Array.from({ length: 10 }, (_, i) => `user${i}x,u${i}@x.org,First,"Last, ${i}",Lincoln High,${i === 0 ? 'Manager' : ''}`);
  first = await f.importCsv('cli-usd', csv(H, ...rows));
  await f.importCsv('other-usd', csv('username', 'someone1'));
  held = await f.importCsv('cli-usd', csv(H, rows[0]!));
});
afterAll(async () => f?.close());

describe('import list and show', () => {
  it('list --json prints the §7 shape, newest first, filtered by tenant', async () => {
    const r = await runCli(['import', 'list', '--tenant', 'cli-usd', '--json'], env);
    expect(r.code).toBe(0);
    const list = r.json<ImportRecord[]>();
    expect(list.map((x) => x.id)).toEqual([held.id, first.id]);
    const x = list[1]!;
    for (const key of IMPORT_JSON_FIELDS) {
      expect(x).toHaveProperty(key);
    }
    expect(x).toMatchObject({ tenant: 'cli-usd', file: 'users.csv', status: 'succeeded', mode: 'full', counts: { rows: 10, created: 10 } });
    expect(x.receivedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0[56]:00$/); // Chicago time, with its offset
    const all = (await runCli(['import', 'list', '--json'], env)).json<ImportRecord[]>();
    expect(all).toHaveLength(3);
  });

  it('list without --json is a table; show prints one import', async () => {
    const list = await runCli(['import', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+TENANT\s+FILE\s+RECEIVED\s+STATUS/);
    expect(list.stdout).toContain(held.id);
    const show = await runCli(['import', 'show', held.id], env);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('status:    held');
    expect(show.stdout).toMatch(/would deactivate \(9\): user1x/);
    // As the held report counts them: an export that missed a school shows as that school's users.
    expect(show.stdout).toContain('\nby school: Lincoln High 9\n');
    const json = (await runCli(['import', 'show', held.id, '--json'], env)).json<ImportRecord>();
    expect(json).toMatchObject({ id: held.id, status: 'held', counts: { deactivated: 9 } });
    expect(json.heldDeactivations).toHaveLength(9);
    expect(json.heldBySchool).toEqual([{ school: 'Lincoln High', users: 9 }]);
    const succeeded = (await runCli(['import', 'show', first.id, '--json'], env)).json<ImportRecord>();
    expect(succeeded).not.toHaveProperty('heldBySchool');
  });

  it('list says, under the table, why a pending upload has no next run', async () => {
    await f.addTenant('noon-usd', { timezone: 'America/Chicago' });
    const pending = await f.receive('noon-usd', csv('username', 'someone1'), 'users.csv', 'pending');
    // 12:00 UTC is 06:00 or 07:00 in Chicago, never inside 18:00-06:00.
    const r = await runCli(['import', 'list', '--tenant', 'noon-usd'], { ...env, SCHEDULE_CRON: '0 12 * * *' });
    expect(r.code).toBe(0);
    const [header, row, ...rest] = r.stdout.trimEnd().split('\n');
    expect(header).toMatch(/NEXT RUN/);
    expect(row).toContain(pending);
    expect(rest.join('\n')).toContain(
      `${pending}: SCHEDULE_CRON does not fire while the window (18:00-06:00 America/Chicago) is open in the next 14 nights, so nothing is imported`,
    );
  });

  it('show of an unknown import exits 1 with a hint; a missing argument exits 2', async () => {
    const r = await runCli(['import', 'show', '1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no import has the ID.*rosterd import list/);
    expect((await runCli(['import', 'show'], env)).code).toBe(2);
  });
});

describe('approve and reject', () => {
  it('reject of an import that is not held exits 1; approve applies a held one and records who', async () => {
    const refused = await runCli(['import', 'reject', first.id, '--json'], env);
    expect(refused.code).toBe(1);
    expect(refused.json<{ error: { code: string } }>().error.code).toBe('IMPORT_NOT_HELD');
    // Reports of other imports wait in the outbox too (here: one the mail server refused once, one not tried yet).
    await f.db.pool.query(
      `INSERT INTO outbox (upload_id, message, attempts) VALUES ($1, '{"to": ["a@x.org"]}', 1), ($1, '{"to": ["a@x.org"]}', 0)`,
      [first.id],
    );
    const r = await runCli(['import', 'approve', held.id, '--by', 'jane@district', '--json'], env);
    expect(r.code).toBe(0);
    expect(r.json<ImportRecord>()).toMatchObject({ status: 'succeeded', approvedBy: 'jane@district', counts: { deactivated: 9 } });
    // No SMTP_URL in this shell: the report stays queued for `rosterd serve`, not written as a file here.
    // Only this command's own report is counted.
    expect(r.json<{ reports: unknown }>().reports).toEqual({ sent: 0, failed: 0, queued: 1 });
    await f.db.pool.query(`DELETE FROM outbox WHERE upload_id = $1`, [first.id]);
    expect(existsSync(path.join(f.dataDir, 'outbox'))).toBe(false);
    expect((await f.users('cli-usd')).filter((u) => u.active)).toHaveLength(1);
    const again = await runCli(['import', 'approve', held.id], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not held/);
  });

  it('reject discards a held import', async () => {
    const h = await f.importCsv('cli-usd', csv(H, 'user0x,u0@x.org,First,"Last, 0",Lincoln High,Manager', 'user1x,,,,,', 'user2x,,,,,'));
    expect(h.status).toBe('succeeded'); // reactivates two: nothing to hold
    const h2 = await f.importCsv('cli-usd', csv(H, 'user0x,u0@x.org,First,"Last, 0",Lincoln High,Manager'));
    expect(h2.status).toBe('held');
    const before = await f.snapshot();
    const r = await runCli(['import', 'reject', h2.id, '--by', 'jane@district'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/rejected by jane@district/);
    expect(await f.snapshot()).toBe(before);
    // Once rejected, show no longer tells anyone to approve or reject it: why it was held, and what became of it.
    const shown = await runCli(['import', 'show', h2.id, '--json'], env);
    expect(shown.json<ImportRecord>().message).toMatch(
      /^Was held: this file would deactivate 2 of 3 active users \(66\.7%\), more than the district's threshold of 10% of active users\. It was rejected, so nothing was applied\.$/,
    );
    const text = await runCli(['import', 'show', h2.id], env);
    expect(text.stdout).not.toMatch(/rosterd import (approve|reject)/);
    expect(text.stdout).toMatch(/^would have deactivated \(2\): user1x, user2x$/m);
    // The district's closing report, maybe days after the held one, says again why it was held.
    const { rows } = await f.db.pool.query<{ text: string }>(
      `SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1 ORDER BY id`,
      [h2.id],
    );
    expect(rows.at(-1)?.text.replace(/\s+/g, ' ')).toContain(
      "users.csv was held because it would deactivate 2 of 3 active users (66.7%), more than the district's threshold of 10% of " +
        'active users, and then rejected by jane@district',
    );
  });

  it('show of an approved import lists no "would deactivate": its counts say what was done', async () => {
    const r = await runCli(['import', 'show', held.id], env);
    expect(r.stdout).toMatch(/^status: {4}succeeded/m);
    expect(r.stdout).not.toMatch(/would (have )?deactivate/);
  });
});

describe('import run', () => {
  it('for a named suspended tenant says why nothing was imported, exit 1', async () => {
    await f.addTenant('asleep-usd');
    await f.receive('asleep-usd', csv('username', 'someone2'), 'users.csv', 'pending');
    await f.db.pool.query(`UPDATE tenants SET status = 'suspended' WHERE subdomain = 'asleep-usd'`);
    const r = await runCli(['import', 'run', '--now', '--tenant', 'asleep-usd'], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      'asleep-usd: nothing imported: the tenant is suspended; "rosterd tenant resume asleep-usd" lets its uploads be imported',
    );
    expect(r.stdout).not.toContain('nothing pending');
    const json = await runCli(['import', 'run', '--now', '--tenant', 'asleep-usd', '--json'], env);
    expect(json.json<{ skipped: unknown[] }>().skipped).toEqual([
      { tenant: 'asleep-usd', reason: expect.stringMatching(/^the tenant is suspended/) },
    ]);
  });
});

describe('import run --now', () => {
  it('logs and records who ran each import at once (import show, --json); a file refused whole exits 1', async () => {
    await f.addTenant('now-usd', { window: '18:00-06:00', timezone: 'Pacific/Kiritimati' });
    await f.receive('now-usd', csv('username', 'nowuser1'), 'users.csv', 'pending');
    const { LOG_LEVEL: _quiet, ...loud } = env; // the default CLI log level
    const ok = await runCli(['import', 'run', '--now', '--tenant', 'now-usd', '--by', 'ops@example.org'], loud);
    expect(ok.code, ok.stderr).toBe(0);
    // Logged as an operator's action (PRODUCT §5), at the CLI's default log level.
    expect(ok.stderr).toMatch(
      /"by":"ops@example\.org".*"msg":"import run --now: importing pending uploads whatever the window, by operator request"/,
    );
    // Each import's line says what it did; import show has the rest.
    const id = /^succeeded\s+(\S+)\s+now-usd\s+users\.csv {2}rows 1: 1 created$/m.exec(ok.stdout)?.[1];
    expect(id, ok.stdout).toBeDefined();
    const shown = await runCli(['import', 'show', id!, '--json'], env);
    expect(shown.json<ImportRecord>().requestedBy).toBe('ops@example.org');
    expect((await runCli(['import', 'show', id!], env)).stdout).toContain(
      'run now:   by ops@example.org (rosterd import run --now, whatever the window)',
    );
    // An import the schedule (or import run without --now) ran has no requester.
    expect(first.requestedBy).toBeNull();

    await f.receive('now-usd', '', 'users.csv', 'pending');
    const refused = await runCli(['import', 'run', '--now', '--tenant', 'now-usd'], env);
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.stdout).toMatch(/^failed\s+\S+\s+now-usd\s+users\.csv {2}The file is empty.*$/m);
    // --by names who runs --now; without it, there is no one to record.
    const usage = await runCli(['import', 'run', '--tenant', 'now-usd', '--by', 'ops@example.org'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--by names who runs import run --now');

    await f.receive('now-usd', csv('username', 'nowuser2', 'x'), 'users.csv', 'pending');
    const held = await runCli(['import', 'run', '--now', '--tenant', 'now-usd'], env);
    expect(held.code, held.stdout).toBe(0);
    expect(held.stdout).toMatch(
      /^held\s+\S+\s+now-usd\s+users\.csv {2}this file would deactivate 1 of 1 active users \(100%\), more than the district's threshold of 10% of active users\.$/m,
    );
  });
});

describe('import run exit code and another process', () => {
  it("exits 0 when all it finds of another tenant is a dead process's claim, taken back and said on its line", async () => {
    await f.addTenant('dead-usd');
    const dead = await f.receive('dead-usd', csv('username', 'deaduser1'), 'users.csv', 'running');
    await f.db.pool.query(
      `UPDATE uploads SET claimed_by = 'vanished-host:1', claim_token = gen_random_uuid(), claimed_at = now() - interval '1 hour',
              claim_expires_at = now() - interval '1 minute'
        WHERE id = $1`,
      [dead],
    );
    await f.addTenant('live-usd');
    await f.receive('live-usd', csv('username', 'liveuser1'), 'users.csv', 'pending');
    const r = await runCli(['import', 'run', '--now', '--tenant', 'live-usd'], env);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^will retry\\s+${dead}\\s+dead-usd\\s+users\\.csv {2}\\(expired claim taken back\\)$`, 'm'));
    expect(r.stdout).toMatch(/^succeeded\s+\S+\s+live-usd\s+users\.csv {2}rows 1: 1 created$/m);

    await f.receive('live-usd', csv('username,owner,group', 'liveuser1,,Class A'), 'groups.csv', 'pending');
    const groups = await runCli(['import', 'run', '--now', '--tenant', 'live-usd'], env);
    expect(groups.stdout).toMatch(/^succeeded\s+\S+\s+live-usd\s+groups\.csv {2}rows 1: 1 membership added$/m);
  });
});

describe('import run, uploads still arriving', () => {
  it("says when a tenant's uploads, still arriving, will be taken, in the tenant's zone as the window's opening is", async (ctx) => {
    // Open all day but the last minute of it (a window needs two ends), in which the test cannot tell settling from waiting.
    if (DateTime.now().setZone('America/Chicago').toFormat('HH:mm') === '23:59') return ctx.skip('the window closes this minute');
    await f.addTenant('settle-usd', { timezone: 'America/Chicago', window: '00:00-23:59', allowDaytime: true });
    const id = await f.receive('settle-usd', csv('username', 'settler1'), 'users.csv', 'pending');
    await f.db.pool.query(`UPDATE uploads SET received_at = now() WHERE id = $1`, [id]);
    const r = await runCli(['import', 'run', '--tenant', 'settle-usd'], { ...env, SETTLE_SECONDS: '600' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^settle-usd: 1 pending, still arriving; taken after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d C[SD]T$/m);
  });
});

describe('validate', () => {
  it('prints the report of a dry run with status validated and applies nothing', async () => {
    const file = path.join(f.dataDir, 'roster.csv');
    writeFileSync(file, csv(H, 'user0x,changed@x.org,First,Last,Lincoln High,', 'brandnew,b@x.org,B,N,,', 'bad,,,,,'));
    const before = await f.snapshot();
    const r = await runCli(['validate', file, '--tenant', 'cli-usd', '--json'], env);
    expect(r.code).toBe(1); // the file has an error
    const rec = r.json<ImportRecord>();
    expect(rec).toMatchObject({
      status: 'validated',
      file: 'roster.csv',
      mode: 'full',
      counts: { rows: 3, created: 1, updated: 1, errors: 1 },
    });
    expect(rec.errors[0]).toMatchObject({ line: 4, column: 'username', value: 'bad' });
    expect(await f.snapshot()).toBe(before);
    expect(
      (await runCli(['import', 'list', '--json'], env)).json<unknown[]>().some((x) => (x as { status: string }).status === 'validated'),
    ).toBe(false);
    const text = await runCli(['validate', file, '--tenant', 'cli-usd'], env);
    expect(text.stdout).toContain('status:    validated (full sync)');
    // No id that `import show` would then call unknown: a dry run keeps nothing.
    expect(text.stdout.split('\n')[0]).toBe('dry run (nothing applied, nothing kept)  cli-usd  roster.csv');
  });

  it('a groups*.csv file is counted in memberships, in text and --json', async () => {
    const file = path.join(f.dataDir, 'groups-fall.csv');
    writeFileSync(file, csv('username,owner,group', 'user0x,,Chess Club'));
    const r = await runCli(['validate', file, '--tenant', 'cli-usd', '--json'], env);
    expect(r.json<ImportRecord>()).toMatchObject({ file: 'groups-fall.csv', counted: 'memberships', counts: { created: 1 } });
    const text = await runCli(['validate', file, '--tenant', 'cli-usd'], env);
    expect(text.stdout).toMatch(/^counts: {4}rows 1, memberships added 1, /m);
  });

  it('a clean file exits 0; a broken file is reported failed; a missing --tenant is a usage error', async () => {
    const good = path.join(f.dataDir, 'good.csv');
    writeFileSync(good, csv(H, 'user0x,u0@x.org,First,"Last, 0",Lincoln High,Manager'));
    const ok = await runCli(['validate', good, '--tenant', 'cli-usd', '--json'], env);
    expect(ok.code).toBe(0);
    const broken = path.join(f.dataDir, 'broken.csv');
    writeFileSync(broken, 'username;email\nx;y\n');
    const r = await runCli(['validate', broken, '--tenant', 'cli-usd', '--json'], env);
    expect(r.code).toBe(1);
    expect(r.json<ImportRecord>()).toMatchObject({ status: 'failed', message: expect.stringMatching(/semicolons/) });
    // In text, the reason is said once, with its line, and no row of zero counts suggests a file without users.
    const text = await runCli(['validate', broken, '--tenant', 'cli-usd'], env);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^counts: {4}nothing applied\n\nline 1: The file is separated by semicolons, not by commas\. .*\n$/m);
    expect(text.stdout.match(/semicolons/g)).toHaveLength(1);
    expect((await runCli(['validate', good], env)).code).toBe(2);
    // a subdomain no tenant can have is the usage error it is, before the file is looked at
    const bad = await runCli(['validate', path.join(f.dataDir, 'nope.csv'), '--tenant', 'Cli_USD'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"Cli_USD" is not a valid subdomain/);
  });

  it('a file it cannot read is named with what is wrong and what to do (exit 1), in text and --json', async () => {
    const missing = path.join(f.dataDir, 'nope.csv');
    const text = await runCli(['validate', missing, '--tenant', 'cli-usd'], env);
    expect(text.code).toBe(1);
    expect(text.stdout).toBe('');
    expect(text.stderr).toBe(`rosterd: cannot read ${missing}: no such file or directory; check the path\n`);
    const json = await runCli(['validate', f.dataDir, '--tenant', 'cli-usd', '--json'], env);
    expect(json.code).toBe(1);
    expect(json.json()).toEqual({
      error: { code: 'FILE_NOT_FOUND', message: `cannot read ${f.dataDir}: it is a directory, not a file; name the file inside it` },
    });
  });

  it('a warning about the whole file is line 0 in --json and "file" in the table, as in the report', async () => {
    const latin = path.join(f.dataDir, 'latin.csv');
    writeFileSync(latin, Buffer.from('username,first name\nuser0x,Itô\n', 'latin1'));
    const rec = (await runCli(['validate', latin, '--tenant', 'cli-usd', '--json'], env)).json<ImportRecord>();
    expect(rec.warnings).toEqual([expect.objectContaining({ line: 0, message: expect.stringMatching(/read as Windows-1252/) })]);
    // The code the report's advice is keyed on is rosterd's own, not part of the §7 shape.
    expect(Object.keys(rec.warnings[0] ?? {}).sort()).toEqual(['column', 'line', 'message']);
    const text = (await runCli(['validate', latin, '--tenant', 'cli-usd'], env)).stdout;
    // No username, column or value: the whole file.
    expect(text).toMatch(/^file\s+-\s+-\s+The file is not valid UTF-8/m);
  });
});

describe('validate of a UTF-16 file', () => {
  it('as a PowerShell script writes it (Out-File, >): read as such, accents kept, nothing to warn of', async () => {
    const file = path.join(f.dataDir, 'powershell.csv');
    writeFileSync(file, Buffer.from('\uFEFFusername,first name\r\nuser0x,Itô\r\n', 'utf16le'));
    const r = await runCli(['validate', file, '--tenant', 'cli-usd', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<ImportRecord>()).toMatchObject({ status: 'validated', encoding: 'utf-16le', errors: [], warnings: [] });
  });
});

describe('export users', () => {
  it('writes the canonical header and one quoted CSV row per user, without passwords', async () => {
    const out = path.join(f.dataDir, 'export.csv');
    const r = await runCli(['export', 'users', '--tenant', 'cli-usd', '--out', out, '--json'], env);
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({ tenant: 'cli-usd', users: 10 });
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe('username,email,first name,last name,school,graduation year,access type,role,sis id,status');
    expect(lines).toHaveLength(11);
    expect(lines[1]).toBe('user0x,u0@x.org,First,"Last, 0",Lincoln High,,Manager,,,active');
    expect(lines.filter((l) => l.endsWith(',inactive'))).toHaveLength(7);
    const stdout = await runCli(['export', 'users', '--tenant', 'cli-usd'], env);
    expect(stdout.code).toBe(0);
    expect(stdout.stdout).toBe(readFileSync(out, 'utf8'));
    expect((await runCli(['export', 'users'], env)).code).toBe(2);
  });

  it('with --json and no --out prints the roster as a JSON array, in the same order as the CSV', async () => {
    const r = await runCli(['export', 'users', '--tenant', 'cli-usd', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const users = r.json<Array<Record<string, unknown>>>();
    expect(users).toHaveLength(10);
    expect(users[0]).toEqual({
      username: 'user0x',
      email: 'u0@x.org',
      firstName: 'First',
      lastName: 'Last, 0',
      school: 'Lincoln High',
      graduationYear: null,
      accessType: 'Manager',
      role: null,
      sisId: null,
      status: 'active',
    });
    const csvNames = (await runCli(['export', 'users', '--tenant', 'cli-usd'], env)).stdout
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',')[0]);
    expect(users.map((u) => u.username)).toEqual(csvNames);
    expect(users.filter((u) => u.status === 'inactive')).toHaveLength(7);
    await f.addTenant('cli-empty');
    const empty = await runCli(['export', 'users', '--tenant', 'cli-empty', '--json'], env);
    expect(empty.stdout).toBe('[]\n');
    // Page by page along the users index, as it reads a large roster: the same array.
    const paged = new PassThrough();
    const chunks: Buffer[] = [];
    paged.on('data', (c: Buffer) => chunks.push(c));
    expect(await exportUsersJson(f.db.pool, 'cli-usd', paged, { page: 3 })).toBe(10);
    expect(JSON.parse(Buffer.concat(chunks).toString('utf8'))).toEqual(users);
  });
});
