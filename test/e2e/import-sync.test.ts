/**
 * users.csv full sync over several nights (PRODUCT.md §3): exact counts, idempotent re-import,
 * invalid rows protect their users, case-insensitive identity, duplicates, import-made users only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

const HEADER = 'username,email,first name,last name,school,graduation year,access type,role,sis id';

/** n students s0001… with a stable email and name; `change` rewrites some of them. */
function roster(ids: number[], change: (id: number) => Partial<Record<'email' | 'last' | 'grad', string>> = () => ({})): string[] {
  return ids.map((i) => {
    const n = String(i).padStart(4, '0');
    const c = change(i);
    return `stu${n},${c.email ?? `stu${n}@lincoln.example.org`},Student,${c.last ?? `Number${n}`},Lincoln High,${c.grad ?? '2029'},,student,SIS${n}`;
  });
}
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => from + k);

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
  await f.addTenant('lincoln', { thresholdPercent: 30 });
  await f.db.pool.query(
    `INSERT INTO schools (tenant_id, name, nces_id) SELECT id, 'Lincoln High', '062271003230' FROM tenants WHERE subdomain = 'lincoln'`,
  );
});
afterAll(async () => f?.close());

describe('a roster over several nights', () => {
  it('night 1 creates every listed user', async () => {
    const r = await f.importCsv('lincoln', csv(HEADER, ...roster(range(1, 100))));
    expect(r.status).toBe('succeeded');
    expect(r.mode).toBe('full');
    expect(r.counts).toEqual({ rows: 100, created: 100, updated: 0, unchanged: 0, deactivated: 0, reactivated: 0, errors: 0, warnings: 0 });
    const users = await f.users('lincoln');
    expect(users).toHaveLength(100);
    expect(users[0]).toMatchObject({
      username: 'stu0001',
      email: 'stu0001@lincoln.example.org',
      first_name: 'Student',
      last_name: 'Number0001',
      graduation_year: 2029,
      access_type: null,
      role: 'student',
      sis_id: 'SIS0001',
      active: true,
      created_by_import: true,
    });
    expect(users[0]?.school_id).not.toBeNull();
  });

  it('night 2: 5 changed, 3 new, 4 gone (deactivated), the rest unchanged', async () => {
    const ids = [...range(1, 96), 101, 102, 103];
    const r = await f.importCsv('lincoln', csv(HEADER, ...roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : {}))));
    expect(r.counts).toEqual({ rows: 99, created: 3, updated: 5, unchanged: 91, deactivated: 4, reactivated: 0, errors: 0, warnings: 0 });
    const users = await f.users('lincoln');
    expect(users.filter((u) => !u.active).map((u) => u.username)).toEqual(['stu0097', 'stu0098', 'stu0099', 'stu0100']);
    expect(users.find((u) => u.username === 'stu0003')?.last_name).toBe('Renamed3');
  });

  it('night 3: the same file again changes nothing and writes nothing', async () => {
    const before = await f.snapshot();
    const ids = [...range(1, 96), 101, 102, 103];
    const r = await f.importCsv('lincoln', csv(HEADER, ...roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : {}))));
    expect(r.counts).toEqual({ rows: 99, created: 0, updated: 0, unchanged: 99, deactivated: 0, reactivated: 0, errors: 0, warnings: 0 });
    expect(await f.snapshot()).toBe(before); // updated_at included: no row was touched
  });

  it('night 4: two of the deactivated come back (reactivated), one with a change', async () => {
    const ids = [...range(1, 98), 101, 102, 103];
    const r = await f.importCsv(
      'lincoln',
      csv(HEADER, ...roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : i === 98 ? { grad: '2030' } : {}))),
    );
    expect(r.counts).toEqual({ rows: 101, created: 0, updated: 0, unchanged: 99, deactivated: 0, reactivated: 2, errors: 0, warnings: 0 });
    const users = await f.users('lincoln');
    expect(users.find((u) => u.username === 'stu0098')).toMatchObject({ active: true, graduation_year: 2030 });
    expect(users.filter((u) => !u.active).map((u) => u.username)).toEqual(['stu0099', 'stu0100']);
  });
});

describe('identity and bad rows', () => {
  it('a user whose row is invalid is neither changed nor deactivated; the valid rows apply', async () => {
    const ids = [...range(1, 98), 101, 102, 103];
    const rows = roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : i === 98 ? { grad: '2030' } : {}));
    rows[9] = 'stu0010,not-an-email,Student,Changed,Lincoln High,2029,,student,SIS0010'; // line 11
    rows[10] = 'stu0011,stu0011@lincoln.example.org,Student,Number0011,Nowhere School,2029,,student,SIS0011';
    const r = await f.importCsv('lincoln', csv(HEADER, ...rows));
    expect(r.status).toBe('completed_with_errors');
    expect(r.counts).toMatchObject({ rows: 101, unchanged: 99, deactivated: 0, errors: 2 });
    expect(r.errors.map((e) => [e.line, e.column, e.value])).toEqual([
      [11, 'email', 'not-an-email'],
      [12, 'school', 'Nowhere School'],
    ]);
    const users = await f.users('lincoln');
    expect(users.find((u) => u.username === 'stu0010')).toMatchObject({ active: true, last_name: 'Number0010' });
    expect(users.find((u) => u.username === 'stu0011')?.active).toBe(true);
  });

  it('a username differing only in case is the same user (its spelling is updated)', async () => {
    const ids = [...range(1, 98), 101, 102, 103];
    const rows = roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : i === 98 ? { grad: '2030' } : {}));
    rows[0] = rows[0]!.replace('stu0001', 'STU0001');
    const r = await f.importCsv('lincoln', csv(HEADER, ...rows));
    expect(r.counts).toMatchObject({ created: 0, updated: 1, unchanged: 100, deactivated: 0 });
    const users = await f.users('lincoln');
    expect(users.filter((u) => u.username.toLowerCase() === 'stu0001').map((u) => u.username)).toEqual(['STU0001']);
  });

  it('two rows with the same username ignoring case are both errors, and that user is kept as is', async () => {
    const ids = [...range(1, 98), 101, 102, 103];
    const rows = roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : i === 98 ? { grad: '2030' } : {}));
    rows[0] = rows[0]!.replace('stu0001', 'STU0001');
    rows.push('Stu0002,other@lincoln.example.org,Other,Person,,,,,'); // line 103 duplicates line 3
    const r = await f.importCsv('lincoln', csv(HEADER, ...rows));
    expect(r.status).toBe('completed_with_errors');
    expect(r.counts).toMatchObject({ rows: 102, created: 0, updated: 0, deactivated: 0, errors: 2 });
    expect(r.errors.map((e) => [e.line, e.column, e.value])).toEqual([
      [3, 'username', 'stu0002'],
      [103, 'username', 'Stu0002'],
    ]);
    expect(r.errors[0]?.message).toMatch(/more than once.*lines 3, 103/);
    const u = (await f.users('lincoln')).find((x) => x.username === 'stu0002');
    expect(u).toMatchObject({ active: true, email: 'stu0002@lincoln.example.org' });
  });

  it('only users that imports created are deactivated', async () => {
    await f.db.pool.query(
      `INSERT INTO users (tenant_id, username, email, created_by_import) SELECT id, 'manual.admin', 'm@x.org', false FROM tenants WHERE subdomain = 'lincoln'`,
    );
    const ids = [...range(1, 98), 101, 102, 103];
    const rows = roster(ids, (i) => (i <= 5 ? { last: `Renamed${i}` } : i === 98 ? { grad: '2030' } : {}));
    rows[0] = rows[0]!.replace('stu0001', 'STU0001');
    rows.splice(95, 3); // drop stu0096..98
    const r = await f.importCsv('lincoln', csv(HEADER, ...rows));
    expect(r.counts).toMatchObject({ deactivated: 3, errors: 0 });
    expect((await f.users('lincoln')).find((u) => u.username === 'manual.admin')?.active).toBe(true);
  });

  it('a file that lists only some users is held above the threshold and changes nothing', async () => {
    const before = await f.users('lincoln');
    const r = await f.importCsv('lincoln', csv('username,email', 'stu0050,new50@lincoln.example.org'));
    // every other import-made user is missing from this file: far above the 30 % threshold
    expect(r.status).toBe('held');
    expect(await f.users('lincoln')).toEqual(before);
  });

  it('a file with only some columns keeps the values of the columns it lacks', async () => {
    const before = (await f.users('lincoln')).filter((u) => u.active && u.created_by_import);
    const stu50 = before.find((u) => u.username === 'stu0050');
    expect(stu50).toMatchObject({ first_name: expect.any(String), last_name: expect.any(String), graduation_year: expect.any(Number) });
    // The whole roster, so nothing is deactivated, with two columns only; one email changes.
    const rows = before.map((u) => `${u.username},${u.username === 'stu0050' ? 'new50@lincoln.example.org' : u.email}`);
    const r = await f.importCsv('lincoln', csv('username,email', ...rows));
    expect(r.status, r.message ?? '').toBe('succeeded');
    expect(r.counts).toMatchObject({ updated: 1, deactivated: 0, errors: 0 });
    const after = (await f.users('lincoln')).filter((u) => u.active && u.created_by_import);
    expect(after).toEqual(before.map((u) => (u === stu50 ? { ...u, email: 'new50@lincoln.example.org' } : u)));
  });
});

describe('accents saved decomposed (a Mac spells é as e plus a combining accent)', () => {
  it('name the same users as the composed spelling: nothing created, nothing deactivated, and a rejected row still protects its user', async () => {
    await f.addTenant('nfc');
    const names = ['josé.m', 'zoë.k', 'renée.l'];
    const file = (form: 'NFC' | 'NFD', rejectLast = false) =>
      csv(
        'username,email,last name',
        ...names.map((n, i) => `${n.normalize(form)},${rejectLast && i === 2 ? 'not-an-email' : `u${i}@nfc.example`},Lée${i}`),
      );
    expect((await f.importCsv('nfc', file('NFC'))).counts).toMatchObject({ created: 3 });
    const r = await f.importCsv('nfc', file('NFD'));
    expect(r.counts).toMatchObject({ rows: 3, created: 0, updated: 0, unchanged: 3, deactivated: 0 });
    const rejected = await f.importCsv('nfc', file('NFD', true));
    expect(rejected.counts).toMatchObject({ created: 0, deactivated: 0, errors: 1 });
    const users = await f.users('nfc');
    expect(users.map((u) => [u.username, u.active])).toEqual(['josé.m', 'renée.l', 'zoë.k'].map((n) => [n.normalize('NFC'), true]));
  });

  it('in groups.csv, name the users and groups of the composed spelling', async () => {
    const r = await f.importCsv(
      'nfc',
      csv('username,owner,group', `${'josé.m'.normalize('NFD')},,${'Élan'.normalize('NFD')}`),
      'groups.csv',
    );
    expect(r.counts).toMatchObject({ errors: 0 });
    const again = await f.importCsv('nfc', csv('username,owner,group', `josé.m,,Élan`), 'groups.csv');
    expect(again.counts).toMatchObject({ errors: 0, created: 0 });
  });
});

describe('SIS IDs that Excel changed (1.23457E+17, #REF!)', () => {
  const H = 'username,last name,sis id';
  const sisIds = async () => Object.fromEntries((await f.users('excel-usd')).map((u) => [u.username, u.sis_id]));
  beforeAll(async () => f.addTenant('excel-usd'));

  it('are not used: each user keeps the SIS ID it has, a new one gets none, and the rest of the row applies', async () => {
    // first import (copied straight into users): the damaged ID is not stored
    const first = await f.importCsv('excel-usd', csv(H, 'ann.lee,Lee,123456789012345', 'bo.li,Li,#REF!', 'cy.doe,Doe,123456789012346'));
    expect(first.counts).toMatchObject({ created: 3, warnings: 1 });
    expect(await sisIds()).toEqual({ 'ann.lee': '123456789012345', 'bo.li': null, 'cy.doe': '123456789012346' });

    // the next night's file went through Excel: every long ID is damaged; one name changed, one user is new
    const r = await f.importCsv(
      'excel-usd',
      csv(H, 'ann.lee,Lee,1.23457E+14', 'bo.li,Li,1.23457E+14', 'cy.doe,Doe-Ray,1.23457E+14', 'dee.fox,Fox,1.23457E+14'),
    );
    expect(r.status).toBe('succeeded');
    expect(r.counts).toMatchObject({ created: 1, updated: 1, unchanged: 2, deactivated: 0, errors: 0, warnings: 4 });
    expect(r.warnings.map((w) => [w.line, w.column])).toEqual([
      [2, 'sis id'],
      [3, 'sis id'],
      [4, 'sis id'],
      [5, 'sis id'],
    ]);
    expect(await sisIds()).toEqual({ 'ann.lee': '123456789012345', 'bo.li': null, 'cy.doe': '123456789012346', 'dee.fox': null });
    expect((await f.users('excel-usd')).find((u) => u.username === 'cy.doe')?.last_name).toBe('Doe-Ray');

    // a delta's update keeps it too, and a clean ID is then stored as ever
    const delta = await f.importCsv('excel-usd', csv(`${H},action`, 'ann.lee,Lee-Ng,#VALUE!,update', 'bo.li,Li,S-0002,update'));
    expect(delta.counts).toMatchObject({ updated: 2, errors: 0, warnings: 1 });
    expect(await sisIds()).toMatchObject({ 'ann.lee': '123456789012345', 'bo.li': 'S-0002' });
  });
});

describe('names an export saved as ASCII wrote with question marks (Jos?, Mu?oz)', () => {
  it('do not overwrite the names rosterd has; a new user gets the name as written; each is a warning', async () => {
    await f.addTenant('ascii-usd');
    const names = async () => Object.fromEntries((await f.users('ascii-usd')).map((u) => [u.username, [u.first_name, u.last_name]]));
    await f.importCsv('ascii-usd', csv('username,first name,last name', 'jose.m,José,Muñoz', 'ann.ng,Ann,Ng', 'zoe.b,Zoë,Brontë'));
    // PowerShell 5.1's Export-Csv without -Encoding UTF8: every accented letter is a question mark.
    const r = await f.importCsv(
      'ascii-usd',
      csv('username,first name,last name', 'jose.m,Jos?,Mu?oz', 'ann.ng,Ann,Ng', 'zoe.b,Zo?,Smith', 'eva.p,?va,Pe?a'),
    );
    expect(r.counts).toMatchObject({ created: 1, updated: 1, unchanged: 2, errors: 0, warnings: 5 });
    expect(new Set(r.warnings.map((w) => w.code))).toEqual(new Set(['LETTERS_LOST']));
    expect(await names()).toEqual({
      'ann.ng': ['Ann', 'Ng'],
      'eva.p': ['?va', 'Pe?a'],
      'jose.m': ['José', 'Muñoz'],
      // A real change of last name is applied; the first name keeps its letter.
      'zoe.b': ['Zoë', 'Smith'],
    });
    // Only a question mark in place of a letter that is not ASCII is taken for a lost one.
    const other = await f.importCsv(
      'ascii-usd',
      csv('username,first name,last name', 'jose.m,Jo?e,Mu?oz', 'ann.ng,A?n,Ng', 'zoe.b,Zo?,Smith', 'eva.p,?va,Pe?a'),
    );
    expect(other.counts).toMatchObject({ updated: 2, unchanged: 2, warnings: 6 });
    expect((await names())['jose.m']).toEqual(['Jo?e', 'Muñoz']);
    expect((await names())['ann.ng']).toEqual(['A?n', 'Ng']);
  });
});

describe('a username with an invisible character', () => {
  it('is rejected, and still keeps the user it looks like from being deactivated', async () => {
    // A zero-width space pasted after an existing username: the row is an error (the username is
    // not what it looks like), and the user the administrator sees in the cell stays.
    await f.addTenant('zw', { thresholdPercent: 100 });
    await f.importCsv('zw', csv('username,email', 'jsmith01,j@zw.example', 'adoe0001,a@zw.example'));
    const r = await f.importCsv('zw', csv('username,email', 'jsmith01\u200b,j@zw.example', 'adoe0001,a@zw.example'));
    expect(r.counts).toMatchObject({ errors: 1, deactivated: 0 });
    expect(r.errors[0]?.message).toMatch(/^Username contains a zero-width space \(U\+200B\) at position 9/);
    expect((await f.users('zw')).map((u) => [u.username, u.active])).toEqual([
      ['adoe0001', true],
      ['jsmith01', true],
    ]);
  });
});

describe('another tenant', () => {
  it('has its own usernames: the same username in two tenants is two users', async () => {
    await f.addTenant('jefferson');
    const r = await f.importCsv('jefferson', csv('username,email', 'stu0001,other@jefferson.example.org'));
    expect(r.counts).toMatchObject({ created: 1, deactivated: 0 });
    expect((await f.users('lincoln')).find((u) => u.username === 'STU0001')?.email).toBe('stu0001@lincoln.example.org');
  });
});

it('a new username with the SIS ID of another user (a rename in the SIS) is imported, with a warning naming the other user and its fate', async () => {
  await f.addTenant('renames', { thresholdPercent: 100 });
  const H = 'username,email,sis id';
  await f.importCsv('renames', csv(H, 'ann.lee,ann@x.org,S-1', 'bo.li,bo@x.org,S-2', 'cy.ng,cy@x.org,S-3', 'dee.ray,dee@x.org,S-4'));
  await f.importCsv('renames', csv(`${H},action`, 'cy.ng,,,delete'));
  const file = csv(
    H,
    'ann.ng,ann@x.org,S-1', // ann.lee renamed: ann.lee is no longer listed
    'bo.li,bo@x.org,S-2',
    'bo.li2,bo2@x.org,S-2', // the same SIS ID as a user listed too
    'cy.o,cy@x.org,S-3', // the SIS ID of an inactive user
    'dee.ray,dee@x.org,S-4',
    'eve.kim,eve@x.org,S-5', // new, and no one else's
  );
  const r = await f.importCsv('renames', file);
  expect(r.status).toBe('succeeded');
  expect(r.counts).toMatchObject({ created: 4, deactivated: 1, unchanged: 2, warnings: 3 });
  const advice = (name: string, old: string) =>
    `rosterd knows a user by username, so "${name}" is a new account, without the password or groups of "${old}". ` +
    `If it is the same person and the username was not meant to change, send "${old}" again instead.`;
  expect(r.warnings.map((w) => [w.line, w.column, w.value, w.code, w.message])).toEqual([
    [
      2,
      'sis id',
      'S-1',
      'NEW_USER_SIS_ID_TAKEN',
      `New user "ann.ng" has the SIS ID "S-1" of user "ann.lee", which this file deactivates. ${advice('ann.ng', 'ann.lee')}`,
    ],
    [4, 'sis id', 'S-2', 'NEW_USER_SIS_ID_TAKEN', `New user "bo.li2" has the SIS ID "S-2" of user "bo.li". ${advice('bo.li2', 'bo.li')}`],
    [
      5,
      'sis id',
      'S-3',
      'NEW_USER_SIS_ID_TAKEN',
      `New user "cy.o" has the SIS ID "S-3" of user "cy.ng", who is inactive. ${advice('cy.o', 'cy.ng')}`,
    ],
  ]);
  // Imported again, it creates nobody, so it warns of nothing.
  expect((await f.importCsv('renames', file)).counts).toMatchObject({ created: 0, unchanged: 6, warnings: 0 });
});
