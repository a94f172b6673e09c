/**
 * `rosterd export users --tenant T [--out FILE]` (PRODUCT.md §7: "current state as users.csv, no
 * passwords") round-tripped through the real CLI: a roster imported with passwords, accents,
 * schools, graduation years, access types, roles and SIS ids is exported; the export holds no
 * password in clear and no hash of one; imported again as is (`import run --now`), it changes
 * nothing (§3: importing the same roster twice changes nothing), and every password still
 * verifies against the very hash stored before. Its inactive users, listed with status inactive,
 * stay inactive: an export imported unchanged reactivates nobody.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_HEADER } from '../../src/import/export.js';
import { verifyPassword } from '../../src/import/password.js';
import type { ImportRecord } from '../../src/import/records.js';
import { runCli } from '../support/cli.js';
import { csv, importFixture, type ImportFixture, type UserState } from './import-fixture.js';

const TENANT = 'export-usd';
const H = 'username,password,email,first name,last name,school,graduation year,access type,role,sis id';

/** username → password as the SIS sent it (a blank one: no password). */
const PASSWORDS: Record<string, string> = {
  'zoë.núñez': 'Contraseña-ñ1',
  jgarcia01: 'Sunshine42!',
  'obrien.k': 'pa,ss"word 7',
  'mlehmann@export-usd.example': 'Ünïcødé-Pässwörd',
  leaver01: 'GoodbyeForever9',
};

// School by NCES ID, by state ID (lower case) and by name: the export names the school, which must match again.
const ROWS = [
  `zoë.núñez,${PASSWORDS['zoë.núñez']},zoe.nunez@export-usd.example,Zoë,"Núñez, Jr.",060000000001,2031,,student,000123`,
  `jgarcia01,${PASSWORDS.jgarcia01},j.garcia@export-usd.example,José,García Peña,ca-lin-7,2029,,Student,SIS-0042`,
  `obrien.k,"pa,ss""word 7",k.obrien@export-usd.example,Kéllan,"O'Brien ""Kel""",lincoln high,,school administrator,Teacher,T-9`,
  `mlehmann@export-usd.example,${PASSWORDS['mlehmann@export-usd.example']},,Mëlanie,Lehmann,,,MANAGER,staff,`,
  'nopass01,,np@export-usd.example,Ånne,Ström,Escuela Peña Blanca,2030,Administrator,other,S-77',
  `leaver01,${PASSWORDS.leaver01},leaver@export-usd.example,Léa,Vér,,2028,,student,L-1`,
];

let f: ImportFixture;
let env: Record<string, string>;
let original: UserState[];
let exported = '';

/** Receives `content` as a pending users.csv and imports it with the real CLI, as an operator would. */
async function importWithCli(content: string): Promise<ImportRecord> {
  const id = await f.receive(TENANT, content, 'users.csv', 'pending');
  const run = await runCli(['import', 'run', '--now', '--tenant', TENANT, '--json'], env);
  expect(run.code, run.stderr).toBe(0);
  expect(run.json<{ imported: Array<{ id: string }> }>().imported.map((i) => i.id)).toEqual([id]);
  const show = await runCli(['import', 'show', id, '--json'], env);
  expect(show.code, show.stderr).toBe(0);
  return show.json<ImportRecord>();
}

async function exportWithCli(name: string): Promise<string> {
  const out = path.join(f.dataDir, name);
  const r = await runCli(['export', 'users', '--tenant', TENANT, '--out', out, '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return readFileSync(out, 'utf8');
}

beforeAll(async () => {
  f = await importFixture();
  env = { DATABASE_URL: f.db.url, DATA_DIR: f.dataDir, LOG_LEVEL: 'silent' };
  // A threshold that lets one of six users go without a hold (the last test deactivates one).
  await f.addTenant(TENANT, { timezone: 'America/Los_Angeles', thresholdPercent: 50 });
  await f.db.pool.query(
    `INSERT INTO schools (tenant_id, name, nces_id, state_id)
     SELECT id, s.name, s.nces, s.state FROM tenants,
            (VALUES ('Escuela Peña Blanca', '060000000001', NULL), ('Lincoln High', NULL, 'CA-LIN-7')) AS s(name, nces, state)
      WHERE subdomain = $1`,
    [TENANT],
  );
  const first = await importWithCli(csv(H, ...ROWS));
  expect(first).toMatchObject({ status: 'succeeded', counts: { rows: 6, created: 6, errors: 0, warnings: 1 } });
  // nopass01 is new and its password blank: it cannot sign in with one, and the report says so.
  expect(first.warnings).toEqual([
    {
      line: 6,
      column: 'password',
      message: 'New user "nopass01" has no password, so it cannot sign in with one until a password is set.',
      username: 'nopass01',
    },
  ]);
  original = await f.users(TENANT);
}, 120_000);
afterAll(async () => f?.close());

describe('export users', () => {
  it('writes the canonical header and each user with accents, school, year, access type, role and sis id', async () => {
    exported = await exportWithCli('export-1.csv');
    const lines = exported.split('\n');
    expect(lines.pop()).toBe(''); // ends with a newline
    expect(lines[0]).toBe(EXPORT_HEADER);
    expect(lines[0]).toBe('username,email,first name,last name,school,graduation year,access type,role,sis id,status');
    expect(lines.slice(1)).toEqual([
      'jgarcia01,j.garcia@export-usd.example,José,García Peña,Lincoln High,2029,,student,SIS-0042,active',
      'leaver01,leaver@export-usd.example,Léa,Vér,,2028,,student,L-1,active',
      'mlehmann@export-usd.example,,Mëlanie,Lehmann,,,Manager,staff,,active',
      'nopass01,np@export-usd.example,Ånne,Ström,Escuela Peña Blanca,2030,Administrator,other,S-77,active',
      `obrien.k,k.obrien@export-usd.example,Kéllan,"O'Brien ""Kel""",Lincoln High,,School Administrator,teacher,T-9,active`,
      'zoë.núñez,zoe.nunez@export-usd.example,Zoë,"Núñez, Jr.",Escuela Peña Blanca,2031,,student,000123,active',
    ]);
    // Without --out the same CSV goes to stdout.
    const stdout = await runCli(['export', 'users', '--tenant', TENANT], env);
    expect(stdout.code, stdout.stderr).toBe(0);
    expect(stdout.stdout).toBe(exported);
  });

  it('holds no password in clear and no password hash or check', async () => {
    expect(exported).not.toBe('');
    const withHash = original.filter((u) => u.password_hash !== null);
    expect(withHash.map((u) => u.username).sort()).toEqual(Object.keys(PASSWORDS).sort());
    for (const password of Object.values(PASSWORDS)) {
      expect(exported).not.toContain(password);
      expect(exported).not.toContain(password.normalize('NFD'));
    }
    for (const u of withHash) {
      expect(u.password_hash).toMatch(/^\$scrypt\$/); // the stored format of src/import/password.ts
      expect(exported).not.toContain(u.password_hash);
      // nor any part of it (parameters, salt, hash), nor the keyed check
      for (const part of u.password_hash!.split('$').filter((p) => p.length >= 8)) expect(exported).not.toContain(part);
      expect(u.password_check).not.toBeNull();
      for (const part of u.password_check!.split('$')) expect(exported).not.toContain(part);
    }
    expect(exported).not.toMatch(/\$scrypt|scrypt[:$]|\$argon2|argon2i?d?[:$]|\$2[aby]\$|pbkdf2/i);
    expect(exported.split('\n')[0]).not.toMatch(/password/i);
  });

  it('imported again as is, changes nothing: 0 created, updated, deactivated, reactivated; no errors', async () => {
    const before = await f.snapshot();
    const hashed = await f.db.pool.query<{ password_hash: string | null }>(`SELECT password_hash FROM users ORDER BY id`);
    const again = await importWithCli(exported);
    expect(again).toMatchObject({
      status: 'succeeded',
      mode: 'full',
      counts: { rows: 6, created: 0, updated: 0, unchanged: 6, deactivated: 0, reactivated: 0, errors: 0 },
      errors: [],
    });
    // Every column of the export is one the importer reads, `status` too.
    expect(again.warnings).toEqual([]);
    expect(await f.snapshot()).toBe(before);
    const { rows: after } = await f.db.pool.query<{ password_hash: string | null }>(`SELECT password_hash FROM users ORDER BY id`);
    expect(after).toEqual(hashed.rows);

    // The passwords still verify, and the blank one is still no password.
    const users = await f.users(TENANT);
    for (const [username, password] of Object.entries(PASSWORDS)) {
      const u = users.find((x) => x.username === username);
      expect(u?.password_hash, username).toBe(original.find((x) => x.username === username)?.password_hash);
      expect(await verifyPassword(password, u!.password_hash!), username).toBe(true);
      expect(await verifyPassword(password + 'x', u!.password_hash!), username).toBe(false);
    }
    expect(users.find((u) => u.username === 'nopass01')).toMatchObject({ password_hash: null, password_check: null });
    // And a second export is byte for byte the first.
    expect(await exportWithCli('export-2.csv')).toBe(exported);
  });
});

describe('export of a roster with an inactive user', () => {
  /** `rosterd validate` of `content`: what importing it would do, nothing applied. */
  async function validateWithCli(name: string, content: string): Promise<ImportRecord> {
    const file = path.join(f.dataDir, name);
    writeFileSync(file, content);
    const r = await runCli(['validate', file, '--tenant', TENANT, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    return r.json<ImportRecord>();
  }
  const NOTHING = { created: 0, updated: 0, unchanged: 6, deactivated: 0, reactivated: 0, errors: 0, warnings: 0 };

  it('lists the deactivated user with status inactive', async () => {
    const without = await importWithCli(csv(H, ...ROWS.filter((r) => !r.startsWith('leaver01,'))));
    expect(without).toMatchObject({ status: 'succeeded', counts: { deactivated: 1, errors: 0 } });
    exported = await exportWithCli('export-3.csv');
    expect(exported.split('\n').filter((l) => l.endsWith(',inactive'))).toEqual([
      'leaver01,leaver@export-usd.example,Léa,Vér,,2028,,student,L-1,inactive',
    ]);
    expect(exported.split('\n').filter((l) => l.endsWith(',active'))).toHaveLength(5);
    expect(exported).not.toContain(PASSWORDS.leaver01);
  });

  // The export lists every user, the inactive ones with status inactive (§7); imported unchanged,
  // it must change nothing: reactivating a user who left would give them access again.
  it('imported again as is (or without its inactive rows), changes nothing: the inactive user stays inactive; validate says the same', async () => {
    const before = await f.snapshot();
    const dryRun = await validateWithCli('export-3-validate.csv', exported);
    expect(dryRun).toMatchObject({ status: 'validated', mode: 'full', counts: { rows: 6, ...NOTHING }, warnings: [] });
    const reimport = await importWithCli(exported);
    expect(reimport).toMatchObject({ status: 'succeeded', mode: 'full', counts: { rows: 6, ...NOTHING }, errors: [], warnings: [] });
    expect(reimport.counts).toEqual(dryRun.counts);
    expect(await f.snapshot()).toBe(before);
    expect((await f.users(TENANT)).find((u) => u.username === 'leaver01')).toMatchObject({
      active: false,
      password_hash: original.find((u) => u.username === 'leaver01')?.password_hash,
    });
    // Twice: still nothing.
    expect((await importWithCli(exported)).counts).toMatchObject(NOTHING);
    expect(await f.snapshot()).toBe(before);
    expect(await exportWithCli('export-4.csv')).toBe(exported);

    // Nor does it without its inactive rows: those users are already inactive.
    const withoutInactive = await importWithCli(
      exported
        .split('\n')
        .filter((l) => !l.endsWith(',inactive'))
        .join('\n'),
    );
    expect(withoutInactive).toMatchObject({ status: 'succeeded', counts: { rows: 5, ...NOTHING, unchanged: 5 } });
    expect(await f.snapshot()).toBe(before);
  });

  it('edited, applies what was edited: a changed inactive user stays inactive, an active one set inactive is deactivated', async () => {
    const edited = exported
      .replace('leaver@export-usd.example', 'lea.ver@export-usd.example')
      .replace(/^(jgarcia01,.*),active$/m, '$1,inactive');
    const dryRun = await validateWithCli('export-edited.csv', edited);
    const r = await importWithCli(edited);
    expect(r).toMatchObject({
      status: 'succeeded',
      counts: { rows: 6, created: 0, updated: 1, unchanged: 4, deactivated: 1, reactivated: 0, errors: 0, warnings: 0 },
    });
    expect(r.counts).toEqual(dryRun.counts);
    const users = await f.users(TENANT);
    expect(users.find((u) => u.username === 'leaver01')).toMatchObject({ active: false, email: 'lea.ver@export-usd.example' });
    expect(users.find((u) => u.username === 'jgarcia01')?.active).toBe(false);
    // Set active again in the export, jgarcia01 comes back with the password it had.
    const back = await importWithCli((await exportWithCli('export-5.csv')).replace(/^(jgarcia01,.*),inactive$/m, '$1,active'));
    expect(back.counts).toMatchObject({ reactivated: 1, deactivated: 0, updated: 0, errors: 0 });
    const jgarcia = (await f.users(TENANT)).find((u) => u.username === 'jgarcia01');
    expect(jgarcia?.active).toBe(true);
    expect(await verifyPassword(PASSWORDS.jgarcia01!, jgarcia!.password_hash!)).toBe(true);
  });

  it('imported into a district without users (another rosterd, say), creates its inactive users inactive', async () => {
    await f.addTenant('export-copy');
    await f.db.pool.query(
      `INSERT INTO schools (tenant_id, name) SELECT id, s.name FROM tenants, (VALUES ('Escuela Peña Blanca'), ('Lincoln High')) AS s(name)
        WHERE subdomain = 'export-copy'`,
    );
    const r = await f.importCsv('export-copy', exported);
    expect(r).toMatchObject({ status: 'succeeded', counts: { rows: 6, created: 6, deactivated: 0, errors: 0, warnings: 0 } });
    const copied = await f.users('export-copy');
    expect(copied.filter((u) => !u.active).map((u) => u.username)).toEqual(['leaver01']);
    const again = await f.importCsv('export-copy', exported);
    expect(again.counts).toMatchObject({ rows: 6, created: 0, updated: 0, unchanged: 6, deactivated: 0, reactivated: 0 });
    const out = await runCli(['export', 'users', '--tenant', 'export-copy'], env);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe(exported);
  });
});
