/**
 * Passwords in users.csv (PRODUCT.md §3): stored only as a slow salted hash that verifies; an
 * unchanged password is recognised without hashing (a re-import hashes nothing); blank keeps the
 * current one; never in a report or an issue.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyPassword } from '../../src/import/password.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
  await f.addTenant('pw');
});
afterAll(async () => f?.close());

const H = 'username,password,email';
const file = csv(H, 'alice01,Sunshine42,a@x.org', 'bobby01,Moonlight7,b@x.org', 'carol01,,c@x.org');

it('stores a slow salted hash that verifies, and no password in clear', async () => {
  const hashed = f.hasher.hashCount;
  const r = await f.importCsv('pw', file);
  expect(r.counts).toMatchObject({ created: 3, errors: 0 });
  expect(f.hasher.hashCount - hashed).toBe(2);
  const [alice, bobby, carol] = await f.users('pw');
  expect(alice?.password_hash).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$/);
  expect(await verifyPassword('Sunshine42', alice!.password_hash!)).toBe(true);
  expect(await verifyPassword('sunshine42', alice!.password_hash!)).toBe(false);
  expect(await verifyPassword('Moonlight7', bobby!.password_hash!)).toBe(true);
  expect(carol?.password_hash).toBeNull();
  const dump =
    JSON.stringify(await f.db.pool.query('SELECT * FROM users')) + JSON.stringify(await f.db.pool.query('SELECT * FROM import_issues'));
  expect(dump).not.toContain('Sunshine42');
});

it('re-importing unchanged passwords performs no hashing and changes nothing', async () => {
  const before = await f.snapshot();
  const hashed = f.hasher.hashCount;
  const r = await f.importCsv('pw', file);
  expect(r.counts).toMatchObject({ unchanged: 3, updated: 0 });
  expect(f.hasher.hashCount).toBe(hashed);
  expect(await f.snapshot()).toBe(before);
});

it('a changed password is hashed (only that one); a blank one keeps the current password', async () => {
  const hashed = f.hasher.hashCount;
  const r = await f.importCsv('pw', csv(H, 'alice01,Sunshine43,a@x.org', 'bobby01,,b@x.org', 'carol01,,c@x.org'));
  expect(r.counts).toMatchObject({ updated: 1, unchanged: 2 });
  expect(f.hasher.hashCount - hashed).toBe(1);
  const [alice, bobby] = await f.users('pw');
  expect(await verifyPassword('Sunshine43', alice!.password_hash!)).toBe(true);
  expect(await verifyPassword('Moonlight7', bobby!.password_hash!)).toBe(true);
});

it('a password that breaks a rule is reported masked', async () => {
  const r = await f.importCsv('pw', csv(H, 'alice01,abc,a@x.org', 'bobby01,,b@x.org', 'carol01,,c@x.org'));
  expect(r.errors).toHaveLength(1);
  expect(r.errors[0]).toMatchObject({ line: 2, column: 'password' });
  expect(r.errors[0]?.value).not.toContain('abc');
  expect(JSON.stringify(r)).not.toContain(',abc');
});
