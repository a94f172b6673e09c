import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { zipArchive } from '../support/zip.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

/**
 * The operator CLI on input people get wrong: numbers, options that change nothing, key files that
 * are not OpenSSH public keys, schools files with several bad lines, and --json on every usage
 * error (PRODUCT.md §1, §7).
 */
let db: TestDatabase;
let dir: string;
let env: Record<string, string>;

function keygen(type: string, bits?: number): string {
  const file = path.join(dir, `key-${type}-${Math.random().toString(36).slice(2)}`);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', 'sis@district', '-f', file]);
  return `${file}.pub`;
}

const fingerprintBySshKeygen = (pub: string, hash = 'sha256') =>
  execFileSync('ssh-keygen', ['-l', '-E', hash, '-f', pub]).toString().split(' ')[1] ?? '';

async function count(table: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]?.n ?? -1;
}

beforeAll(async () => {
  db = await createTestDatabase();
  dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-cli-input-'));
  env = { DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'data') };
  const r = await runCli(['tenant', 'add', 'alpha', '--admin-email', 'it@alpha.example'], env);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('tenant thresholds', () => {
  it('stores a percentage with decimals, and refuses more decimals than the column keeps instead of rounding', async () => {
    const add = await runCli(['tenant', 'add', 'frac', '--admin-email', 'a@b.org', '--threshold', '2.5', '--json'], env);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(add.json()).toMatchObject({ thresholdPercent: 2.5 });
    const tooFine = await runCli(['tenant', 'update', 'frac', '--threshold', '10.555', '--json'], env);
    expect(tooFine.code).toBe(2);
    expect(tooFine.json()).toEqual({
      error: { code: 'USAGE', message: expect.stringMatching(/--threshold takes at most 2 decimal places/) },
    });
    const shown = await runCli(['tenant', 'show', 'frac', '--json'], env);
    expect(shown.json()).toMatchObject({ thresholdPercent: 2.5 });
    const update = await runCli(['tenant', 'update', 'frac', '--threshold', '12.75', '--json'], env);
    expect(update.json()).toMatchObject({ thresholdPercent: 12.75 });
  });

  it.each([
    [['--threshold', ''], /--threshold must be a plain decimal number .*not ""/],
    [['--threshold', '0x10'], /--threshold must be a plain decimal number .*not "0x10"/],
    [['--threshold', '.5'], /--threshold must be a plain decimal number/],
    [['--threshold', '1e1'], /--threshold must be a plain decimal number/],
    [['--threshold-count', ''], /--threshold-count must be a whole number from 0 to 2147483647, or "none" .*, not ""/],
    [['--threshold-count', '99999999999'], /--threshold-count must be a whole number from 0 to 2147483647/],
    [['--threshold-count', '0x10'], /--threshold-count must be a whole number/],
    [['--threshold-count', '1.0'], /--threshold-count must be a whole number/],
    // "none" is accepted too (no count limit): the error says so, as it does the numbers.
    [
      ['--threshold-count', 'None'],
      /--threshold-count must be a whole number from 0 to 2147483647, or "none" for no limit on the count \(only --threshold holds an import\), not "None"/,
    ],
  ])('refuses %j with a usage error (exit 2), writing nothing', async (option, message) => {
    const before = await count('tenants');
    const r = await runCli(['tenant', 'add', 'strict', '--admin-email', 'a@b.org', ...option], env);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/INTERNAL|\n\s+at /);
    expect(await count('tenants')).toBe(before);
  });
});

describe('tenant options that would change nothing', () => {
  it('refuses tenant update without a change, and --allow-daytime without --window (exit 2)', async () => {
    const before = await runCli(['tenant', 'show', 'alpha', '--json'], env);
    const none = await runCli(['tenant', 'update', 'alpha'], env);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/nothing to change: give at least one of --admin-email, --name, --timezone, --window/);
    const daytime = await runCli(['tenant', 'update', 'alpha', '--allow-daytime', '--json'], env);
    expect(daytime.code).toBe(2);
    expect(daytime.json()).toMatchObject({ error: { message: expect.stringMatching(/--allow-daytime only applies with --window/) } });
    expect((await runCli(['tenant', 'show', 'alpha', '--json'], env)).json()).toEqual(before.json());
    const added = await runCli(['tenant', 'add', 'day-flag', '--admin-email', 'a@b.org', '--allow-daytime'], env);
    expect(added.code).toBe(2);
    expect(added.stderr).toMatch(/--allow-daytime only applies with --window/);
  });
});

describe('a window SCHEDULE_CRON never fires in', () => {
  it('is accepted with a warning that says its uploads would wait for ever, on add and update', async () => {
    // The default */5 fires at 02:00 and 02:05, never inside 02:01-02:04.
    const add = await runCli(['tenant', 'add', 'narrow', '--admin-email', 'a@b.org', '--window', '02:01-02:04'], env);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain(
      'warning: SCHEDULE_CRON "*/5 * * * *" (as configured here) does not fire while the window 02:01-02:04 America/New_York is open',
    );
    const json = await runCli(['tenant', 'update', 'narrow', '--timezone', 'America/Chicago', '--json'], env);
    expect(json.json()).toMatchObject({ window: '02:01-02:04', scheduleWarning: expect.stringMatching(/does not fire while the window/) });
    const wide = await runCli(['tenant', 'update', 'narrow', '--window', '02:00-04:00', '--json'], env);
    expect(wide.json()).toMatchObject({ window: '02:00-04:00', scheduleWarning: null });
    const text = await runCli(['tenant', 'show', 'narrow'], env);
    expect(text.stdout).not.toContain('warning');
  });
});

describe('tenant values as typed', () => {
  it('stores each admin email once, trimmed, and the canonical zone name', async () => {
    const r = await runCli(
      [
        'tenant',
        'add',
        'norm',
        '--admin-email',
        ' IT@Norm.example ',
        '--admin-email',
        'it@norm.example',
        '--admin-email',
        'b@norm.example',
        '--timezone',
        'america/chicago',
        '--json',
      ],
      env,
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ adminEmails: ['IT@Norm.example', 'b@norm.example'], timezone: 'America/Chicago' });
    const utc = await runCli(['tenant', 'update', 'norm', '--timezone', 'utc', '--json'], env);
    expect(utc.json()).toMatchObject({ timezone: 'UTC' });
    // Current IANA names are kept, not turned into the old aliases Node's ICU resolves them to.
    for (const zone of ['Asia/Kolkata', 'Europe/Kyiv', 'Asia/Ho_Chi_Minh']) {
      const r = await runCli(['tenant', 'update', 'norm', '--timezone', zone, '--json'], env);
      expect(r.json(), zone).toMatchObject({ timezone: zone });
    }
  });

  it('refuses an abbreviation (EST, CST…), saying which region to use, and changes nothing (exit 2)', async () => {
    const est = await runCli(['tenant', 'add', 'est-usd', '--admin-email', 'a@b.org', '--timezone', 'EST'], env);
    expect(est.code).toBe(2);
    expect(est.stderr).toMatch(
      /"EST" is not a region's time zone: it is UTC-5 all year, with no daylight saving time; for Eastern time use America\/New_York/,
    );
    const mst = await runCli(['tenant', 'update', 'norm', '--timezone', 'mst', '--json'], env);
    expect(mst.code).toBe(2);
    expect(mst.json()).toMatchObject({
      error: { code: 'INVALID_TIMEZONE', message: expect.stringMatching(/America\/Phoenix for Arizona/) },
    });
    expect((await runCli(['tenant', 'show', 'norm', '--json'], env)).json()).toMatchObject({ timezone: 'Asia/Ho_Chi_Minh' });
    expect((await runCli(['tenant', 'show', 'est-usd'], env)).code).toBe(1);
  });

  it('caps the display name at 200 characters (exit 2)', async () => {
    const r = await runCli(['tenant', 'add', 'long-name', '--admin-email', 'a@b.org', '--name', 'x'.repeat(201)], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/201 characters; use at most 200/);
    const ok = await runCli(['tenant', 'add', 'long-name', '--admin-email', 'a@b.org', '--name', 'x'.repeat(200)], env);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe('--json on the usage errors commander finds', () => {
  it.each([
    [['tenant', 'add', '--json'], /missing required argument 'subdomain'.*rosterd tenant add --help/],
    [['tenant', 'add', 'x', '--admin-email', 'a@b.org', '--bogus', '--json'], /unknown option '--bogus'/],
    [['school', 'add', 'alpha', '--json'], /required option '--name <name>' not specified/],
    [['tenant', 'frobnicate', '--json'], /unknown command 'frobnicate'/],
    [['tenant', '--json'], /a command is missing after "rosterd tenant"/],
  ])('%j prints the JSON error, exit 2', async (args, message) => {
    const r = await runCli(args, env);
    expect(r.code).toBe(2);
    expect(r.json()).toEqual({ error: { code: 'USAGE', message: expect.stringMatching(message) } });
    expect(r.stderr).toBe('');
  });

  it('without --json, commander still explains on stderr', async () => {
    const r = await runCli(['tenant', 'add'], env);
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toMatch(/missing required argument 'subdomain'/);
  });
});

describe('key add with the wrong file', () => {
  it('names what the file is and how to get the public key, writing nothing', async () => {
    const before = await count('ssh_keys');
    const ppk = path.join(dir, 'key.ppk');
    writeFileSync(
      ppk,
      'PuTTY-User-Key-File-3: ssh-ed25519\r\nEncryption: none\r\nComment: eddsa-key-20261121\r\nPublic-Lines: 2\r\nAAAA\r\nBBBB\r\nPrivate-Lines: 1\r\nCCCC\r\nPrivate-MAC: 00\r\n',
    );
    const rsa = keygen('rsa', 2048);
    const pem = path.join(dir, 'key.pem');
    writeFileSync(pem, execFileSync('ssh-keygen', ['-e', '-m', 'PKCS8', '-f', rsa]));
    const user = keygen('ed25519');
    const ca = keygen('ed25519').replace(/\.pub$/, '');
    execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', 'sis', '-n', 'alpha', user]);
    const cert = user.replace(/\.pub$/, '-cert.pub');
    const folder = path.join(dir, 'a-folder');
    mkdirSync(folder);
    const cases: [string, string, RegExp][] = [
      [
        ppk,
        'KEY_INVALID',
        /PuTTY private key.*PuTTYgen.*Public key for pasting into OpenSSH authorized_keys file.*puttygen key\.ppk -O public-openssh/,
      ],
      [pem, 'KEY_INVALID', /PEM \(PKCS#8\) public key.*ssh-keygen -i -m PKCS8 -f key\.pem/],
      [cert, 'KEY_INVALID', /SSH certificate \(ssh-ed25519-cert-v01@openssh\.com\).*plain public key.*not id_ed25519-cert\.pub/],
      [path.join(dir, 'missing.pub'), 'FILE_NOT_FOUND', /cannot read key file .*missing\.pub: no such file or directory; check the path/],
      [folder, 'FILE_NOT_FOUND', /cannot read key file .*a-folder: it is a directory, not a file/],
    ];
    for (const [file, code, message] of cases) {
      const r = await runCli(['key', 'add', 'alpha', file, '--json'], env);
      expect(r.code, file).toBe(1);
      expect(r.json(), file).toEqual({ error: { code, message: expect.stringMatching(message) } });
    }
    expect(await count('ssh_keys')).toBe(before);
  });

  it.each([
    ['UTF-16 LE with a BOM (PowerShell >)', (line: string) => Buffer.from(`\uFEFF${line}\r\n`, 'utf16le')],
    ['UTF-16 BE with a BOM', (line: string) => Buffer.from(`\uFEFF${line}\r\n`, 'utf16le').swap16()],
    ['UTF-8 with a BOM', (line: string) => Buffer.from(`\uFEFF${line}\n`, 'utf8')],
  ])('reads a key saved as %s', async (_, encode) => {
    const pub = keygen('ed25519');
    const file = path.join(dir, 'encoded.pub');
    writeFileSync(file, encode(readFileSync(pub, 'utf8').trim()));
    const r = await runCli(['key', 'add', 'alpha', file, '--json'], env);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ fingerprint: fingerprintBySshKeygen(pub), comment: 'sis@district' });
  });
});

describe('a subdomain no tenant can have', () => {
  it('is a usage error (exit 2) in every command that names a tenant, as in tenant add, not "no tenant"', async () => {
    const [keys, schools] = [await count('ssh_keys'), await count('schools')];
    const pub = keygen('ed25519');
    const users = path.join(dir, 'typo-users.csv');
    writeFileSync(users, 'username\nsomeone1\n');
    const commands = [
      ['tenant', 'show', 'Alpha'],
      ['tenant', 'update', 'Alpha', '--name', 'Alpha'],
      ['tenant', 'suspend', 'Alpha'],
      ['key', 'add', 'Alpha', pub],
      ['key', 'list', 'Alpha'],
      ['school', 'add', 'Alpha', '--name', 'Alpha High'],
      ['school', 'import', 'Alpha', users],
      ['school', 'list', 'Alpha'],
      ['import', 'list', '--tenant', 'Alpha'],
      ['import', 'run', '--now', '--tenant', 'Alpha'],
      ['validate', users, '--tenant', 'Alpha'],
      ['export', 'users', '--tenant', 'Alpha'],
    ];
    for (const args of commands) {
      // import run reads received files, so it wants a DATA_DIR that exists.
      const r = await runCli([...args, '--json'], { ...env, DATA_DIR: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.json(), args.join(' ')).toEqual({
        error: {
          code: 'INVALID_SUBDOMAIN',
          message: expect.stringMatching(/^"Alpha" is not a valid subdomain: use 1-63 lowercase letters/),
        },
      });
    }
    expect(await count('ssh_keys')).toBe(keys);
    expect(await count('schools')).toBe(schools);
  });

  it('key add with the file first says the tenant comes first (exit 2) instead of reading the tenant as the file', async () => {
    const before = await count('ssh_keys');
    const pub = keygen('ed25519');
    const r = await runCli(['key', 'add', pub, 'alpha'], env);
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toBe(`rosterd: the tenant comes first: rosterd key add alpha ${pub}\n`);
    expect(await count('ssh_keys')).toBe(before);
  });
});

describe('key revoke', () => {
  it('says a key was already revoked, takes a lower-case sha256: prefix, and refuses MD5 and empty fingerprints', async () => {
    const pub = keygen('ed25519');
    const fp = fingerprintBySshKeygen(pub);
    expect((await runCli(['key', 'add', 'alpha', pub], env)).code).toBe(0);
    const first = await runCli(['key', 'revoke', fp.replace(/^SHA256:/, 'sha256:'), '--json'], env);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const revokedAt = first.json<{ revokedAt: string; alreadyRevoked: boolean }>();
    expect(revokedAt).toMatchObject({ fingerprint: fp, alreadyRevoked: false, revokedAt: expect.any(String) });
    const again = await runCli(['key', 'revoke', fp], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(
      new RegExp(`^${fp.replace(/[+/]/g, '\\$&')} of alpha was already revoked \\(at \\d{4}-\\d\\d-\\d\\dT.*\\); nothing changed`),
    );
    const againJson = await runCli(['key', 'revoke', fp, '--json'], env);
    expect(againJson.json()).toMatchObject({ alreadyRevoked: true, revokedAt: revokedAt.revokedAt });

    // A whole line pasted from ssh-keygen -lf, or from key add's output, names the same key.
    const lines = [execFileSync('ssh-keygen', ['-lf', pub]).toString().trim(), `${fp} sis@district (ED25519 256) added to alpha`];
    for (const line of lines) {
      const pasted = await runCli(['key', 'revoke', line, '--json'], env);
      expect(pasted.code, line).toBe(0);
      expect(pasted.json(), line).toMatchObject({ fingerprint: fp, alreadyRevoked: true });
    }

    const md5 = fingerprintBySshKeygen(pub, 'md5');
    for (const given of [md5, md5.replace(/^MD5:/, '')]) {
      const r = await runCli(['key', 'revoke', given], env);
      expect(r.code, given).toBe(2);
      expect(r.stderr, given).toMatch(/is an MD5 fingerprint; .*SHA256: fingerprint, which "rosterd key list" shows/);
      expect(r.stderr).not.toMatch(/SHA256:MD5/);
    }
    const empty = await runCli(['key', 'revoke', ''], env);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/give the key's SHA256: fingerprint/);
  });
});

describe('school import', () => {
  it('reports an unknown tenant before reading the file', async () => {
    const file = path.join(dir, 'schools-any.csv');
    writeFileSync(file, 'name\nOak\n');
    const r = await runCli(['school', 'import', 'nobody', file, '--json'], env);
    expect(r.code).toBe(1);
    expect(r.json()).toEqual({ error: { code: 'TENANT_NOT_FOUND', message: expect.stringMatching(/^no tenant "nobody"/) } });
  });

  it('refuses a header with two name columns', async () => {
    const file = path.join(dir, 'schools-two-names.csv');
    writeFileSync(file, 'name,nces id,School Name\nOak,,Pine\n');
    const r = await runCli(['school', 'import', 'alpha', file], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/two school name columns: "name" \(column 1\) and "School Name" \(column 3\)/);
  });

  it('reads a schools file saved as plain "CSV" (Windows-1252) with its accents, and says so', async () => {
    const file = path.join(dir, 'schools-1252.csv');
    // "Lycée Nord" and "Escuela Niños" in Windows-1252: é is 0xE9, ñ is 0xF1 (invalid UTF-8 alone).
    writeFileSync(
      file,
      Buffer.concat([
        Buffer.from('name\r\nLyc'),
        Buffer.from([0xe9]),
        Buffer.from('e Nord\r\nEscuela Ni'),
        Buffer.from([0xf1]),
        Buffer.from('os\r\n'),
      ]),
    );
    const r = await runCli(['school', 'import', 'alpha', file], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/is not UTF-8 and was read as Windows-1252.*rosterd school list alpha/s);
    const { rows } = await db.pool.query<{ name: string }>(
      `SELECT s.name FROM schools s JOIN tenants t ON t.id = s.tenant_id WHERE t.subdomain = 'alpha' AND s.name IN ('Lycée Nord', 'Escuela Niños') ORDER BY 1`,
    );
    expect(rows.map((x) => x.name)).toEqual(['Escuela Niños', 'Lycée Nord']);
  });

  it('stores a name typed with a combining accent composed, so the same school cannot be added twice', async () => {
    const file = path.join(dir, 'schools-mac.csv');
    writeFileSync(file, 'name\nE\u0301cole Sud\n'); // É as E + U+0301, as a Mac may save it
    expect((await runCli(['school', 'import', 'alpha', file], env)).code).toBe(0);
    const again = await runCli(['school', 'add', 'alpha', '--name', '\u00c9cole Sud'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already has a school/);
  });

  it("refuses a school whose name is another school's NCES ID, which users.csv could not tell apart; nothing written", async () => {
    expect((await runCli(['school', 'add', 'alpha', '--name', 'Ridge', '--nces', '999999999999'], env)).code).toBe(0);
    const r = await runCli(['school', 'add', 'alpha', '--name', '999999999999', '--nces', '444444444444', '--json'], env);
    expect(r.code).toBe(1);
    expect(r.json<{ error: { code: string; message: string } }>().error).toEqual({
      code: 'SCHOOL_AMBIGUOUS',
      message:
        'alpha cannot take this school: the name "999999999999" is the NCES ID of the school "Ridge", so a users.csv school value ' +
        '"999999999999" would match both schools; give a name that no other school has as a name or ID',
    });
    const { rows } = await db.pool.query(`SELECT 1 FROM schools WHERE nces_id = '444444444444'`);
    expect(rows).toEqual([]);
  });

  it('names a workbook saved with a .csv name (exit 1) instead of reading its bytes', async () => {
    const file = path.join(dir, 'schools.xlsx.csv');
    const zipHead = Buffer.alloc(30);
    zipHead.writeUInt32LE(0x04034b50, 0);
    zipHead.writeUInt16LE('[Content_Types].xml'.length, 26);
    writeFileSync(file, Buffer.concat([zipHead, Buffer.from('[Content_Types].xml'), Buffer.alloc(64)]));
    const r = await runCli(['school', 'import', 'alpha', file, '--json'], env);
    expect(r.code).toBe(1);
    const { error } = r.json<{ error: { code: string; message: string } }>();
    expect(error.code).toBe('SCHOOLS_FILE_INVALID');
    expect(error.message).toMatch(/schools\.xlsx\.csv: The file is an? .*(workbook|spreadsheet).*not a CSV file\. Save it as "CSV UTF-8/);
  });

  it('tells a compressed schools file to be unpacked, not saved again as CSV (exit 1)', async () => {
    const zipped = path.join(dir, 'schools.zip.csv');
    writeFileSync(zipped, zipArchive([{ name: 'schools.csv', content: 'name\nOak Elementary\n' }]));
    const gz = path.join(dir, 'schools.csv.gz');
    writeFileSync(gz, gzipSync('name\nOak Elementary\n'));
    for (const file of [zipped, gz]) {
      const r = await runCli(['school', 'import', 'alpha', file, '--json'], env);
      expect(r.code).toBe(1);
      const { error } = r.json<{ error: { code: string; message: string } }>();
      expect(error.code).toBe('SCHOOLS_FILE_INVALID');
      expect(error.message).toMatch(/compressed.*not a CSV file\. Unpack it and import the CSV file it holds\.$/);
    }
  });

  it('reads an NCES ID written as an Excel text formula (="0…", to keep its leading zero) as the ID, and a stray quote as written', async () => {
    const file = path.join(dir, 'schools-excel-text.csv');
    // Unquoted as an SIS writes it, and quoted as Excel saves such a cell.
    writeFileSync(file, 'name,nces id,state id\nMaple Elementary,="010000500870",="00-17"\nO"Neil Middle,"=""010000500871""",\n');
    const r = await runCli(['school', 'import', 'alpha', file], env);
    expect(r.code, r.stderr).toBe(0);
    const { rows } = await db.pool.query<{ name: string; nces_id: string; state_id: string | null }>(
      `SELECT s.name, s.nces_id, s.state_id FROM schools s JOIN tenants t ON t.id = s.tenant_id
        WHERE t.subdomain = 'alpha' AND s.nces_id LIKE '01000050087_' ORDER BY 2`,
    );
    expect(rows).toEqual([
      { name: 'Maple Elementary', nces_id: '010000500870', state_id: '00-17' },
      { name: 'O"Neil Middle', nces_id: '010000500871', state_id: null },
    ]);
  });

  it('reads a schools file written as UTF-16 (PowerShell > or Out-File), accents kept', async () => {
    const file = path.join(dir, 'schools-utf16.csv');
    writeFileSync(file, Buffer.from('\uFEFFname,nces id\r\nÉcole Ouest,010000500872\r\n', 'utf16le'));
    const r = await runCli(['school', 'import', 'alpha', file], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('added 1 school(s) to alpha\n');
    const { rows } = await db.pool.query<{ name: string }>(
      `SELECT s.name FROM schools s JOIN tenants t ON t.id = s.tenant_id WHERE t.subdomain = 'alpha' AND s.nces_id = '010000500872'`,
    );
    expect(rows).toEqual([{ name: 'École Ouest' }]);
  });

  it('reports every bad line, a school listed twice with both lines, and imports nothing', async () => {
    expect((await runCli(['school', 'add', 'alpha', '--name', 'Lincoln High'], env)).code).toBe(0);
    const file = path.join(dir, 'schools-bad.csv');
    writeFileSync(file, 'name,nces id\nOak Elementary,\nBirch High,12\nOAK ELEMENTARY,\nLincoln High,\nPine,1234\n');
    const before = await count('schools');
    const r = await runCli(['school', 'import', 'alpha', file, '--json'], env);
    // The command line was right; the file was not (exit 1, like a malformed key file).
    expect(r.code).toBe(1);
    const { error } = r.json<{ error: { code: string; message: string } }>();
    expect(error.code).toBe('SCHOOLS_FILE_INVALID');
    expect(error.message.split('\n')).toEqual([
      `${file} has 4 bad lines; nothing was imported. Fix them and import the file again:`,
      expect.stringMatching(/^line 3: NCES school ID "12" must be exactly 12 digits/),
      'line 4: the file lists name "OAK ELEMENTARY" twice (lines 2 and 4)',
      expect.stringMatching(/^line 5: alpha already has a school with name "Lincoln High"/),
      expect.stringMatching(/^line 6: NCES school ID "1234"/),
    ]);
    expect(await count('schools')).toBe(before);
  });
});

describe('export users --out', () => {
  it('names a path it cannot write and why (exit 1), leaving no file behind', async () => {
    const r = await runCli(['export', 'users', '--tenant', 'alpha', '--out', path.join(dir, 'nonexistent', 'x.csv'), '--json'], env);
    expect(r.code).toBe(1);
    expect(r.json()).toEqual({
      error: {
        code: 'FILE_NOT_WRITABLE',
        message: `cannot write ${path.join(dir, 'nonexistent', 'x.csv')}: its folder does not exist; create it or choose another path; nothing was written`,
      },
    });
    expect(r.stderr).toBe('');
    expect(existsSync(path.join(dir, 'nonexistent'))).toBe(false);

    const target = path.join(dir, 'export-target');
    mkdirSync(target);
    const onDir = await runCli(['export', 'users', '--tenant', 'alpha', '--out', target], env);
    expect(onDir.code).toBe(1);
    expect(onDir.stderr).toMatch(/cannot write .*export-target: it is a directory/);
    expect(readdirSync(dir).filter((f) => f.startsWith('export-target'))).toEqual(['export-target']);
  });
});
