/**
 * A new operator's first night, the way README's quick start reads, with nothing faked: the
 * `rosterd` command registers a district, its schools and its SIS's key; `rosterd serve` runs as
 * a real process against a real Postgres and a real SMTP server; the SIS pushes a realistic
 * users.csv with OpenSSH `sftp`. The import happens on the daemon's own schedule inside the
 * district's night window (PRODUCT.md §5), the administrator receives the report (§6), and
 * `import show --json` has the §7 shape. The second night pushes the same file: nothing changes
 * (§3). The daemon restarts in between and clients see the same host key (§2). At the end every
 * line the daemon wrote is scanned for passwords, private keys and roster rows (issue 5).
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMPORT_JSON_FIELDS, runCli, type ImportJson } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startServe, zoneWhereItIsNight, type ServeProcess } from '../support/serve.js';
import { startTestSmtp, type ReceivedMail, type TestSmtp } from '../support/smtp.js';
import { run, sshOptions, waitFor, type RunResult } from '../support/ssh.js';

const TENANT = 'lincoln-usd';
const ADMIN = 'it@lincoln.k12.us';
const HEADER = 'username,password,email,first name,last name,school,graduation year,role,sis id,favorite color';

/** Each valid user gets a distinct password that base64 and quoted-printable never produce ('#', '!'). */
const password = (i: number) => `Pw#${randomBytes(4).toString('hex')}!${i}`;

interface Roster {
  text: string;
  passwords: string[];
  /** data lines as written (each a full roster row) */
  rows: string[];
  validUsernames: string[];
  expectedErrors: Array<{ line: number; username: string; column: string; value?: string }>;
}

/** 30 rows: 23 valid (schools by name, NCES ID and state ID), 7 that each break one rule. */
function makeRoster(): Roster {
  const schools = ['Lincoln High', '062271003230', 'CA-ADA-02'];
  const roles = ['student', 'student', 'student', 'teacher', 'staff'];
  const rows: string[] = [];
  const passwords: string[] = [];
  const validUsernames: string[] = [];
  for (let i = 1; i <= 23; i++) {
    const n = String(i).padStart(3, '0');
    const pw = password(i);
    passwords.push(pw);
    const role = roles[i % roles.length] ?? 'student';
    const username = `stu${n}.lincoln`;
    validUsernames.push(username);
    rows.push(
      `${username},${pw},stu${n}@lincoln.k12.us,Student${n},Familyname${n},${schools[i % 3]},${role === 'student' ? 2029 + (i % 4) : ''},${role},SIS-${n},blue`,
    );
  }
  const shortPassword = 'Zq9#x';
  passwords.push(shortPassword, 'Pw#dup-one!', 'Pw#dup-two!', 'Pw#tooshortname!', 'Pw#formula!', 'Pw#school!', 'Pw#grad!');
  const bad = [
    { row: `abc,Pw#tooshortname!,abc@lincoln.k12.us,Al,Bc,Lincoln High,2030,student,SIS-900,red`, column: 'username', value: 'abc' },
    {
      row: `formula01,Pw#formula!,=cmd|' /C calc'!A0,Evil,Cell,Lincoln High,2030,student,SIS-901,red`,
      column: 'email',
      value: "=cmd|' /C calc'!A0",
    },
    {
      row: `school01,Pw#school!,school01@lincoln.k12.us,No,School,Springfield Elementary,2030,student,SIS-902,red`,
      column: 'school',
      value: 'Springfield Elementary',
    },
    {
      row: `gradyr01,Pw#grad!,gradyr01@lincoln.k12.us,Bad,Year,Lincoln High,20x9,student,SIS-903,red`,
      column: 'graduation year',
      value: '20x9',
    },
    { row: `shortpw01,${shortPassword},shortpw01@lincoln.k12.us,Short,Password,Lincoln High,2030,student,SIS-904,red`, column: 'password' },
    {
      row: `DupUser01,Pw#dup-one!,dup1@lincoln.k12.us,Dup,One,Lincoln High,2030,student,SIS-905,red`,
      column: 'username',
      value: 'DupUser01',
    },
    {
      row: `dupuser01,Pw#dup-two!,dup2@lincoln.k12.us,Dup,Two,Lincoln High,2030,student,SIS-906,red`,
      column: 'username',
      value: 'dupuser01',
    },
  ];
  // The bad rows are spread through the file, as they are in real exports.
  const expectedErrors: Roster['expectedErrors'] = [];
  const at = [3, 8, 12, 17, 21, 25, 29]; // 1-based data row positions
  bad.forEach((b, k) => rows.splice((at[k] ?? 1) - 1, 0, b.row));
  for (const b of bad) {
    const line = rows.indexOf(b.row) + 2; // header is line 1
    const username = b.row.split(',')[0] ?? '';
    expectedErrors.push(
      b.value === undefined ? { line, username, column: b.column } : { line, username, column: b.column, value: b.value },
    );
  }
  expectedErrors.sort((a, b) => a.line - b.line);
  return { text: [HEADER, ...rows].join('\r\n') + '\r\n', passwords, rows, validUsernames, expectedErrors };
}

let db: TestDatabase;
let smtp: TestSmtp;
let tmp: string;
let dataDir: string;
let zone: string;
let env: Record<string, string>;
let keyPath: string;
let knownHosts: string;
let roster: Roster;
let usersCsv: string;
const daemons: ServeProcess[] = [];

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const cli = async (...args: string[]) => {
  const r = await runCli([...args, '--json'], env);
  expect(r.code, `rosterd ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.json<unknown>();
};

/** The SIS's nightly job: OpenSSH sftp in batch mode, host key pinned in a known_hosts file. */
function sisPut(port: number, local: string, hostKeyChecking: 'accept-new' | 'yes'): Promise<RunResult> {
  // The port changes between starts; the host key, filed under one alias, must not.
  const hostKey = { checking: hostKeyChecking, knownHosts, alias: 'rosterd.journey.test' };
  return run('sftp', [...sshOptions(port, { privatePath: keyPath }, [], hostKey), '-b', '-', `${TENANT}@127.0.0.1`], {
    input: `put ${local} users.csv\n`,
  });
}

async function startDaemon(): Promise<ServeProcess> {
  const d = await startServe({
    databaseUrl: db.url,
    dataDir,
    env: { SMTP_URL: smtp.url, MAIL_FROM: 'rosterd <rosterd@rosterd.example>' },
  });
  daemons.push(d);
  return d;
}

/** Polls `rosterd import list --json` until the upload of this sha256 not yet seen has an outcome. */
async function waitForImport(known: string[]): Promise<ImportJson> {
  return waitFor(
    async () => {
      const list = (await cli('import', 'list', '--tenant', TENANT)) as ImportJson[];
      const fresh = list.find((r) => !known.includes(r.id));
      return fresh && !['pending', 'running'].includes(fresh.status) ? fresh : undefined;
    },
    60_000,
    'the daemon to import the upload',
  );
}

/** An attachment's content as text (postal-mime gives a string with attachmentEncoding utf8). */
function contentText(content: string | ArrayBuffer | Uint8Array): string {
  if (typeof content === 'string') return content;
  return Buffer.from(content instanceof Uint8Array ? content : new Uint8Array(content)).toString('utf8');
}

/** Every decoded part of a mail, plus its raw bytes: where a password must not be. */
function mailTexts(mail: ReceivedMail): string[] {
  return [
    mail.raw.toString('utf8'),
    mail.parsed.subject ?? '',
    mail.parsed.text ?? '',
    mail.parsed.html ?? '',
    ...mail.parsed.attachments.map((a) => contentText(a.content)),
  ];
}

beforeAll(async () => {
  db = await createTestDatabase();
  smtp = await startTestSmtp();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-journey-'));
  dataDir = path.join(tmp, 'data');
  knownHosts = path.join(tmp, 'known_hosts');
  zone = zoneWhereItIsNight(new Date());
  env = { DATABASE_URL: db.url, DATA_DIR: dataDir };
  roster = makeRoster();
  usersCsv = path.join(tmp, 'users.csv');
  await fs.writeFile(usersCsv, roster.text);
});

afterAll(async () => {
  for (const d of daemons) await d.stop('SIGKILL').catch(() => undefined);
  await smtp?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('a new operator’s first night', () => {
  let first: ImportJson;
  let daemon: ServeProcess;

  it('registers the district, its schools and its SIS key with the rosterd command', async () => {
    const tenant = await cli('tenant', 'add', TENANT, '--admin-email', ADMIN, '--name', 'Lincoln USD', '--timezone', zone);
    expect(tenant).toMatchObject({
      subdomain: TENANT,
      name: 'Lincoln USD',
      timezone: zone,
      adminEmails: [ADMIN],
      window: '18:00-06:00',
      status: 'active',
    });
    await cli('school', 'add', TENANT, '--name', 'Lincoln High', '--nces', '062271003230');
    await cli('school', 'add', TENANT, '--name', 'Adams Middle School', '--state-id', 'CA-ADA-02');

    keyPath = path.join(tmp, 'lincoln_sis');
    const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'sis@lincoln', '-f', keyPath]);
    expect(keygen.code, keygen.stderr).toBe(0);
    const key = (await cli('key', 'add', TENANT, `${keyPath}.pub`)) as { fingerprint: string };
    const printed = await run('ssh-keygen', ['-lf', `${keyPath}.pub`]);
    expect(printed.stdout.split(' ')[1]).toBe(key.fingerprint);
  });

  it('serve imports a users.csv pushed with OpenSSH sftp inside the night window, on its own schedule', async () => {
    daemon = await startDaemon();
    expect(daemon.logs.some((l) => l.msg === 'SFTP host key')).toBe(true);

    const put = await sisPut(daemon.sftpPort, usersCsv, 'accept-new');
    expect(put.code, put.stderr).toBe(0);
    first = await waitForImport([]);

    const shown = (await cli('import', 'show', first.id)) as ImportJson;
    const bytes = Buffer.from(roster.text);
    for (const k of IMPORT_JSON_FIELDS) {
      expect(shown, `import show --json has "${k}"`).toHaveProperty(k);
    }
    expect(shown).toMatchObject({
      id: first.id,
      tenant: TENANT,
      file: 'users.csv',
      sha256: sha256(bytes),
      bytes: bytes.length,
      status: 'completed_with_errors',
      mode: 'full',
      counts: { rows: 30, created: 23, updated: 0, unchanged: 0, deactivated: 0, reactivated: 0, errors: 7, warnings: 1 },
    });
    // receivedAt: ISO 8601 with the tenant's offset, a moment ago
    expect(shown.receivedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$/);
    const received = DateTime.fromISO(shown.receivedAt, { setZone: true });
    expect(received.offset).toBe(DateTime.now().setZone(zone).offset);
    expect(Math.abs(received.toMillis() - Date.now())).toBeLessThan(120_000);
    // errors: where, whose row, which column, the value (password masked) and a message a person understands
    expect(
      shown.errors.map((e) => ({
        line: e.line,
        username: e.username,
        column: e.column,
        ...(e.column === 'password' ? {} : { value: e.value }),
      })),
    ).toEqual(roster.expectedErrors);
    for (const e of shown.errors) expect(e.message, JSON.stringify(e)).toMatch(/\w{3,}/);
    const pwError = shown.errors.find((e) => e.column === 'password');
    expect(pwError?.value ?? '').not.toContain('Zq9');
    expect(shown.warnings).toEqual([{ line: 1, column: 'favorite color', message: expect.stringMatching(/\w{3,}/) as unknown as string }]);

    // The valid users are in the roster; the invalid rows are not.
    const { rows } = await db.pool.query<{ username: string; password_hash: string | null }>(
      `SELECT u.username, u.password_hash FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 AND u.active ORDER BY u.username`,
      [TENANT],
    );
    expect(rows.map((r) => r.username)).toEqual([...roster.validUsernames].sort());
    for (const r of rows) expect(r.password_hash).toMatch(/^\$(scrypt|argon2)/);

    // The operator's view of the same night: the process is ready and its counters moved.
    const base = `http://127.0.0.1:${daemon.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^rosterd_uploads_received_total\{file="users\.csv"\} 1$/m);
    expect(metrics).toMatch(new RegExp(`^rosterd_uploads_received_bytes_total\\{file="users\\.csv"\\} ${bytes.length}$`, 'm'));
    expect(metrics).toMatch(/^rosterd_imports_total\{outcome="completed_with_errors"\} 1$/m);
    expect(Number(/^rosterd_data_dir_free_bytes (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  }, 120_000);

  it('the administrator receives the report: subject with the counts, the error list attached as safe CSV, no password', async () => {
    const [mail] = await smtp.waitFor(1, 30_000);
    expect(mail).toBeDefined();
    if (!mail) return;
    expect(mail.rcptTo).toEqual([ADMIN]);
    expect(mail.mailFrom).toBe('rosterd@rosterd.example');
    expect(mail.parsed.subject).toBe(`[rosterd] ${TENANT}: users.csv imported with 7 errors — 23 created, 0 updated, 0 deactivated`);
    const text = mail.parsed.text ?? '';
    expect(text).toMatch(/Rows read\s+30/);
    expect(text).toMatch(/Created\s+23/);
    expect(text).toMatch(/Errors\s+7/);
    expect(text).toMatch(/Warnings\s+1/);
    expect(text).toContain(sha256(Buffer.from(roster.text)));
    expect(mail.parsed.html ?? '').toContain('users.csv');

    const attachment = mail.parsed.attachments.find((a) => a.filename === 'users-errors.csv');
    expect(attachment, `attachments: ${mail.parsed.attachments.map((a) => a.filename).join(', ')}`).toBeDefined();
    const csvText = contentText(attachment?.content ?? '');
    const cells = parseCsv(csvText, { bom: true }) as string[][];
    expect(cells[0]).toEqual(['line', 'username', 'column', 'value', 'message']);
    // Each row's username beside its line: what the administrator looks it up by in the SIS.
    expect(cells.slice(1).map((r) => [Number(r[0]), r[1], r[2]])).toEqual(roster.expectedErrors.map((e) => [e.line, e.username, e.column]));
    for (const row of cells) for (const cell of row) expect(cell, `a cell a spreadsheet would run: ${cell}`).not.toMatch(/^\s*[=+\-@\t\r]/);
    expect(cells.some((r) => r[3] === "'=cmd|' /C calc'!A0")).toBe(true);

    for (const part of mailTexts(mail))
      for (const pw of roster.passwords) expect(part.includes(pw), `password ${pw} in the report`).toBe(false);
  });

  it('the second night: the daemon restarts, the same host key greets the SIS, the same file changes nothing', async () => {
    const stopped = await daemon.stop('SIGTERM');
    expect(stopped).toEqual({ code: 0, signal: null });
    daemon = await startDaemon();

    // StrictHostKeyChecking=yes against the known_hosts of the first night: a new host key would fail here.
    const put = await sisPut(daemon.sftpPort, usersCsv, 'yes');
    expect(put.code, put.stderr).toBe(0);
    const second = await waitForImport([first.id]);
    expect(second).toMatchObject({
      tenant: TENANT,
      sha256: first.sha256,
      status: 'completed_with_errors',
      mode: 'full',
      counts: { rows: 30, created: 0, updated: 0, unchanged: 23, deactivated: 0, reactivated: 0, errors: 7, warnings: 1 },
    });
    const mails = await smtp.waitFor(2, 30_000);
    expect(mails[1]?.parsed.subject).toBe(`[rosterd] ${TENANT}: users.csv imported with 7 errors — 0 created, 0 updated, 0 deactivated`);
    for (const part of mails.flatMap(mailTexts)) for (const pw of roster.passwords) expect(part.includes(pw)).toBe(false);
    // One report per import: nothing sent twice.
    await new Promise((r) => setTimeout(r, 2000));
    expect(smtp.received).toHaveLength(2);

    // An operator running it in a terminal stops it with Ctrl-C.
    const stoppedAgain = await daemon.stop('SIGINT');
    expect(stoppedAgain).toEqual({ code: 0, signal: null });
  }, 120_000);

  it('the daemon’s whole log has no password, no private key and no roster row, and is JSON lines', async () => {
    const lines = daemons.flatMap((d) => d.lines);
    expect(lines.length).toBeGreaterThan(10);
    expect(daemons.flatMap((d) => d.nonJson).filter((l) => l.trim() !== '')).toEqual([]);
    const privateKey = await fs.readFile(keyPath, 'utf8');
    const keyBody = privateKey.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
    const hostKeyFiles = await fs.readdir(path.join(dataDir, 'host_keys')).catch(() => [] as string[]);
    const hostKeyBodies: string[] = [];
    for (const f of hostKeyFiles.filter((f) => !f.endsWith('.pub'))) {
      const text = await fs.readFile(path.join(dataDir, 'host_keys', f), 'utf8').catch(() => '');
      hostKeyBodies.push(...text.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')));
    }
    // A roster row without its password is still a roster row.
    const rowsWithoutPassword = roster.rows.map((r) =>
      r
        .split(',')
        .filter((_, i) => i !== 1)
        .join(','),
    );
    for (const [i, line] of lines.entries()) {
      const where = `log line ${i}: ${line.slice(0, 300)}`;
      for (const pw of roster.passwords) expect(line.includes(pw), `${where} has a password`).toBe(false);
      for (const row of [...roster.rows, ...rowsWithoutPassword]) expect(line.includes(row), `${where} has a roster row`).toBe(false);
      for (const k of [...keyBody, ...hostKeyBodies]) expect(line.includes(k), `${where} has a private key`).toBe(false);
    }
    // The decisions are logged: imported (twice), and the outcome of each report's delivery.
    const imported = daemons.flatMap((d) => d.logs).filter((l) => l.msg === 'imported');
    expect(imported.map((l) => l.uploadId)).toHaveLength(2);
  });
});
