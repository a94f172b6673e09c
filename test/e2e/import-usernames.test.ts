/**
 * Every row error and warning names the username of its row, as written in the file: an
 * administrator finds a row in the SIS by username, not by its line in an export. Stored with the
 * issue, printed by `import show --json` and `validate`, and shown in the report's bodies and
 * attachment; never a password, not even one a ragged line moved into the username's column.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImportRecord } from '../../src/import/records.js';
import { runCli } from '../support/cli.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
let env: Record<string, string>;

beforeAll(async () => {
  f = await importFixture();
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent' };
  await f.addTenant('names-usd', { thresholdPercent: 100 });
  await f.db.pool.query(`INSERT INTO schools (tenant_id, name) SELECT id, 'Lincoln High' FROM tenants WHERE subdomain = 'names-usd'`);
  await f.importCsv('names-usd', csv('username', 'keep0001'));
  await f.addTenant('groups-usd');
  await f.importCsv('groups-usd', csv('username,access type', 'teach001,Manager', 'admin001,Administrator', 'stud0001,', 'stud0002,'));
}, 120_000);
afterAll(async () => f?.close());

const importReported = (tenant: string, text: string, file: 'users.csv' | 'groups.csv') => f.importReported(tenant, text, file);
const report = (uploadId: string) => f.report(uploadId);

const USERS = csv(
  'username,password,email,school',
  '  jsmith01 ,Secret-01,not-an-email,Lincoln High', // 2: the username as written, trimmed
  'ab,Secret-02,ab@x.org,Lincoln High', // 3: the username in error is the row's username
  'Dup0001,Secret-03,d1@x.org,Lincoln High', // 4, 5: duplicates, found by the database
  'dup0001,Secret-04,d2@x.org,Lincoln High',
  'trim0001,"  Secret-05 ",t@x.org,Lincoln High', // 6: a warning of the reader
  'nopass01,,n@x.org,Lincoln High', // 7: a warning of the database
  '=cmd0001,Secret-07,c@x.org,Lincoln High', // 8: a username a spreadsheet would run
  'Secret-99,s@x.org', // 9: the username left out, the password moved into its column: not shown
  ',Secret-10,blank@x.org,Lincoln High', // 10: no username
  'short001,abc,s1@x.org,Nowhere School', // 11: two errors, the password's masked
  'keep0001,Secret-12,k@x.org,Lincoln High',
);

const USER_ERRORS = [
  [2, 'email', 'jsmith01'],
  [3, 'username', 'ab'],
  [4, 'username', 'Dup0001'],
  [5, 'username', 'dup0001'],
  [8, 'username', '=cmd0001'],
  [9, '', undefined],
  [10, 'username', undefined],
  [11, 'password', 'short001'],
  [11, 'school', 'short001'],
];
const USER_WARNINGS = [
  [6, 'password', 'trim0001'],
  [7, 'password', 'nopass01'],
];

describe('users.csv', () => {
  let r: ImportRecord;
  beforeAll(async () => {
    r = await importReported('names-usd', USERS, 'users.csv');
  });

  it('stores the username of each row error and warning, NULL where the row has none', async () => {
    expect(r).toMatchObject({ status: 'completed_with_errors', counts: { errors: 9, warnings: 2 } });
    expect(r.errors.map((e) => [e.line, e.column, e.username])).toEqual(USER_ERRORS);
    expect(r.warnings.map((w) => [w.line, w.column, w.username])).toEqual(USER_WARNINGS);
    const { rows } = await f.db.pool.query<{ line: number; username: string | null }>(
      `SELECT line, username FROM import_issues WHERE upload_id = $1 ORDER BY kind, line, id`,
      [r.id],
    );
    expect(rows.map((x) => [x.line, x.username])).toEqual([...USER_ERRORS, ...USER_WARNINGS].map(([line, , u]) => [line, u ?? null]));
    const stored = await f.db.pool.query(`SELECT * FROM import_issues WHERE upload_id = $1`, [r.id]);
    expect(JSON.stringify(stored.rows)).not.toMatch(/Secret-|"abc"/);
  });

  it('import show --json gives each issue its username after the fields it had, and the table a USERNAME column', async () => {
    const shown = await runCli(['import', 'show', r.id, '--json'], env);
    expect(shown.code, shown.stderr).toBe(0);
    const json = shown.json<ImportRecord>();
    expect(json.errors.map((e) => [e.line, e.column, e.username])).toEqual(USER_ERRORS);
    expect(json.warnings.map((w) => [w.line, w.column, w.username])).toEqual(USER_WARNINGS);
    expect(Object.keys(json.errors[0] ?? {})).toEqual(['line', 'column', 'message', 'value', 'username']);
    expect(json.errors[7]).toEqual({
      line: 11,
      column: 'password',
      value: '******',
      message: 'Password must be at least 6 characters',
      username: 'short001',
    });
    expect(shown.stdout).not.toMatch(/Secret-/);
    const text = (await runCli(['import', 'show', r.id], env)).stdout;
    expect(text).toMatch(/^LINE\s+USERNAME\s+COLUMN\s+VALUE\s+MESSAGE$/m);
    expect(text).toMatch(/^2\s+jsmith01\s+email\s+not-an-email\s+Email address is not valid/m);
  });

  it('the report shows the username beside the line, in the bodies and in the attachment, formula-safe and without passwords', async () => {
    const mail = await report(r.id);
    expect(mail.text).toContain('line 2 (jsmith01), email "not-an-email": Email address is not valid');
    expect(mail.text).toContain('line 4, username "Dup0001": This username appears more than once');
    expect(mail.text).toContain('line 9, -: This line has 2 values');
    expect(mail.text).toContain('line 6 (trim0001), password: The password starts or ends with spaces');
    expect(mail.html).toMatch(/<th [^>]*>Line<\/th><th [^>]*>Username<\/th><th [^>]*>Column<\/th>/);
    expect(mail.html).toMatch(/<td [^>]*>11<\/td><td [^>]*>short001<\/td><td [^>]*>password<\/td><td [^>]*>\*{6}<\/td>/);
    const attachment = mail.attachments.find((a) => a.filename === 'users-errors.csv');
    const cells = parseCsv(attachment?.content ?? '', { bom: true }) as string[][];
    expect(cells[0]).toEqual(['line', 'username', 'column', 'value', 'message']);
    expect(cells.slice(1).map((c) => [Number(c[0]), c[2], c[1]])).toEqual(
      USER_ERRORS.map(([line, column, u]) => [line, column, u === '=cmd0001' ? "'=cmd0001" : (u ?? '')]),
    );
    expect(JSON.stringify(mail)).not.toMatch(/Secret-/);
  });

  it('validate gives the same usernames, in --json and in its table', async () => {
    const file = path.join(f.dataDir, 'users-names.csv');
    writeFileSync(file, USERS);
    const dry = await runCli(['validate', file, '--tenant', 'names-usd', '--json'], env);
    expect(dry.code).toBe(1);
    const json = dry.json<ImportRecord>();
    expect(json.status).toBe('validated');
    expect(json.errors.map((e) => [e.line, e.column, e.username])).toEqual(USER_ERRORS);
    // nopass01 was created by the import above: no longer a new user without a password.
    expect(json.warnings.map((w) => [w.line, w.column, w.username])).toEqual(USER_WARNINGS.slice(0, 1));
    const text = (await runCli(['validate', file, '--tenant', 'names-usd'], env)).stdout;
    expect(text).toMatch(/^3\s+ab\s+username\s+ab\s+Username must be at least 4 characters$/m);
    expect(text).not.toMatch(/Secret-/);
  });
});

describe('a line whose values moved', () => {
  it("does not give the password that moved into the username's column as anyone's username, nor make a duplicate of it", async () => {
    // Line 3 lacks its email: its password is read where the username is. Line 4's user is named
    // like that password, ignoring case.
    const file = path.join(f.dataDir, 'users-moved.csv');
    writeFileSync(
      file,
      csv('email,username,password', 'a@x.org,alpha001,Pw-alpha-1', 'beta0001,Zq-Pass-9', 'b@x.org,zq-pass-9,Pw-gamma-1'),
    );
    const dry = await runCli(['validate', file, '--tenant', 'names-usd', '--json'], env);
    const json = dry.json<ImportRecord>();
    expect(JSON.stringify(json)).not.toMatch(/zq-pass-9/i);
    expect(json.errors.map((e) => [e.line, e.column, e.username ?? null])).toEqual([[3, '', null]]);
    expect(json.counts).toMatchObject({ rows: 3, created: 2, errors: 1 });
  });
});

describe('groups.csv', () => {
  it("each error and warning names the row's username, also when the owner is what the issue is about", async () => {
    const g = await importReported(
      'groups-usd',
      csv(
        'username,owner,group',
        'stud0001,teach001,Band',
        'stud0002,admin001,Band', // 3: the owner is not applied: the row's user is stud0002
        'nobody01,teach001,Band', // 4: no such user
        'stud0001,,', // 5: neither owner nor group (the reader's)
        ' stud0002 ,nobody02,Chess', // 6: no such owner; the username as written, trimmed
      ),
      'groups.csv',
    );
    expect(g.errors.map((e) => [e.line, e.column, e.value, e.username])).toEqual([
      [4, 'username', 'nobody01', 'nobody01'],
      [5, 'group', '', 'stud0001'],
      [6, 'owner', 'nobody02', 'stud0002'],
    ]);
    expect(g.warnings.map((w) => [w.line, w.column, w.value, w.username])).toEqual([[3, 'owner', 'admin001', 'stud0002']]);
    const mail = await report(g.id);
    expect(mail.text).toContain('line 6 (stud0002), owner "nobody02": Owner "nobody02" does not exist');
    const cells = parseCsv(mail.attachments.find((a) => a.filename === 'groups-errors.csv')?.content ?? '', { bom: true }) as string[][];
    expect(cells.map((c) => c.slice(0, 3))).toEqual([
      ['line', 'username', 'column'],
      ['4', 'nobody01', 'username'],
      ['5', 'stud0001', 'group'],
      ['6', 'stud0002', 'owner'],
    ]);
  });
});
