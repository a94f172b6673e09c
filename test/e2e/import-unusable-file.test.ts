/**
 * A full sync none of whose rows could be used fails whole (src/import/unusable-file.ts), and
 * keeps what is wrong with each row: the message says why the file was refused, and the errors
 * and warnings, as for any import, which rows to fix. A report that named only the first error
 * sent the administrator back to the SIS once per row.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRecord } from '../../src/cli/commands/import.js';
import type { ImportRecord } from '../../src/import/records.js';
import { runCli } from '../support/cli.js';
import { csv, importFixture, users, type ImportFixture, type QueuedReport } from './import-fixture.js';

let f: ImportFixture;
let env: Record<string, string>;
const T = 'unusable-usd';

beforeAll(async () => {
  f = await importFixture();
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent' };
  await f.addTenant(T, { thresholdPercent: 100 });
  await f.db.pool.query(`INSERT INTO schools (tenant_id, name) SELECT id, 'Lincoln High' FROM tenants WHERE subdomain = $1`, [T]);
  await f.importCsv(T, csv('username,email', ...users(1, 5)));
}, 120_000);
afterAll(async () => f?.close());

const importReported = (text: string) => f.importReported(T, text);
const report = (uploadId: string) => f.report(uploadId);

const attached = (mail: QueuedReport): string[][] =>
  parseCsv(mail.attachments.find((a) => a.filename === 'users-errors.csv')?.content ?? '', { bom: true }) as string[][];

describe('a users.csv none of whose rows could be used', () => {
  // Every row has an error of its own; user001 and user002 are kept (a row in error keeps its
  // user), the other three active users would go.
  const FILE = csv(
    'username,password,email,school',
    'user001,Secret-01,u1@district.example.org,Nowhere High',
    'user002,"  Secret-02 ",not-an-email,Lincoln High',
    'ab,Secret-04,ab@district.example.org,Lincoln High',
  );
  const MESSAGE =
    "None of the 3 rows of users.csv could be used (the first error, on line 2: School 'Nowhere High' does not match any school of " +
    'this district (by NCES ID, state ID or name)), so nothing was changed: applying it would have deactivated 3 of the 5 active users. ' +
    'Fix the errors and upload it again.';
  const ERRORS = [
    [2, 'school', 'Nowhere High', 'user001'],
    [3, 'email', 'not-an-email', 'user002'],
    [4, 'username', 'ab', 'ab'],
  ];
  const WARNINGS = [[3, 'password', '******', 'user002']];
  const listed = (issues: ReadonlyArray<{ line: number; column: string; value?: string; username?: string }>) =>
    issues.map((i) => [i.line, i.column, i.value, i.username]);
  let r: ImportRecord;
  let before: string;

  beforeAll(async () => {
    before = await f.snapshot();
    r = await importReported(FILE);
  });

  it('fails with the message it had, nothing applied, and keeps every row error and warning, counted', async () => {
    expect(r).toMatchObject({
      status: 'failed',
      mode: 'full',
      message: MESSAGE,
      counts: { rows: 3, created: 0, updated: 0, unchanged: 0, deactivated: 0, reactivated: 0, errors: 3, warnings: 1 },
      issuesTruncated: false,
    });
    expect(listed(r.errors)).toEqual(ERRORS);
    expect(r.errors[1]?.message).toBe('Email address is not valid: it has no @');
    expect(listed(r.warnings)).toEqual(WARNINGS);
    expect(r.warnings[0]?.code).toBe('PASSWORD_TRIMMED');
    expect(await f.snapshot()).toBe(before);
  });

  it('import show --json lists every row error with its line, column, value and username; the table too', async () => {
    const shown = await runCli(['import', 'show', r.id, '--json'], env);
    expect(shown.code, shown.stderr).toBe(0);
    const json = shown.json<ImportRecord>();
    expect(json).toMatchObject({ status: 'failed', message: MESSAGE, counts: { rows: 3, errors: 3, warnings: 1 } });
    expect(listed(json.errors)).toEqual(ERRORS);
    expect(listed(json.warnings)).toEqual(WARNINGS);
    expect(shown.stdout).not.toContain('Secret-0');
    const text = describeRecord(r);
    expect(text).toContain('counts:    nothing applied (3 rows read before the file was refused)');
    expect(text).toContain(`\n\n${MESSAGE}\n`);
    expect(text).toMatch(/^2\s+user001\s+school\s+Nowhere High\s+School 'Nowhere High' does not match/m);
    expect(text).toMatch(/^4\s+ab\s+username\s+ab\s+Username must be at least 4 characters$/m);
  });

  it('the report says why the file was refused, lists every row to fix and attaches them all', async () => {
    const mail = await report(r.id);
    expect(mail.subject).toBe(`[rosterd] ${T}: users.csv failed — nothing imported, 3 errors`);
    const text = mail.text.replace(/\s+/g, ' ');
    expect(text).toContain(`users.csv was not imported. ${MESSAGE}`);
    expect(text).toContain('Errors (3)');
    expect(text).toContain('line 3 (user002), email "not-an-email": Email address is not valid: it has no @');
    expect(text).toContain('line 3 (user002), password: The password starts or ends with spaces');
    expect(text).toContain(
      'Correct the rows in your student information system (the first ones are listed above; users-errors.csv has all of them) and upload the file again',
    );
    expect(attached(mail)).toEqual([
      ['line', 'username', 'column', 'value', 'message'],
      ['2', 'user001', 'school', 'Nowhere High', expect.stringMatching(/^School 'Nowhere High' does not match any school/)],
      ['3', 'user002', 'email', 'not-an-email', 'Email address is not valid: it has no @'],
      ['4', 'ab', 'username', 'ab', 'Username must be at least 4 characters'],
    ]);
    expect(JSON.stringify(mail)).not.toContain('Secret-0');
  });

  it('validate says the same', async () => {
    const file = path.join(f.dataDir, 'unusable-users.csv');
    writeFileSync(file, FILE);
    const dry = await runCli(['validate', file, '--tenant', T, '--json'], env);
    expect(dry.code).toBe(1);
    const json = dry.json<ImportRecord>();
    expect(json).toMatchObject({ status: 'failed', mode: 'full', message: MESSAGE, counts: { rows: 3, errors: 3, warnings: 1 } });
    expect(listed(json.errors)).toEqual(ERRORS);
    expect(listed(json.warnings)).toEqual(WARNINGS);
    expect(await f.snapshot()).toBe(before);
  });

  it('of more rows than the body lists: the body lists the first, the attachment every one', async () => {
    const rows = Array.from({ length: 25 }, (_, k) => `pupil${String(k + 1).padStart(3, '0')},bad-${k + 1}`);
    const many = await importReported(csv('username,email', ...rows));
    expect(many).toMatchObject({
      status: 'failed',
      message: expect.stringMatching(/^None of the 25 rows of users\.csv could be used \(the first error, on line 2: Email address/),
      counts: { rows: 25, errors: 25 },
    });
    expect(many.errors.map((e) => [e.line, e.username])).toEqual(rows.map((row, k) => [k + 2, row.split(',')[0]]));
    const mail = await report(many.id);
    expect(mail.subject).toBe(`[rosterd] ${T}: users.csv failed — nothing imported, 25 errors`);
    expect(mail.text).toContain('Errors (first 20 of 25)');
    expect(
      attached(mail)
        .slice(1)
        .map((c) => [Number(c[0]), c[1], c[3]]),
    ).toEqual(rows.map((row, k) => [k + 2, row.split(',')[0], `bad-${k + 1}`]));
    expect(await f.snapshot()).toBe(before);
  });
});
