/**
 * The `status` column of users.csv (what `rosterd export users` writes, PRODUCT.md §7): `inactive`
 * lists a user who ends up inactive, in a full sync and in a delta's add and update; such a
 * deactivation counts toward the safety hold like a user left out; blank and `active` are as
 * before; any other value is read as blank, with one warning for the file.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyPassword } from '../../src/import/password.js';
import { approveImport } from '../../src/import/run-import.js';
import { validateFile } from '../../src/import/validate.js';
import { csv, importFixture, names, users, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
});
afterAll(async () => f?.close());

/** username → active, for the users of a tenant. */
async function activeOf(tenant: string): Promise<Record<string, boolean>> {
  return Object.fromEntries((await f.users(tenant)).map((u) => [u.username, u.active]));
}

/** `rosterd validate` of `content` for `tenant`: the counts an import of it would have. */
async function validate(tenant: string, content: string): Promise<Record<string, number>> {
  const file = path.join(f.dataDir, `validate-${tenant}-${Date.now()}.csv`);
  writeFileSync(file, content);
  return { ...(await validateFile(f.ctx, { tenant, file })).counts };
}

/** `user001,u1@district.example.org,STATUS` rows. */
const withStatus = (from: number, to: number, status: (name: string) => string = () => ''): string[] =>
  users(from, to).map((u) => `${u},${status(u.split(',')[0] as string)}`);

describe('a full sync listing only users it deactivates', () => {
  it('is applied (above no threshold), not refused as a file none of whose rows could be used', async () => {
    const T = 'status-only';
    await f.addTenant(T, { thresholdPercent: 100 });
    await f.importCsv(T, csv('username,email', ...users(1, 4)));
    const r = await f.importCsv(T, csv('username,email,status', ...withStatus(1, 2, () => 'inactive')));
    expect(r).toMatchObject({ status: 'succeeded', message: null, counts: { rows: 2, deactivated: 4, errors: 0 } });
    expect(Object.values(await activeOf(T))).toEqual([false, false, false, false]);
  });
});

describe('full sync', () => {
  const T = 'status-full';
  beforeAll(async () => {
    await f.addTenant(T, { thresholdPercent: 50 });
    await f.importCsv(T, csv('username,email', ...users(1, 10)));
    await f.importCsv(T, csv('username,email', ...users(1, 9))); // user010 leaves: inactive
  });

  it('status inactive deactivates an active user, keeps an inactive one inactive (its changes applied), creates a new one inactive', async () => {
    const file = csv(
      'username,email,Status,password',
      ...withStatus(1, 9, (u) => (u === 'user001' ? 'inactive' : u === 'user002' ? 'Active' : '')).map((row) => `${row},`),
      'user010,u10-new@district.example.org, INACTIVE ,Secret-010',
      'user011,u11@district.example.org,Inactive,',
    );
    const dryRun = await validate(T, file);
    const r = await f.importCsv(T, file);
    expect(r.status).toBe('succeeded');
    expect(r.counts).toEqual({ rows: 11, created: 1, updated: 1, unchanged: 8, deactivated: 1, reactivated: 0, errors: 0, warnings: 1 });
    expect(r.warnings.map((w) => w.message)).toEqual([expect.stringMatching(/^New user "user011" has no password/)]);
    expect(dryRun).toEqual(r.counts);
    const after = await f.users(T);
    expect(after.filter((u) => !u.active).map((u) => u.username)).toEqual(['user001', 'user010', 'user011']);
    const u10 = after.find((u) => u.username === 'user010');
    expect(u10).toMatchObject({ email: 'u10-new@district.example.org', active: false });
    expect(await verifyPassword('Secret-010', u10!.password_hash!)).toBe(true);
    expect(after.find((u) => u.username === 'user011')).toMatchObject({ email: 'u11@district.example.org', created_by_import: true });

    // The same file again changes nothing.
    const before = await f.snapshot();
    const again = await f.importCsv(T, file);
    expect(again.counts).toMatchObject({ rows: 11, created: 0, updated: 0, unchanged: 11, deactivated: 0, reactivated: 0, errors: 0 });
    expect(await f.snapshot()).toBe(before);
  });

  it('blank or active brings them back (reactivated), as a listed user always was', async () => {
    const r = await f.importCsv(
      T,
      csv(
        'username,email,status',
        ...withStatus(1, 9, (u) => (u === 'user001' ? 'active' : '')),
        'user010,u10-new@district.example.org,',
        'user011,u11@district.example.org,ACTIVE',
      ),
    );
    expect(r.counts).toMatchObject({
      rows: 11,
      created: 0,
      updated: 0,
      unchanged: 8,
      deactivated: 0,
      reactivated: 3,
      errors: 0,
      warnings: 0,
    });
    expect(Object.values(await activeOf(T)).every(Boolean)).toBe(true);
  });

  it('an invalid row is not deactivated, whatever its status; a hand-made user is not deactivated by an import either', async () => {
    await f.db.pool.query(
      `INSERT INTO users (tenant_id, username, email, created_by_import) SELECT id, 'handmade', 'h@x.org', false FROM tenants WHERE subdomain = $1`,
      [T],
    );
    const before = await f.snapshot();
    const r = await f.importCsv(
      T,
      csv(
        'username,email,status',
        ...withStatus(1, 9).map((row) => (row.startsWith('user003,') ? 'user003,not-an-email,inactive' : row)),
        'user010,u10-new@district.example.org,',
        'user011,u11@district.example.org,',
        'handmade,h@x.org,inactive',
      ),
    );
    expect(r.status).toBe('completed_with_errors');
    expect(r.counts).toMatchObject({ rows: 12, deactivated: 0, errors: 2 });
    expect(r.errors.map((e) => [e.line, e.column, e.value])).toEqual([
      [4, 'email', 'not-an-email'],
      [13, 'username', 'handmade'],
    ]);
    expect(r.errors[1]?.message).toBe(
      'User "handmade" was not created by an import, so an import cannot deactivate it. Deactivate it by hand if it should go.',
    );
    expect(await f.snapshot()).toBe(before);
  });
});

describe('the safety hold', () => {
  const T = 'status-hold'; // default threshold: 10 %
  beforeAll(async () => {
    await f.addTenant(T);
    await f.importCsv(T, csv('username,email', ...users(1, 20)));
  });

  it('a file listing half the users as inactive is held like one leaving them out, with the same would-deactivate list', async () => {
    const before = await f.snapshot();
    const leftOut = await f.importCsv(T, csv('username,email', ...users(1, 10)));
    const inactive = csv('username,email,status', ...withStatus(1, 20, (u) => (u > 'user010' ? 'inactive' : '')));
    const dryRun = await validate(T, inactive);
    const listed = await f.importCsv(T, inactive);
    for (const r of [leftOut, listed]) {
      expect(r.status).toBe('held');
      expect(r.counts.deactivated).toBe(10);
      expect(r.message).toMatch(/would deactivate 10 of 20 active users \(50%\).*threshold of 10%.*Nothing was applied/);
      expect(r.heldDeactivations).toEqual(names(11, 20));
    }
    expect(listed.counts).toEqual({ ...leftOut.counts, rows: 20, unchanged: 10 });
    expect(dryRun).toEqual(listed.counts);
    expect(await f.snapshot()).toBe(before);

    // Approved, it deactivates them.
    const approved = await approveImport(f.ctx, listed.id, { approvedBy: 'ops@district' });
    expect(approved).toMatchObject({ status: 'succeeded', counts: { deactivated: 10, unchanged: 10, errors: 0 } });
    const active = await activeOf(T);
    expect(names(1, 20).filter((u) => !active[u])).toEqual(names(11, 20));
  });
});

describe('delta', () => {
  const T = 'status-delta';
  beforeAll(async () => {
    await f.addTenant(T, { thresholdPercent: 100 });
    await f.importCsv(T, csv('username,email', ...users(1, 6)));
    await f.importCsv(T, csv('username,action', 'user005,delete', 'user006,delete'));
    await f.db.pool.query(
      `INSERT INTO users (tenant_id, username, created_by_import) SELECT id, 'handmade', false FROM tenants WHERE subdomain = $1`,
      [T],
    );
  });

  it('add and update with status inactive: new users created inactive, active ones deactivated, inactive ones left inactive without a warning', async () => {
    const file = csv(
      'username,email,status,action',
      'user007,u7@district.example.org,inactive,add', // new: created inactive
      'user001,u1-new@district.example.org,inactive,update', // active: deactivated, its email changed
      'user005,u5-new@district.example.org,inactive,update', // inactive: changed, stays inactive, no "send add" warning
      'user006,u6@district.example.org,inactive,add', // inactive: not reactivated, nothing else changes
      'user002,,inactive,delete', // delete: status not read
      'user003,,active,delete', // delete: status not read
      'handmade,,inactive,update', // not made by an import: not deactivated by one
    );
    const dryRun = await validate(T, file);
    const r = await f.importCsv(T, file);
    expect(r.mode).toBe('delta');
    expect(r.counts).toEqual({ rows: 7, created: 1, updated: 1, unchanged: 1, deactivated: 3, reactivated: 0, errors: 1, warnings: 0 });
    expect(dryRun).toEqual(r.counts);
    expect(r.errors.map((e) => [e.line, e.value, e.message])).toEqual([[8, 'handmade', expect.stringMatching(/not created by an import/)]]);
    const after = await f.users(T);
    expect(after.map((u) => [u.username, u.active])).toEqual([
      ['handmade', true],
      ['user001', false],
      ['user002', false],
      ['user003', false],
      ['user004', true],
      ['user005', false],
      ['user006', false],
      ['user007', false],
    ]);
    expect(after.find((u) => u.username === 'user001')?.email).toBe('u1-new@district.example.org');
    expect(after.find((u) => u.username === 'user005')?.email).toBe('u5-new@district.example.org');

    const before = await f.snapshot();
    const again = await f.importCsv(T, file);
    expect(again.counts).toMatchObject({ created: 0, updated: 0, deactivated: 0, reactivated: 0, unchanged: 6, errors: 1, warnings: 0 });
    expect(await f.snapshot()).toBe(before);
  });

  it('add with status active or blank reactivates as before; update without inactive still says to send add', async () => {
    const r = await f.importCsv(T, csv('username,status,action', 'user001,active,add', 'user007,,add', 'user005,active,update'));
    expect(r.counts).toMatchObject({ reactivated: 2, updated: 0, deactivated: 0, errors: 0, warnings: 3 });
    expect(r.warnings.map((w) => [w.line, w.code])).toEqual([
      [2, 'ADD_REACTIVATED'],
      [3, 'ADD_REACTIVATED'],
      [4, 'UPDATE_INACTIVE'],
    ]);
  });
});

describe('status values rosterd does not read', () => {
  const T = 'status-sis';
  beforeAll(async () => {
    await f.addTenant(T, { thresholdPercent: 100 });
    await f.importCsv(T, csv('username,email', ...users(1, 5)));
    await f.importCsv(T, csv('username,email', ...users(1, 4))); // user005 inactive
  });

  it('are read as blank (the listed users end up active) and told in one warning naming them; no row is an error', async () => {
    const file = csv(
      'username,email,Status',
      ...withStatus(1, 5, (u) => (u === 'user005' ? 'Withdrawn' : u === 'user004' ? 'Pre-registered' : 'Enrolled')),
      'user006,u6@district.example.org,withdrawn',
    );
    const dryRun = await validate(T, file);
    const r = await f.importCsv(T, file);
    expect(r.status).toBe('succeeded');
    expect(r.counts).toEqual({ rows: 6, created: 1, updated: 0, unchanged: 4, deactivated: 0, reactivated: 1, errors: 0, warnings: 1 });
    expect(dryRun).toEqual(r.counts);
    expect(r.warnings).toEqual([
      {
        line: 1,
        column: 'status',
        code: 'STATUS_NOT_READ',
        message:
          "Column 'Status' has values other than active and inactive on 6 lines: 'Enrolled' (3 lines), 'Withdrawn' (2 lines), " +
          "'Pre-registered' (1 line). Only active and inactive are read in it: those lines were imported as if their status " +
          'were blank, so the users they list are active after the import. To deactivate a user, give them status inactive, ' +
          'or leave their row out of the file.',
      },
    ]);
    expect(Object.values(await activeOf(T))).toEqual([true, true, true, true, true, true]);
  });
});

describe("a district's first file", () => {
  it('creates the users whose status is inactive inactive, with or without passwords (each its own way of creating)', async () => {
    const status = (u: string): string => (u === 'user002' || u === 'user004' ? 'inactive' : 'active');
    // Without passwords the rows are copied straight into users; with them they are staged and hashed first.
    for (const [T, header, row] of [
      ['status-first', 'username,email,status', (u: string) => `${u},${u}@x.org,${status(u)}`],
      ['status-first-pw', 'username,email,status,password', (u: string) => `${u},${u}@x.org,${status(u)},Secret-${u}`],
    ] as const) {
      await f.addTenant(T);
      const file = csv(header, ...names(1, 4).map(row));
      const r = await f.importCsv(T, file);
      expect(r.counts, T).toMatchObject({ rows: 4, created: 4, deactivated: 0, errors: 0, warnings: 0 });
      expect(await activeOf(T), T).toEqual({ user001: true, user002: false, user003: true, user004: false });
      const { rows } = await f.db.pool.query<{ username: string }>(
        `SELECT u.username FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.subdomain = $1 AND u.deactivated_at IS NOT NULL ORDER BY 1`,
        [T],
      );
      expect(
        rows.map((x) => x.username),
        T,
      ).toEqual(['user002', 'user004']);
      const before = await f.snapshot();
      expect((await f.importCsv(T, file)).counts, T).toMatchObject({
        created: 0,
        updated: 0,
        unchanged: 4,
        deactivated: 0,
        reactivated: 0,
      });
      expect(await f.snapshot(), T).toBe(before);
    }
  });
});
