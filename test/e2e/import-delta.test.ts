/**
 * Delta files (an `action` column, PRODUCT.md §3): add, update, delete, each with its errors;
 * unlisted users are untouched.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
  await f.addTenant('delta', { thresholdPercent: 100 });
  await f.importCsv('delta', csv('username,email', 'keep0001,k1@x.org', 'keep0002,k2@x.org', 'gone0001,g1@x.org', 'back0001,b1@x.org'));
  await f.importCsv('delta', csv('username,email,action', 'back0001,,delete'));
  await f.db.pool.query(
    `INSERT INTO users (tenant_id, username, created_by_import) SELECT id, 'handmade', false FROM tenants WHERE subdomain = 'delta'`,
  );
});
afterAll(async () => f?.close());

it('applies add, update and delete; leaves unlisted users alone', async () => {
  const r = await f.importCsv(
    'delta',
    csv('username,email,action', 'newb0001,n1@x.org,add', 'KEEP0001,k1-new@x.org,update', 'gone0001,,delete', 'keep0002,k2@x.org,update'),
  );
  expect(r.mode).toBe('delta');
  expect(r.status).toBe('succeeded');
  expect(r.counts).toEqual({ rows: 4, created: 1, updated: 1, unchanged: 1, deactivated: 1, reactivated: 0, errors: 0, warnings: 0 });
  const users = await f.users('delta');
  expect(users.map((u) => [u.username, u.email, u.active])).toEqual([
    ['back0001', 'b1@x.org', false],
    ['gone0001', 'g1@x.org', false],
    ['handmade', null, true],
    ['KEEP0001', 'k1-new@x.org', true],
    ['keep0002', 'k2@x.org', true],
    ['newb0001', 'n1@x.org', true],
  ]);
});

it('add of an active user, update or delete of a missing one, and delete of a hand-made one are errors', async () => {
  const before = await f.snapshot();
  const r = await f.importCsv(
    'delta',
    csv(
      'username,email,action',
      'keep0002,x@x.org,add',
      'nobody01,,update',
      'nobody02,,delete',
      'handmade,,delete',
      'keep0001,,frobnicate',
    ),
  );
  expect(r.status).toBe('completed_with_errors');
  expect(r.counts).toMatchObject({ rows: 5, created: 0, updated: 0, deactivated: 0, errors: 5 });
  expect(r.errors.map((e) => [e.line, e.column])).toEqual([
    [2, 'username'],
    [3, 'username'],
    [4, 'username'],
    [5, 'username'],
    [6, 'action'], // the action itself is wrong
  ]);
  expect(r.errors[0]?.message).toMatch(/already exists and is active.*update/);
  expect(r.errors[1]?.message).toMatch(/does not exist.*add/);
  expect(r.errors[2]?.message).toMatch(/does not exist.*cannot be deleted/);
  expect(r.errors[3]?.message).toMatch(/not created by an import/);
  expect(await f.snapshot()).toBe(before);
});

it('add of an inactive user reactivates it and says so', async () => {
  const r = await f.importCsv('delta', csv('username,email,action', 'back0001,b1-new@x.org,add'));
  expect(r.counts).toMatchObject({ reactivated: 1, created: 0, warnings: 1 });
  expect(r.warnings[0]).toMatchObject({ line: 2, column: 'username', value: 'back0001' });
  expect(r.warnings[0]?.message).toMatch(/inactive; this row reactivates it/);
  expect((await f.users('delta')).find((u) => u.username === 'back0001')).toMatchObject({ active: true, email: 'b1-new@x.org' });
});

it('delete of an already inactive user changes nothing; re-importing a delta changes nothing', async () => {
  const file = csv('username,email,action', 'gone0001,,delete', 'KEEP0001,k1-new@x.org,update');
  const before = await f.snapshot();
  const r = await f.importCsv('delta', file);
  expect(r.counts).toMatchObject({ unchanged: 2, deactivated: 0, updated: 0, errors: 0 });
  expect(await f.snapshot()).toBe(before);
});

it('update of an inactive user applies its changes but keeps it inactive, and says to use add instead', async () => {
  const file = csv('username,email,action', 'GONE0001,g1-new@x.org,update', 'keep0002,k2@x.org,update');
  const r = await f.importCsv('delta', file);
  expect(r.status).toBe('succeeded');
  expect(r.counts).toMatchObject({ updated: 1, unchanged: 1, reactivated: 0, errors: 0, warnings: 1 });
  expect(r.warnings).toEqual([
    {
      line: 2,
      column: 'username',
      value: 'GONE0001',
      username: 'GONE0001',
      code: 'UPDATE_INACTIVE',
      message:
        'User "GONE0001" is inactive, and an update does not reactivate a user: it stays inactive. Use action "add" to bring the user back.',
    },
  ]);
  expect((await f.users('delta')).find((u) => u.username.toLowerCase() === 'gone0001')).toMatchObject({
    active: false,
    email: 'g1-new@x.org',
  });
  // Sent again, nothing changes, and the user is still not back: still said.
  const again = await f.importCsv('delta', file);
  expect(again.counts).toMatchObject({ updated: 0, unchanged: 2, warnings: 1 });
});

it('a file whose action column has another name fails whole instead of being read as the whole roster', async () => {
  // Threshold 100 %: no safety hold would stop a full sync deactivating the users this file does not list.
  const before = await f.snapshot();
  const r = await f.importCsv('delta', csv('username,email,Operation', 'newc0001,n2@x.org,ADD', 'keep0001,,Update', 'keep0002,,delete'));
  expect(r.status).toBe('failed');
  expect(r.message).toMatch(/^Column 'Operation' holds add, update or delete on every line that has a value/);
  expect(r.message).toMatch(/rename the column 'action'/);
  expect(await f.snapshot()).toEqual(before);
});

it('an update whose blank cells clear stored values says which, on its line; values sent or already blank are not warned of', async () => {
  await f.importCsv(
    'delta',
    csv('username,email,first name,last name,action', 'clear001,c1@x.org,Ann,Lee,add', 'clear002,c2@x.org,Bo,,add', 'clear003,,Cy,Ng,add'),
  );
  const r = await f.importCsv(
    'delta',
    csv(
      'username,email,first name,last name,action',
      'clear001,,,,update', // only the username: everything goes
      'clear002,c2@x.org,,,update', // first name goes; last name was blank already
      'clear003,c3@x.org,Cy,Ng,update', // a value sent for every cell
    ),
  );
  expect(r.status).toBe('succeeded');
  expect(r.counts).toMatchObject({ updated: 3, warnings: 2 });
  expect(r.warnings).toEqual([
    {
      line: 2,
      column: 'email',
      username: 'clear001',
      code: 'UPDATE_CLEARS',
      message:
        'This row clears the email, first name and last name of user "clear001": the cells are blank, and in a file with an action column ' +
        'a blank cell clears the stored value (only a blank password keeps the current one). If they should stay, send their values in the row.',
    },
    {
      line: 3,
      column: 'first name',
      username: 'clear002',
      code: 'UPDATE_CLEARS',
      message:
        'This row clears the first name of user "clear002": the cells are blank, and in a file with an action column ' +
        'a blank cell clears the stored value (only a blank password keeps the current one). If it should stay, send its value in the row.',
    },
  ]);
  const cleared = (await f.users('delta')).filter((u) => u.username.startsWith('clear'));
  expect(cleared.map((u) => [u.username, u.email, u.first_name, u.last_name])).toEqual([
    ['clear001', null, null, null],
    ['clear002', 'c2@x.org', null, null],
    ['clear003', 'c3@x.org', 'Cy', 'Ng'],
  ]);
  // Sent again, nothing is cleared, so nothing is said.
  expect((await f.importCsv('delta', csv('username,email,first name,last name,action', 'clear001,,,,update'))).counts).toMatchObject({
    unchanged: 1,
    warnings: 0,
  });
});
