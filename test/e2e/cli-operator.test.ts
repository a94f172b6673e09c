import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { loadMigrations } from '../../src/store/migrate.js';
import { CLI, runCli } from '../support/cli.js';

let db: TestDatabase;
let dir: string;
let env: Record<string, string>;

function keygen(type: string, bits?: number, comment = 'sis@district'): string {
  const file = path.join(dir, `key-${type}-${bits ?? 0}-${Math.random().toString(36).slice(2)}`);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', comment, '-f', file]);
  return `${file}.pub`;
}

const fingerprintBySshKeygen = (pub: string) => execFileSync('ssh-keygen', ['-lf', pub]).toString().split(' ')[1];

async function count(table: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]?.n ?? -1;
}

beforeAll(async () => {
  db = await createTestDatabase();
  dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-cli-'));
  env = { DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'data') };
});

afterAll(async () => {
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the rosterd command', () => {
  it('is executable as built, the way npx and the package bin run it (shebang, mode)', () => {
    const out = execFileSync(CLI, ['tenant', 'list', '--json'], { env: { ...process.env, ...env } }).toString();
    expect(JSON.parse(out)).toEqual(expect.any(Array));
  });

  it('prints its version and its help with exit 0; no command at all is a usage error (exit 2)', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const version = await runCli(['--version'], env);
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    for (const args of [['--help'], ['help'], ['help', 'tenant'], ['tenant', '--help']]) {
      const help = await runCli(args, env);
      expect(help.code, args.join(' ')).toBe(0);
      expect(help.stdout, args.join(' ')).toMatch(/Usage: rosterd/);
    }
    const none = await runCli([], env);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/Usage: rosterd/);
  });
});

describe('rosterd tenant', () => {
  it('adds a tenant with defaults and shows it as JSON', async () => {
    const r = await runCli(['tenant', 'add', 'lincoln-usd', '--admin-email', 'it@lincoln.k12.us', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({
      subdomain: 'lincoln-usd',
      name: 'lincoln-usd',
      timezone: 'America/New_York',
      adminEmails: ['it@lincoln.k12.us'],
      window: '18:00-06:00',
      thresholdPercent: 10,
      thresholdCount: null,
      status: 'active',
    });
    const shown = await runCli(['tenant', 'show', 'lincoln-usd', '--json'], env);
    expect(shown.json()).toMatchObject({ subdomain: 'lincoln-usd' });
  });

  it('takes every option of tenant add', async () => {
    const r = await runCli(
      [
        'tenant',
        'add',
        'oak-isd',
        '--admin-email',
        'a@oak.org',
        '--admin-email',
        'b@oak.org',
        '--name',
        'Oak ISD',
        '--timezone',
        'America/Chicago',
        '--window',
        '20:00-04:30',
        '--threshold',
        '5',
        '--threshold-count',
        '200',
        '--json',
      ],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({
      name: 'Oak ISD',
      adminEmails: ['a@oak.org', 'b@oak.org'],
      timezone: 'America/Chicago',
      window: '20:00-04:30',
      thresholdPercent: 5,
      thresholdCount: 200,
    });
  });

  it.each([
    [['tenant', 'add', 'Lincoln_USD', '--admin-email', 'a@b.org'], /not a valid subdomain/],
    [['tenant', 'add', '-lead', '--admin-email', 'a@b.org'], /unknown option '-lead'/],
    [['tenant', 'add', '--admin-email', 'a@b.org', '--', '-lead'], /"-lead" is not a valid subdomain/],
    [['tenant', 'add', 'trail-', '--admin-email', 'a@b.org'], /"trail-" is not a valid subdomain/],
    [['tenant', 'add', 'x'.repeat(64), '--admin-email', 'a@b.org'], /not a valid subdomain/],
    [['tenant', 'add', 'no-admin'], /--admin-email/],
    [['tenant', 'add', 'bad-mail', '--admin-email', 'not-an-address'], /not a valid email address/],
    [['tenant', 'add', 'bad-zone', '--admin-email', 'a@b.org', '--timezone', 'America/Atlantis'], /not a known IANA time zone/],
    [['tenant', 'add', 'bad-window', '--admin-email', 'a@b.org', '--window', '25:00-06:00'], /HH:MM/],
    [['tenant', 'add', 'day-window', '--admin-email', 'a@b.org', '--window', '09:00-15:00'], /--allow-daytime/],
    [['tenant', 'add', 'bad-threshold', '--admin-email', 'a@b.org', '--threshold', '150'], /0 to 100/],
    [['tenant', 'add', 'bad-count', '--admin-email', 'a@b.org', '--threshold-count', '-3'], /whole number/],
    [['tenant', 'frobnicate'], /unknown command/],
    [['tenant'], /Usage: rosterd tenant/],
    [[], /Usage: rosterd/],
  ])('refuses %j with exit 2 and writes nothing', async (args, message) => {
    const before = await count('tenants');
    const r = await runCli(args, env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(await count('tenants')).toBe(before);
  });

  it('accepts a daytime window only with --allow-daytime', async () => {
    const r = await runCli(
      ['tenant', 'add', 'day-ok', '--admin-email', 'a@b.org', '--window', '09:00-15:00', '--allow-daytime', '--json'],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ window: '09:00-15:00', allowDaytime: true });
  });

  it('refuses a second tenant with the same subdomain (exit 1)', async () => {
    const r = await runCli(['tenant', 'add', 'lincoln-usd', '--admin-email', 'x@y.org'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already exists/);
  });

  it('updates, suspends and resumes, and lists', async () => {
    const u = await runCli(['tenant', 'update', 'lincoln-usd', '--timezone', 'America/Denver', '--threshold', '20', '--json'], env);
    expect(u.code, u.stderr).toBe(0);
    expect(u.json()).toMatchObject({ timezone: 'America/Denver', thresholdPercent: 20, adminEmails: ['it@lincoln.k12.us'] });
    const s = await runCli(['tenant', 'suspend', 'lincoln-usd', '--json'], env);
    expect(s.json()).toMatchObject({ status: 'suspended' });
    const back = await runCli(['tenant', 'resume', 'lincoln-usd', '--json'], env);
    expect(back.json()).toMatchObject({ status: 'active' });
    const list = await runCli(['tenant', 'list', '--json'], env);
    expect(list.json<{ subdomain: string }[]>().map((t) => t.subdomain)).toEqual(expect.arrayContaining(['lincoln-usd', 'oak-isd']));
    const text = await runCli(['tenant', 'list'], env);
    expect(text.stdout).toMatch(/lincoln-usd\s+lincoln-usd\s+active\s+America\/Denver/);
  });

  it('reports an unknown tenant with exit 1', async () => {
    const r = await runCli(['tenant', 'show', 'nobody', '--json'], env);
    expect(r.code).toBe(1);
    expect(r.json()).toEqual({ error: { code: 'TENANT_NOT_FOUND', message: expect.stringMatching(/no tenant "nobody"/) } });
  });
});

describe('rosterd key', () => {
  it.each([['ed25519'], ['ecdsa', 256], ['ecdsa', 384], ['ecdsa', 521], ['rsa', 2048], ['rsa', 4096]] as [string, number?][])(
    'adds an %s key and prints the fingerprint ssh-keygen prints',
    async (type, bits) => {
      const pub = keygen(type, bits);
      const r = await runCli(['key', 'add', 'lincoln-usd', pub, '--json'], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json()).toMatchObject({
        tenant: 'lincoln-usd',
        fingerprint: fingerprintBySshKeygen(pub),
        comment: 'sis@district',
        lastUsedAt: null,
        revokedAt: null,
      });
      const text = await runCli(['key', 'add', 'oak-isd', keygen(type, bits)], env);
      expect(text.stdout).toMatch(/^SHA256:\S+ sis@district/);
    },
  );

  it('reads the key from stdin with -', async () => {
    const pub = keygen('ed25519');
    const r = await runCli(['key', 'add', 'oak-isd', '-', '--json'], env, execFileSync('cat', [pub]).toString());
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ fingerprint: fingerprintBySshKeygen(pub) });
  });

  it('refuses weak, malformed and private keys, writing nothing', async () => {
    const before = await count('ssh_keys');
    const rsa1024 = keygen('rsa', 1024);
    const cases: [string, RegExp][] = [[rsa1024, /1024 bits; at least 2048/]];
    const garbage = path.join(dir, 'garbage.pub');
    writeFileSync(garbage, 'ssh-ed25519 AAAAthis-is-not-base64!!\n');
    cases.push([garbage, /not an OpenSSH public key|damaged/]);
    const truncated = path.join(dir, 'truncated.pub');
    writeFileSync(
      truncated,
      execFileSync('cat', [keygen('ed25519')])
        .toString()
        .slice(0, 40) + '\n',
    );
    cases.push([truncated, /damaged|not an OpenSSH/]);
    const priv = keygen('ed25519').replace(/\.pub$/, '');
    cases.push([priv, /private key/]);
    const dss = path.join(dir, 'dsa.pub');
    writeFileSync(dss, 'ssh-dss AAAAB3NzaC1kc3MAAACBAP1 old@box\n');
    cases.push([dss, /DSA keys are not accepted/]);
    const empty = path.join(dir, 'empty.pub');
    writeFileSync(empty, '\n');
    cases.push([empty, /empty/]);
    cases.push([path.join(dir, 'missing.pub'), /cannot read key file/]);
    for (const [file, message] of cases) {
      const r = await runCli(['key', 'add', 'lincoln-usd', file], env);
      expect(r.code, file).toBe(1);
      expect(r.stderr, file).toMatch(message);
    }
    expect(await count('ssh_keys')).toBe(before);
  });

  it('accepts the SSH2 (RFC 4716) file PuTTYgen and WinSCP save, as the same key with its comment', async () => {
    const pub = keygen('rsa', 3072);
    // ssh-keygen -e writes that format (its base64 wrapped over several lines); a long Comment
    // header continues on the next line after a backslash, as PuTTYgen may write it.
    const ssh2 = execFileSync('ssh-keygen', ['-e', '-f', pub])
      .toString()
      .replace(/^Comment: .*$/m, 'Comment: "rsa-key-\\\n20261121"')
      .replace(/\n/g, '\r\n');
    expect(ssh2.split('\r\n').length).toBeGreaterThan(6);
    const file = path.join(dir, 'putty.pub');
    writeFileSync(file, ssh2);
    const r = await runCli(['key', 'add', 'oak-isd', file, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ fingerprint: fingerprintBySshKeygen(pub), comment: 'rsa-key-20261121', type: 'ssh-rsa' });

    const cut = path.join(dir, 'putty-cut.pub');
    writeFileSync(cut, ssh2.slice(0, ssh2.indexOf('---- END')));
    const bad = await runCli(['key', 'add', 'oak-isd', cut], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/no "---- END SSH2 PUBLIC KEY ----" line/);
  });

  it('takes a key line with options that change nothing here, and a CRLF file', async () => {
    const pub = keygen('ed25519');
    const withOptions = path.join(dir, 'options.pub');
    writeFileSync(withOptions, `no-pty,no-port-forwarding,command="internal-sftp, really" ${readFileSync(pub, 'utf8').trim()}\r\n`);
    const r = await runCli(['key', 'add', 'oak-isd', withOptions, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ fingerprint: fingerprintBySshKeygen(pub), comment: 'sis@district' });
  });

  it('refuses options it would not enforce, an edited key type and security-key types, writing nothing', async () => {
    const before = await count('ssh_keys');
    const line = readFileSync(keygen('ed25519'), 'utf8').trim();
    const [, data] = line.split(' ');
    const cases: [string, RegExp][] = [
      [`from="10.0.0.0/8" ${line}`, /the option from=, which rosterd does not enforce; remove the options/],
      [`no-pty,expiry-time="20300101" ${line}`, /the option expiry-time=, which rosterd does not enforce/],
      [`cert-authority ${line}`, /the option cert-authority, which rosterd does not enforce/],
      [`ssh-rsa ${data} edited`, /says ssh-rsa but its key data is of type ssh-ed25519/],
      [`sk-ssh-ed25519@openssh.com ${data} yubikey`, /key type sk-ssh-ed25519@openssh.com is not accepted/],
    ];
    for (const [text, message] of cases) {
      const file = path.join(dir, 'case.pub');
      writeFileSync(file, `${text}\n`);
      const r = await runCli(['key', 'add', 'oak-isd', file], env);
      expect(r.code, text).toBe(1);
      expect(r.stderr, text).toMatch(message);
    }
    expect(await count('ssh_keys')).toBe(before);
  });

  it('refuses a key already registered to another tenant', async () => {
    const pub = keygen('ed25519');
    expect((await runCli(['key', 'add', 'lincoln-usd', pub], env)).code).toBe(0);
    const r = await runCli(['key', 'add', 'oak-isd', pub], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already registered to another tenant/);
  });

  it('adds a key the tenant already holds again as a no-op (exit 0), as revoke twice is', async () => {
    const pub = keygen('ed25519', undefined, 'twice');
    const first = await runCli(['key', 'add', 'oak-isd', pub, '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.json()).toMatchObject({ alreadyRegistered: false, comment: 'twice' });
    const before = await count('ssh_keys');
    const again = await runCli(['key', 'add', 'oak-isd', pub], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(
      /^SHA256:\S+ twice \(ED25519 256\) was already registered to oak-isd \(added \d{4}-\d\d-\d\dT[\d:]+-0[56]:00\); nothing changed$/m,
    );
    const json = await runCli(['key', 'add', 'oak-isd', pub, '--json'], env);
    expect(json.json()).toMatchObject({ alreadyRegistered: true, addedAt: first.json<{ addedAt: string }>().addedAt });
    expect(await count('ssh_keys')).toBe(before);
  });

  it('lists and revokes keys', async () => {
    const pub = keygen('ed25519', undefined, 'rotate-me');
    const fp = fingerprintBySshKeygen(pub) ?? '';
    await runCli(['key', 'add', 'oak-isd', pub], env);
    const revoked = await runCli(['key', 'revoke', fp, '--json'], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.json<{ revokedAt: string | null }>().revokedAt).not.toBeNull();
    const list = await runCli(['key', 'list', 'oak-isd', '--json'], env);
    const keys = list.json<{ fingerprint: string; revokedAt: string | null; comment: string }[]>();
    expect(keys.find((k) => k.fingerprint === fp)).toMatchObject({ comment: 'rotate-me', revokedAt: expect.any(String) });
    const again = await runCli(['key', 'add', 'oak-isd', pub], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/revoked/);
    // The table shows each time in the key's tenant's zone with its offset (oak-isd: Chicago), as
    // import list does; --json keeps UTC.
    const key = keys.find((k) => k.fingerprint === fp) as unknown as { addedAt: string; revokedAt: string };
    const chicago = (iso: string) => DateTime.fromISO(iso).setZone('America/Chicago').toISO({ suppressMilliseconds: true });
    expect(key.addedAt).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    const text = await runCli(['key', 'list', 'oak-isd'], env);
    const line = text.stdout.split('\n').find((l) => l.includes(fp)) ?? '';
    expect(line.split(/\s{2,}/).slice(-3)).toEqual([
      chicago(key.addedAt.replace(/\.\d+Z$/, 'Z')),
      '-', // never used
      chicago(key.revokedAt.replace(/\.\d+Z$/, 'Z')),
    ]);
    const revokedAgain = await runCli(['key', 'revoke', fp], env);
    expect(revokedAgain.stdout).toContain(`was already revoked (at ${chicago(key.revokedAt.replace(/\.\d+Z$/, 'Z'))}); nothing changed`);
    const unknown = await runCli(['key', 'revoke', 'SHA256:doesnotexist'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no key has fingerprint/);
  });
});

describe('rosterd school', () => {
  it('adds schools and lists them', async () => {
    const r = await runCli(
      ['school', 'add', 'lincoln-usd', '--name', 'Lincoln High', '--nces', '062271003230', '--state-id', 'CA-1234', '--json'],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ name: 'Lincoln High', ncesId: '062271003230', stateId: 'CA-1234' });
    const list = await runCli(['school', 'list', 'lincoln-usd', '--json'], env);
    expect(list.json()).toEqual([expect.objectContaining({ name: 'Lincoln High' })]);
  });

  it('refuses a bad NCES ID (usage) and a duplicate name ignoring case (failure)', async () => {
    const bad = await runCli(['school', 'add', 'lincoln-usd', '--name', 'X', '--nces', '12345'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/exactly 12 digits/);
    const dup = await runCli(['school', 'add', 'lincoln-usd', '--name', 'LINCOLN HIGH'], env);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/already has a school/);
  });

  it('updates a school named as users.csv would name it: a typo in its name, an NCES ID corrected or removed; users.csv must then give the new values', async () => {
    await runCli(['tenant', 'add', 'elm-usd', '--admin-email', 'it@elm.k12.us'], env);
    const added = await runCli(['school', 'add', 'elm-usd', '--name', 'Elm Hgh', '--nces', '062271009991'], env);
    expect(added.code, added.stderr).toBe(0);
    await runCli(['school', 'add', 'elm-usd', '--name', 'Birch Middle', '--state-id', 'EL-2'], env);
    const users = path.join(dir, 'elm-users.csv');
    const validate = async (school: string) => {
      writeFileSync(users, `username,email,school\nann.lee,ann@elm.k12.us,${school}\n`);
      return runCli(['validate', users, '--tenant', 'elm-usd', '--json'], env);
    };

    const r = await runCli(['school', 'update', 'elm-usd', 'ELM HGH', '--name', 'Elm High', '--nces', '062271009990', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({
      name: 'Elm High',
      ncesId: '062271009990',
      stateId: null,
      previous: { name: 'Elm Hgh', ncesId: '062271009991' },
    });
    const text = await runCli(['school', 'update', 'elm-usd', '062271009990', '--state-id', 'EL-1'], env);
    expect(text.stdout).toContain('updated school "Elm High" of elm-usd: state ID none -> EL-1');
    expect((await validate('Elm High')).code).toBe(0);
    expect((await validate('el-1')).code).toBe(0);
    const old = await validate('Elm Hgh');
    expect(old.code).toBe(1);
    expect(old.json<{ errors: Array<{ column: string; value: string }> }>().errors).toEqual([
      expect.objectContaining({ column: 'school', value: 'Elm Hgh' }),
    ]);

    const removed = await runCli(['school', 'update', 'elm-usd', 'Elm High', '--no-nces'], env);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain('NCES ID 062271009990 -> none');
    expect(removed.stdout).toContain('users.csv rows that give the NCES ID 062271009990 no longer match this school');
    expect((await validate('062271009990')).code).toBe(1);

    // Refused, nothing written: another school's name or ID, an unknown school, a malformed ID, nothing to change.
    const before = await runCli(['school', 'list', 'elm-usd', '--json'], env);
    const taken = await runCli(['school', 'update', 'elm-usd', 'Birch Middle', '--name', 'elm high'], env);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain('elm-usd already has another school with name "elm high"');
    const clash = await runCli(['school', 'update', 'elm-usd', 'Birch Middle', '--name', 'EL-1'], env);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toContain('the name "EL-1" is the state ID of the school "Elm High"');
    const unknown = await runCli(['school', 'update', 'elm-usd', 'Pine High', '--name', 'Pine'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      'elm-usd has no school with the name, NCES ID or state ID "Pine High"; "rosterd school list elm-usd" shows them',
    );
    const malformed = await runCli(['school', 'update', 'elm-usd', 'Birch Middle', '--nces', '123'], env);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/exactly 12 digits/);
    const nothing = await runCli(['school', 'update', 'elm-usd', 'Birch Middle'], env);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to change: give at least one of --name/);
    // An empty ID (--state-id "$ID" with the variable unset) neither removes the school's ID nor adds one without it.
    const blank = await runCli(['school', 'update', 'elm-usd', 'Birch Middle', '--state-id', ''], env);
    expect(blank.code).toBe(2);
    expect(blank.stderr).toContain('--state-id was given an empty ID; give the ID, or leave --state-id out (--no-state-id removes');
    const blankAdd = await runCli(['school', 'add', 'elm-usd', '--name', 'Oak Elementary', '--nces', ' '], env);
    expect(blankAdd.code).toBe(2);
    expect(blankAdd.stderr).toContain('--nces was given an empty ID; give the ID, or leave --nces out\n');
    expect((await runCli(['school', 'list', 'elm-usd', '--json'], env)).stdout).toBe(before.stdout);
  });

  it('imports a schools CSV all or nothing', async () => {
    const good = path.join(dir, 'schools.csv');
    writeFileSync(good, '\uFEFFName,NCES ID,State_ID\r\nOak Elementary,062271003231,\r\n"Maple Middle, East",,ST-9\r\n');
    const r = await runCli(['school', 'import', 'oak-isd', good, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<unknown[]>()).toHaveLength(2);
    const bad = path.join(dir, 'bad-schools.csv');
    writeFileSync(bad, 'name,nces id\nPine High,\nBirch High,12\n');
    const before = await count('schools');
    const b = await runCli(['school', 'import', 'oak-isd', bad], env);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/has a bad line; nothing was imported/);
    expect(b.stderr).toMatch(/^line 3: .*12 digits/m);
    expect(await count('schools')).toBe(before);
  });
});

describe('configuration', () => {
  it.each([
    ['SFTP_PORT', 'twenty-two', /SFTP_PORT="twenty-two" is not valid: expected a whole number/],
    ['SFTP_PORT', '70000', /SFTP_PORT="70000" is not valid: expected a number of at most 65535/],
    ['DATABASE_URL', 'mysql://nope', /DATABASE_URL=\(redacted\) is not valid/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL="loud" is not valid: expected one of/],
    ['SCHEDULE_CRON', 'every night', /SCHEDULE_CRON="every night" is not valid/],
    ['MAX_UPLOAD_BYTES', '0', /MAX_UPLOAD_BYTES="0" is not valid/],
    ['MAIL_FROM', 'x', /MAIL_FROM="x" is not valid: expected an email address such as rosterd@district\.example/],
    ['MAIL_FROM', 'reports at district', /MAIL_FROM="reports at district" is not valid: expected an email address/],
    ['MAIL_FROM', 'a@b.example, c@d.example', /MAIL_FROM="a@b.example, c@d.example" is not valid/],
    ['SMTP_URL', 'http://mail.example', /SMTP_URL=\(redacted\) is not valid: expected an smtp:\/\/ or smtps:\/\/ URL/],
    ['HTTP_PORT', '-1', /HTTP_PORT="-1" is not valid: expected a number of at least 0/],
    ['SETTLE_SECONDS', '1.5', /SETTLE_SECONDS="1.5" is not valid: expected a whole number/],
    ['SFTP_HOST', '0.0.0.0:2222', /SFTP_HOST="0\.0\.0\.0:2222" is not valid: expected an IP address .* without a port/],
    ['HTTP_HOST', 'http://localhost', /HTTP_HOST="http:\/\/localhost" is not valid: expected an IP address/],
    ['DATA_DIR', '  ', /DATA_DIR=" {2}" is not valid: expected a path to a folder, such as \/var\/lib\/rosterd\./],
  ])('a bad %s stops with one line naming it (exit 2)', async (name, value, message) => {
    const r = await runCli(['tenant', 'list'], { ...env, [name]: value });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });

  it('names every bad variable, a line each, so that one restart shows them all (exit 2)', async () => {
    const r = await runCli(['tenant', 'list'], { ...env, SFTP_PORT: 'twenty-two', LOG_LEVEL: 'loud', SMTP_URL: 'http://mail' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'rosterd: SFTP_PORT="twenty-two" is not valid: expected a whole number. Fix the environment variable SFTP_PORT and start again.',
      expect.stringMatching(
        /^SMTP_URL=\(redacted\) is not valid: expected an smtp:\/\/ or smtps:\/\/ URL\. Fix the environment variable SMTP_URL/,
      ),
      expect.stringMatching(
        /^LOG_LEVEL="loud" is not valid: expected one of fatal, .*\. Fix the environment variable LOG_LEVEL and start again\.$/,
      ),
    ]);
    const json = await runCli(['tenant', 'list', '--json'], { ...env, SFTP_PORT: 'twenty-two', LOG_LEVEL: 'loud' });
    expect(json.code).toBe(2);
    expect(json.json<{ error: { code: string; message: string } }>().error).toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/^SFTP_PORT=.*\nLOG_LEVEL=.*start again\.$/),
    });
  });
});

describe('DATABASE_URL_FILE', () => {
  it('reads the database URL from a secret file, as Docker and Kubernetes mount one; a file that cannot be read stops the command (exit 2)', async () => {
    const file = path.join(dir, 'database_url');
    writeFileSync(file, `${db.url}\n`, { mode: 0o600 });
    const { DATABASE_URL: _inFile, ...rest } = env;
    const r = await runCli(['tenant', 'list', '--json'], { ...rest, DATABASE_URL_FILE: file });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<Array<{ subdomain: string }>>().map((t) => t.subdomain)).toContain('lincoln-usd');
    const missing = await runCli(['tenant', 'list'], { ...rest, DATABASE_URL_FILE: `${file}.gone` });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`DATABASE_URL_FILE="${file}.gone" cannot be read: no such file or directory`);
  });
});

describe('DATA_DIR for CLI commands', () => {
  it('a DATA_DIR that does not exist is refused, not made anew with an empty database and new host keys', async () => {
    const missing = path.join(dir, 'no-data');
    for (const [args, extra] of [
      [['tenant', 'list'], { DATABASE_URL: undefined }], // the embedded database is in it
      [['host-key'], {}], // the host keys are in it, whatever the database
      [['import', 'run', '--now'], {}], // and the received copies
    ] as const) {
      const r = await runCli([...args], { ...env, ...extra, DATA_DIR: missing });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toEqual([
        `rosterd: DATA_DIR ${missing} does not exist. rosterd keeps its database, host keys and received files there: ` +
          'run this command in the folder where rosterd serve runs, or set DATA_DIR to its data folder ' +
          '(rosterd serve and rosterd migrate create a new one)',
      ]);
    }
    expect(existsSync(missing)).toBe(false);
    // A file where the folder should be: one line, no stack trace.
    writeFileSync(missing, '');
    const r = await runCli(['tenant', 'list'], { ...env, DATABASE_URL: undefined, DATA_DIR: missing });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      `rosterd: DATA_DIR ${missing} cannot be used (it is a file, not a folder); set DATA_DIR to rosterd's data folder`,
    ]);
    // With DATABASE_URL, commands that only use the database do not need it.
    expect((await runCli(['tenant', 'list'], { ...env, DATA_DIR: path.join(dir, 'elsewhere-data') })).code).toBe(0);
  });
});

/** The schema as an older rosterd left it: the migrations up to `last` applied, as rosterd migrate records them. */
async function migrateUpTo(db: TestDatabase, last: number): Promise<void> {
  await db.pool.query(
    'CREATE TABLE schema_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
  );
  for (const m of (await loadMigrations()).filter((m) => m.id <= last)) {
    await db.pool.query(m.sql);
    await db.pool.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
  }
}

describe('rosterd migrate', () => {
  it('is safe when two processes run it at once on an empty database: each migration is applied once', async () => {
    const empty = await createTestDatabase({ empty: true });
    try {
      const at = { ...env, DATABASE_URL: empty.url };
      const results = await Promise.all([runCli(['migrate', '--json'], at), runCli(['migrate', '--json'], at)]);
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      const applied = results.map((r) => r.json<{ applied: string[] }>().applied);
      const files = await loadMigrations();
      // One process applied them all, the other waited for it and found nothing left to do.
      expect(applied.map((a) => a.length).sort()).toEqual([0, files.length]);
      const { rows } = await empty.pool.query<{ id: number; n: number }>(
        'SELECT id, count(*)::int AS n FROM schema_migrations GROUP BY id',
      );
      expect(rows).toHaveLength(files.length);
      for (const row of rows) expect(row.n).toBe(1);
      // and the result is a working schema
      expect((await runCli(['tenant', 'add', 'after-race', '--admin-email', 'a@b.org'], at)).code).toBe(0);
    } finally {
      await empty.drop();
    }
  });

  it('004 puts a report given up on by an older rosterd back in the queue, due now: reports are retried until accepted', async () => {
    const old = await createTestDatabase({ empty: true });
    try {
      // The schema as rosterd left it before 004, with a report it gave up on after 7 days.
      await migrateUpTo(old, 3);
      await old.pool.query(
        `INSERT INTO outbox (message, status, attempts, last_error, created_at, next_attempt_at)
         VALUES ('{"to": ["it@old.example"], "subject": "old"}', 'failed', 170, '550 no such mailbox', now() - interval '9 days', now() - interval '2 days')`,
      );
      const r = await runCli(['migrate', '--json'], { ...env, DATABASE_URL: old.url });
      expect(r.code, r.stderr).toBe(0);
      expect(r.json<{ applied: string[] }>().applied).toEqual([
        '004_outbox_until_accepted',
        '005_uploads_waiting_index',
        '006_uploads_arrival',
        '007_uploads_indexes',
        '008_names_nfc',
        '009_issue_codes',
        '010_claim_lock',
        '011_import_requested_by',
        '012_issue_username_deactivation',
        '013_hold_group_removals',
      ]);
      const { rows } = await old.pool.query<{ status: string; due: boolean; attempts: number }>(
        'SELECT status, next_attempt_at <= now() AS due, attempts FROM outbox',
      );
      expect(rows).toEqual([{ status: 'pending', due: true, attempts: 170 }]);
      await expect(old.pool.query("UPDATE outbox SET status = 'failed'")).rejects.toThrow(/outbox_status_check/);
    } finally {
      await old.drop();
    }
  });

  it('006 numbers the uploads already received in the order they were received; later ones follow', async () => {
    const old = await createTestDatabase({ empty: true });
    try {
      await migrateUpTo(old, 5);
      await old.pool.query(`INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('old-order', 'Old', '{a@b.org}')`);
      // inserted out of order: received_at decides
      for (const [name, at] of [
        ['second', '2026-11-02T00:00:00Z'],
        ['first', '2026-11-01T00:00:00Z'],
        ['third', '2026-11-03T00:00:00Z'],
      ]) {
        await old.pool.query(
          `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, received_at)
           SELECT id, 'users.csv', 1, repeat('0', 64), $1, $2 FROM tenants`,
          [name, at],
        );
      }
      const r = await runCli(['migrate', '--json'], { ...env, DATABASE_URL: old.url });
      expect(r.code, r.stderr).toBe(0);
      await old.pool.query(
        `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, received_at)
         SELECT id, 'users.csv', 1, repeat('0', 64), 'fourth', '2026-10-01T00:00:00Z' FROM tenants`,
      );
      const { rows } = await old.pool.query<{ stored_path: string }>('SELECT stored_path FROM uploads ORDER BY arrival');
      expect(rows.map((row) => row.stored_path)).toEqual(['first', 'second', 'third', 'fourth']);
    } finally {
      await old.drop();
    }
  });

  it('008 composes (NFC) stored usernames and group names, except one whose composed spelling is another of the tenant', async () => {
    const old = await createTestDatabase({ empty: true });
    try {
      await migrateUpTo(old, 7);
      await old.pool.query(
        `INSERT INTO tenants (subdomain, name, admin_emails) VALUES ('nfc-a', 'A', '{a@b.org}'), ('nfc-b', 'B', '{a@b.org}')`,
      );
      const decomposed = (name: string) => name.normalize('NFD');
      const users: Array<[string, string]> = [
        ['nfc-a', decomposed('josé.m')], // alone: composed
        ['nfc-a', 'renée.k'], // composed already
        ['nfc-a', decomposed('Renée.K')], // its composed spelling is renée.k ignoring case: left
        // two uncomposed spellings of one composed name (ǖ: u + ¨ + ¯, or ü + ¯): both left
        ['nfc-a', 'lu\u0308\u0304.1'],
        ['nfc-a', 'l\u00fc\u0304.1'],
        ['nfc-b', decomposed('renée.k')], // another tenant: composed
        ['nfc-b', 'plain.ascii'],
      ];
      for (const [tenant, username] of users) {
        await old.pool.query(`INSERT INTO users (tenant_id, username) SELECT id, $2 FROM tenants WHERE subdomain = $1`, [tenant, username]);
      }
      for (const group of [decomposed('Français 1'), 'Été', decomposed('ÉTÉ')]) {
        await old.pool.query(`INSERT INTO groups (tenant_id, name) SELECT id, $1 FROM tenants WHERE subdomain = 'nfc-a'`, [group]);
      }
      const r = await runCli(['migrate', '--json'], { ...env, DATABASE_URL: old.url });
      expect(r.code, r.stderr).toBe(0);
      const groups = await old.pool.query<{ name: string }>('SELECT name FROM groups ORDER BY id');
      // the second Été is another group ignoring case: left
      expect(groups.rows.map((g) => g.name)).toEqual(['Français 1'.normalize('NFC'), 'Été', decomposed('ÉTÉ')]);
      const { rows } = await old.pool.query<{ subdomain: string; username: string }>(
        'SELECT t.subdomain, u.username FROM users u JOIN tenants t ON t.id = u.tenant_id ORDER BY u.id',
      );
      expect(rows.map((row) => [row.subdomain, row.username])).toEqual([
        ['nfc-a', 'josé.m'.normalize('NFC')],
        ['nfc-a', 'renée.k'],
        ['nfc-a', decomposed('Renée.K')],
        ['nfc-a', 'lu\u0308\u0304.1'],
        ['nfc-a', 'l\u00fc\u0304.1'],
        ['nfc-b', 'renée.k'.normalize('NFC')],
        ['nfc-b', 'plain.ascii'],
      ]);
    } finally {
      await old.drop();
    }
  });

  it('reports a database already current', async () => {
    const r = await runCli(['migrate', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toEqual({ applied: [], status: 'current' });
  });
});
