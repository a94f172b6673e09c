/**
 * The safety hold (PRODUCT.md §3): a file that would deactivate more than the tenant's threshold
 * changes nothing and is held; approval applies it against the roster as it stands then;
 * rejection discards it; neither works on an import that is not held.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RosterdError } from '../../src/errors.js';
import { approveImport, rejectImport } from '../../src/import/run-import.js';
import { getImportRecord, listImportRecords } from '../../src/import/records.js';
import { validateFile } from '../../src/import/validate.js';
import { addSchool } from '../../src/store/schools.js';
import { csv, importFixture, users, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
  await f.addTenant('hold-pct'); // default threshold: 10 %
  await f.addTenant('hold-count', { thresholdPercent: 100, thresholdCount: 2 });
  await f.importCsv('hold-pct', csv('username,email', ...users(1, 20)));
  await f.importCsv('hold-count', csv('username,email', ...users(1, 20)));
});
afterAll(async () => f?.close());

it('deactivating exactly the threshold is not held', async () => {
  const r = await f.importCsv('hold-pct', csv('username,email', ...users(1, 18)));
  expect(r.status).toBe('succeeded');
  expect(r.counts.deactivated).toBe(2); // 10 % of 20
  // Back as it was, before the next test's hold (a whole roster imported after a hold supersedes it).
  await f.importCsv('hold-pct', csv('username,email', ...users(1, 20)));
});

it('a file that would deactivate 50 % of the users is held and changes nothing', async () => {
  const before = await f.snapshot();
  const r = await f.importCsv('hold-pct', csv('username,email', ...users(1, 10), 'newuser1,n1@district.example.org'));
  expect(r.status).toBe('held');
  expect(r.counts).toMatchObject({ rows: 11, created: 1, unchanged: 10, deactivated: 10 });
  expect(r.message).toMatch(/would deactivate 10 of 20 active users \(50%\).*threshold of 10%.*Nothing was applied/);
  expect(r.heldDeactivations).toEqual(users(11, 20).map((u) => u.split(',')[0]));
  expect(await f.snapshot()).toBe(before);
});

it('approval applies the held file against the roster as it stands now, and records who and when', async () => {
  const held = (await listImportRecords(f.db.pool, { tenant: 'hold-pct' })).find((r) => r.status === 'held');
  expect(held).toBeDefined();
  // Meanwhile user020 was deactivated by someone else: approval computes against today's roster.
  await f.db.pool.query(
    `UPDATE users SET active = false WHERE username = 'user020' AND tenant_id = (SELECT id FROM tenants WHERE subdomain = 'hold-pct')`,
  );
  const r = await approveImport(f.ctx, held!.id, { approvedBy: 'ops@district' });
  expect(r.status).toBe('succeeded');
  expect(r.approvedBy).toBe('ops@district');
  expect(r.approvedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(r.counts).toMatchObject({ created: 1, deactivated: 9, unchanged: 10 });
  const active = (await f.users('hold-pct')).filter((u) => u.active).map((u) => u.username);
  expect(active).toEqual(['newuser1', ...users(1, 10).map((u) => u.split(',')[0])]);
  // approval overrides the threshold for that import only: the next big drop is held again
  const again = await f.importCsv('hold-pct', csv('username,email', 'user001,u1@district.example.org'));
  expect(again.status).toBe('held');
});

it('rejection discards a held import; approve and reject refuse an import that is not held', async () => {
  const held = (await listImportRecords(f.db.pool, { tenant: 'hold-pct' }))[0]!;
  expect(held.status).toBe('held');
  const before = await f.snapshot();
  const r = await rejectImport(f.ctx, held.id, { by: 'ops@district' });
  expect(r).toMatchObject({ status: 'rejected', rejectedBy: 'ops@district' });
  expect(await f.snapshot()).toBe(before);
  for (const act of [() => approveImport(f.ctx, held.id, { approvedBy: 'x' }), () => rejectImport(f.ctx, held.id, { by: 'x' })]) {
    const err = await act().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RosterdError);
    expect((err as RosterdError).code).toBe('IMPORT_NOT_HELD');
  }
  const done = (await listImportRecords(f.db.pool, { tenant: 'hold-pct' })).find((x) => x.status === 'succeeded')!;
  await expect(approveImport(f.ctx, done.id, { approvedBy: 'x' })).rejects.toMatchObject({ code: 'IMPORT_NOT_HELD' });
  await expect(rejectImport(f.ctx, '00000000-0000-0000-0000-000000000000', { by: 'x' })).rejects.toMatchObject({
    code: 'IMPORT_NOT_FOUND',
  });
  expect((await getImportRecord(f.db.pool, held.id))?.heldDeactivations).toHaveLength(10);
});

it('the absolute threshold count holds too', async () => {
  const r = await f.importCsv('hold-count', csv('username,email', ...users(1, 17)));
  expect(r.status).toBe('held');
  expect(r.message).toMatch(/limit of 2 deactivations/);
  const ok = await f.importCsv('hold-count', csv('username,email', ...users(1, 18)));
  expect(ok).toMatchObject({ status: 'succeeded', counts: { deactivated: 2 } });
});

it('a full sync none of whose rows could be used fails whole, whatever the threshold, rather than deactivating everyone or asking to', async () => {
  await f.addTenant('unusable-default'); // 10 %: such a file used to be held, and approving it would deactivate everyone
  await f.addTenant('unusable-never', { thresholdPercent: 100 }); // no hold: such a file used to deactivate everyone
  // SIS IDs where usernames belong: every username is too short, and none names a user.
  const sisIds = csv('username,email', 'S1,s1@district.example.org', 'S2,s2@district.example.org');
  const file = path.join(f.dataDir, 'users-sis-ids.csv');
  writeFileSync(file, sisIds);
  for (const tenant of ['unusable-default', 'unusable-never']) {
    await f.importCsv(tenant, csv('username,email', ...users(1, 6)));
    const before = await f.snapshot();
    const r = await f.importCsv(tenant, sisIds);
    const message =
      'None of the 2 rows of users.csv could be used (the first error, on line 2: Username must be at least 4 characters), ' +
      'so nothing was changed: applying it would have deactivated all 6 active users. Fix the errors and upload it again.';
    // The message says why the file was refused; the errors, which rows to fix.
    expect(r).toMatchObject({ status: 'failed', message, mode: 'full', counts: { rows: 2, created: 0, deactivated: 0, errors: 2 } });
    expect(r.errors).toEqual(
      ['S1', 'S2'].map((u, k) => ({
        line: k + 2,
        column: 'username',
        value: u,
        message: 'Username must be at least 4 characters',
        username: u,
      })),
    );
    expect(r.heldDeactivations ?? []).toEqual([]);
    expect(await f.snapshot()).toBe(before);
    expect(await validateFile(f.ctx, { tenant, file })).toMatchObject({ status: 'failed', message });
    // A row in error keeps its user: the message says how many of the active users would go.
    const some = await f.importCsv(tenant, csv('username,email', 'user001,not-an-email', 'S1,s1@district.example.org'));
    expect(some).toMatchObject({ status: 'failed', message: expect.stringMatching(/would have deactivated 5 of the 6 active users\./) });
    expect(await f.snapshot()).toBe(before);
  }
  // One usable row is a roster (held above the threshold, applied below it), and a delta of errors deactivates nobody.
  expect((await f.importCsv('unusable-default', csv('username,email', 'S1,s1@x.org', ...users(1, 1)))).status).toBe('held');
  expect(await f.importCsv('unusable-never', csv('username,email', 'S1,s1@x.org', ...users(1, 1)))).toMatchObject({
    status: 'completed_with_errors',
    counts: { unchanged: 1, deactivated: 5 },
  });
  expect(await f.importCsv('unusable-never', csv('username,action', 'S1,delete', 'user001,remove'))).toMatchObject({
    status: 'completed_with_errors',
    counts: { deactivated: 0, errors: 2 },
  });
});

it('approval of a held file none of whose rows can be used any more is refused, and the hold stays', async () => {
  await f.addTenant('unusable-later');
  await addSchool(f.db.pool, 'unusable-later', { name: 'Lincoln High' });
  await f.importCsv('unusable-later', csv('username,email', ...users(1, 20)));
  const held = await f.importCsv('unusable-later', csv('username,email,school', ...users(1, 10).map((u) => `${u},Lincoln High`)));
  expect(held.status).toBe('held');
  // The school its rows name is removed before the operator approves: read again, every row is an error.
  await f.db.pool.query(`DELETE FROM schools WHERE name = 'Lincoln High'`);
  const before = await f.snapshot();
  const record = await getImportRecord(f.db.pool, held.id);
  const err = await approveImport(f.ctx, held.id, { approvedBy: 'ops' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(RosterdError);
  expect(err).toMatchObject({ code: 'IMPORT_APPROVAL_STALE' });
  expect((err as Error).message).toMatch(
    new RegExp(
      `^import ${held.id} cannot be approved: None of the 10 rows of users\\.csv could be used \\(the first error, on line 2: .*\\), ` +
        'so nothing was changed: applying it would have deactivated 10 of the 20 active users\\. Ask the district to upload a corrected users\\.csv',
    ),
  );
  expect(await f.snapshot()).toBe(before);
  // The hold stays as it was reported: its counts, message and issues, not the refused file's rows.
  expect(await getImportRecord(f.db.pool, held.id)).toEqual(record);
  expect(record?.status).toBe('held');
});

it("the held report counts the users it would deactivate by school, and its list names each one's school: an export that missed a school shows at once", async () => {
  await f.addTenant('hold-schools');
  await addSchool(f.db.pool, 'hold-schools', { name: 'Lincoln High' });
  await addSchool(f.db.pool, 'hold-schools', { name: 'Oak Middle' });
  const row = (n: number, school: string) => `${users(n, n)[0]},${school}`;
  const all = [...Array.from({ length: 12 }, (_, i) => row(i + 1, 'Lincoln High')), row(13, 'Oak Middle'), row(14, 'Oak Middle')];
  await f.importCsv('hold-schools', csv('username,email,school', ...all));
  // The export missed Lincoln High: its 12 users would be deactivated, 86 % of the roster.
  const held = await f.importReported('hold-schools', csv('username,email,school', row(13, 'Oak Middle'), row(14, 'Oak Middle')));
  expect(held.status).toBe('held');
  const mail = await f.report(held.id);
  expect(mail.text.replace(/ {2,}/g, ' ')).toContain('Would deactivate, by school: Lincoln High 12\n');
  const list = mail.attachments.find((a) => a.filename === 'users-would-deactivate.csv')?.content ?? '';
  expect(list.split('\r\n')[0]).toBe('\uFEFFusername,email,first name,last name,school,sis id');
  expect(list).toContain('user001,u1@district.example.org,,,Lincoln High,\r\n');
});
