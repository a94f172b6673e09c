/**
 * groups.csv (PRODUCT.md §4): the user must exist; an owner must be an active Manager, School
 * Administrator or Administrator; owner without group → the owner's default group; neither is an
 * error; the memberships listed replace the earlier ones.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeRecord } from '../../src/cli/commands/import.js';
import { getImportRecord } from '../../src/import/records.js';
import { validateFile } from '../../src/import/validate.js';
import { processPending } from '../../src/schedule/process.js';
import { csv, importFixture, receivedAsSaid, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
  await f.addTenant('grp', { thresholdPercent: 100 });
  await f.importCsv(
    'grp',
    csv(
      'username,access type',
      'teach001,Manager',
      'admin001,Administrator',
      'sadmin01,School Administrator',
      'plain001,',
      'stud0001,',
      'stud0002,',
      'stud0003,',
      'exmgr001,Manager',
    ),
  );
  await f.importCsv('grp', csv('username,action', 'exmgr001,delete'));
});
afterAll(async () => f?.close());

async function memberships(): Promise<string[]> {
  const { rows } = await f.db.pool.query<{ m: string }>(
    `SELECT g.name || ':' || u.username || ':' || coalesce(o.username, '-') AS m
       FROM memberships m JOIN groups g ON g.id = m.group_id JOIN users u ON u.id = m.user_id
       LEFT JOIN users o ON o.id = g.owner_id ORDER BY 1`,
  );
  return rows.map((r) => r.m);
}

it('creates groups and memberships; owner without group uses the default group', async () => {
  const r = await f.importCsv(
    'grp',
    csv('username,owner,group', 'stud0001,teach001,Algebra 1', 'stud0002,teach001,', 'stud0003,,Chess Club', 'stud0001,sadmin01,'),
    'groups.csv',
  );
  expect(r.status).toBe('succeeded');
  expect(r.counts).toMatchObject({ rows: 4, created: 4, unchanged: 0, deactivated: 0, errors: 0 });
  // The counts are memberships, and `import show` says so rather than "created 4".
  expect(r.counted).toBe('memberships');
  expect(describeRecord(r)).toMatch(
    /^counts: {4}rows 4, memberships added 4, unchanged 0, removed 0, errors 0, warnings 0 \(a groups\.csv creates and deactivates no user\)$/m,
  );
  expect(await memberships()).toEqual([
    'Algebra 1:stud0001:teach001',
    'Chess Club:stud0003:-',
    'Default group of sadmin01:stud0001:sadmin01',
    'Default group of teach001:stud0002:teach001',
  ]);
});

it('reports each rule with its message, and applies the valid rows', async () => {
  const r = await f.importCsv(
    'grp',
    csv(
      'username,owner,group',
      'nobody01,teach001,Algebra 1',
      'stud0001,nobody02,Algebra 1',
      'stud0001,plain001,Algebra 1',
      'stud0001,exmgr001,Algebra 1',
      'stud0002,,',
      'stud0001,teach001,Algebra 1',
      'stud0003,,Chess Club',
    ),
    'groups.csv',
  );
  expect(r.status).toBe('completed_with_errors');
  expect(r.errors.map((e) => [e.line, e.column])).toEqual([
    [2, 'username'],
    [3, 'owner'],
    [4, 'owner'],
    [5, 'owner'],
    [6, expect.any(String)],
  ]);
  expect(r.errors[0]?.message).toMatch(/does not exist/);
  expect(r.errors[1]?.message).toMatch(/Owner "nobody02" does not exist/);
  expect(r.errors[2]?.message).toMatch(/not a Manager, School Administrator or Administrator/);
  expect(r.errors[3]?.message).toMatch(/not active/);
  expect(r.errors[4]?.message).toMatch(/neither an owner nor a group|owner.*group/i);
  // Full sync: memberships the file no longer lists are removed, except those of a user whose row
  // was in error, whether the engine found it (stud0001 keeps its membership in sadmin01's
  // default group) or the reader did (stud0002's only row has neither owner nor group).
  expect(await memberships()).toEqual([
    'Algebra 1:stud0001:teach001',
    'Chess Club:stud0003:-',
    'Default group of sadmin01:stud0001:sadmin01',
    'Default group of teach001:stud0002:teach001',
  ]);
  expect(r.counts).toMatchObject({ created: 0, unchanged: 2, deactivated: 0 });
});

it('re-importing the same groups.csv changes nothing', async () => {
  const file = csv('username,owner,group', 'stud0001,teach001,Algebra 1', 'stud0003,,Chess Club', 'stud0002,teach001,');
  await f.importCsv('grp', file, 'groups.csv');
  const before = await f.snapshot();
  const r = await f.importCsv('grp', file, 'groups.csv');
  expect(r.counts).toMatchObject({ created: 0, unchanged: 3, deactivated: 0, errors: 0 });
  expect(await f.snapshot()).toBe(before);
});

it('validate reads a groups*.csv file as groups.csv, and applies nothing', async () => {
  const file = path.join(f.dataDir, 'groups-tonight.csv');
  writeFileSync(file, csv('username,owner,group', 'stud0001,teach001,Algebra 2', 'nobody01,,Chess Club'));
  const before = await f.snapshot();
  const r = await validateFile(f.ctx, { tenant: 'grp', file });
  expect(r).toMatchObject({ status: 'validated', file: 'groups-tonight.csv', counts: { rows: 2, created: 1, deactivated: 3, errors: 1 } });
  expect(await f.snapshot()).toBe(before);
});

it('an over-long group name, username or owner is an error on its line, not a database error that fails the file', async () => {
  // 300 characters of 3 UTF-8 bytes (900 bytes) pass; 6,000 would exceed Postgres's btree entry limit.
  const fine = 'é'.repeat(255);
  const long = 'Algebra '.repeat(750);
  const r = await f.importCsv(
    'grp',
    csv('username,owner,group', `stud0001,,${long}`, `stud0002,,${fine}`, `${'s'.repeat(300)},,Chess Club`, `stud0003,${'t'.repeat(300)},`),
    'groups.csv',
  );
  expect(r.status).toBe('completed_with_errors');
  expect(r.errors.map((e) => [e.line, e.column, e.message])).toEqual([
    [2, 'group', 'Group name must be at most 255 characters'],
    [4, 'username', 'Username must be at most 254 characters: no user has a longer one'],
    [5, 'owner', 'Owner must be at most 254 characters: no user has a longer username'],
  ]);
  expect(r.counts).toMatchObject({ rows: 4, errors: 3 });
  expect(await memberships()).toContain(`${fine}:stud0002:-`);
});

it("a user that does not exist because the last users.csv rejected the user's row is told apart from one never listed, and an inactive user's warning names the import that deactivated it", async () => {
  await f.addTenant('why-usd', { thresholdPercent: 100 });
  const received = (id: string) => receivedAsSaid(f, id);
  await f.importCsv('why-usd', csv('username,email,access type', 'teach001,t@x.org,Manager', 'gone0001,g@x.org,', 'deleted1,d@x.org,'));
  const deletion = await f.importCsv('why-usd', csv('username,action', 'deleted1,delete'));
  expect(deletion.counts.deactivated).toBe(1);
  const last = await f.importCsv(
    'why-usd',
    csv('username,email,access type', 'teach001,t@x.org,Manager', 'newkid01,not-an-email,', 'twin0001,a@x.org,', 'Twin0001,b@x.org,'),
  );
  expect(last).toMatchObject({ status: 'completed_with_errors', counts: { deactivated: 1, errors: 3 } }); // gone0001 goes
  const g = await f.importCsv(
    'why-usd',
    csv(
      'username,owner,group',
      'newkid01,teach001,Band',
      'nobody99,teach001,Band',
      'TWIN0001,,Chess',
      'gone0001,teach001,Band',
      'deleted1,teach001,Band',
    ),
    'groups.csv',
  );
  expect(g.errors.map((e) => [e.line, e.value, e.message])).toEqual([
    [
      2,
      'newkid01',
      `User "newkid01" does not exist: the user's row in the users.csv received ${await received(last.id)} was rejected ` +
        '(line 3: Email address is not valid: it has no @) — fix that row.',
    ],
    [3, 'nobody99', 'User "nobody99" does not exist. Add the user to users.csv first.'],
    [
      4,
      'TWIN0001',
      `User "TWIN0001" does not exist: the user's row in the users.csv received ${await received(last.id)} was rejected ` +
        '(line 4: This username appears more than once in the file (lines 4, 5; usernames are compared ignoring case). List each user once.) — fix that row.',
    ],
  ]);
  expect(g.warnings.map((w) => [w.line, w.message])).toEqual([
    [
      5,
      `User "gone0001" was deactivated by the import of the users.csv received ${await received(last.id)}, which no longer listed the user; ` +
        'the membership was recorded, but means nothing until the user is active again.',
    ],
    [
      6,
      `User "deleted1" was deactivated by the import of the users.csv received ${await received(deletion.id)}, whose row deleted the user ` +
        '(action delete); the membership was recorded, but means nothing until the user is active again.',
    ],
  ]);
});

it("an inactive user's warning says which import deactivated the user and how: left out of a full sync, deleted, or given status inactive", async () => {
  await f.addTenant('how-usd', { thresholdPercent: 100 });
  const received = (id: string) => receivedAsSaid(f, id);
  const H = 'username,email,access type,status';
  await f.importCsv(
    'how-usd',
    csv(
      H,
      'teach001,t@x.org,Manager,',
      ...['keep0001', 'stfull01', 'stdel001', 'ststat01', 'stdupd01', 'stlater1', 'stold001'].map((u) => `${u},,,`),
    ),
  );
  // A delta: a delete, and an update whose status makes an active user inactive.
  const delta = await f.importCsv('how-usd', csv('username,action,status', 'stdel001,delete,', 'stdupd01,update,inactive'));
  expect(delta.counts).toMatchObject({ deactivated: 2, errors: 0 });
  // A full sync: users it no longer lists, a listed user given status inactive, a new user created inactive.
  const listed = ['teach001,t@x.org,Manager,', 'keep0001,,,', 'ststat01,,,inactive', 'stnew001,,,inactive'];
  const full = await f.importCsv('how-usd', csv(H, ...listed));
  expect(full.counts).toMatchObject({ created: 1, deactivated: 4, errors: 0 }); // stfull01, stlater1, stold001 and ststat01
  // A later full sync lists stlater1 again, still inactive but changed: it did not deactivate the user.
  const later = await f.importCsv('how-usd', csv(H, ...listed, 'stlater1,new@x.org,,inactive'));
  expect(later.counts).toMatchObject({ updated: 1, deactivated: 0, reactivated: 0 });
  // A user deactivated before rosterd kept how (migration 012): not known, and not guessed.
  await f.db.pool.query(`UPDATE users SET deactivated_import_id = NULL, deactivated_how = NULL WHERE username = 'stold001'`);

  const names = ['stfull01', 'stdel001', 'ststat01', 'stdupd01', 'stnew001', 'stlater1', 'stold001'];
  const g = await f.importCsv('how-usd', csv('username,owner,group', ...names.map((u) => `${u},teach001,Band`)), 'groups.csv');
  expect(g).toMatchObject({ status: 'succeeded', counts: { created: 7, errors: 0, warnings: 7 } });
  const tail = 'the membership was recorded, but means nothing until the user is active again.';
  const by = async (id: string, how: string) =>
    `was deactivated by the import of the users.csv received ${await received(id)}, ${how}; ${tail}`;
  expect(g.warnings.map((w) => [w.line, w.username, w.message])).toEqual([
    [2, 'stfull01', `User "stfull01" ${await by(full.id, 'which no longer listed the user')}`],
    [3, 'stdel001', `User "stdel001" ${await by(delta.id, 'whose row deleted the user (action delete)')}`],
    [4, 'ststat01', `User "ststat01" ${await by(full.id, 'whose row gave the user status inactive')}`],
    [5, 'stdupd01', `User "stdupd01" ${await by(delta.id, 'whose row gave the user status inactive')}`],
    [6, 'stnew001', `User "stnew001" ${await by(full.id, 'whose row gave the user status inactive')}`],
    [7, 'stlater1', `User "stlater1" ${await by(full.id, 'which no longer listed the user')}`],
    [8, 'stold001', `User "stold001" is inactive in the roster; ${tail}`],
  ]);
  // One code for all of them: the report's advice does not depend on the wording.
  expect(g.warnings.map((w) => w.code)).toEqual(names.map(() => 'GROUP_USER_INACTIVE'));

  // A user reactivated and deactivated again is told of by its latest deactivation.
  const back = await f.importCsv('how-usd', csv(H, ...listed, 'stlater1,new@x.org,,'));
  expect(back.counts).toMatchObject({ reactivated: 1 });
  const again = await f.importCsv('how-usd', csv('username,action', 'stlater1,delete'));
  const g2 = await f.importCsv('how-usd', csv('username,owner,group', 'stlater1,teach001,Band'), 'groups.csv');
  expect(g2.warnings.map((w) => w.message)).toEqual([
    `User "stlater1" ${await by(again.id, 'whose row deleted the user (action delete)')}`,
  ]);
});

it("a tenant's first users.csv, copied straight into users, records a row's status inactive as how the user was deactivated", async () => {
  await f.addTenant('fresh-how-usd');
  const first = await f.importCsv('fresh-how-usd', csv('username,status', 'fresh001,inactive', 'fresh002,'));
  expect(first.counts).toMatchObject({ created: 2, deactivated: 0 });
  const g = await f.importCsv('fresh-how-usd', csv('username,owner,group', 'fresh001,,Band'), 'groups.csv');
  expect(g.warnings.map((w) => w.message)).toEqual([
    `User "fresh001" was deactivated by the import of the users.csv received ${await receivedAsSaid(f, first.id)}, ` +
      'whose row gave the user status inactive; the membership was recorded, but means nothing until the user is active again.',
  ]);
});

it('a username or owner with an invisible character is named as such, and the full sync keeps that user’s memberships', async () => {
  // A zero-width space pasted after a username: the user exists (the administrator sees it in
  // users.csv), so "does not exist, add the user to users.csv" would send them the wrong way.
  await f.addTenant('zw-usd', { thresholdPercent: 100 });
  await f.importCsv('zw-usd', csv('username,access type', 'teach001,Manager', 'stud0001,', 'stud0002,'));
  await f.importCsv('zw-usd', csv('username,owner,group', 'stud0001,,Band', 'stud0002,,Band'), 'groups.csv');
  const g = await f.importCsv('zw-usd', csv('username,owner,group', 'stud0001\u200b,,Band', 'stud0002,teach001\u200b,Band'), 'groups.csv');
  expect(g.errors.map((e) => [e.line, e.column, e.message])).toEqual([
    [2, 'username', 'Username contains a zero-width space (U+200B) at position 9, which cannot be seen: type the value again in your SIS'],
    [3, 'owner', 'Owner contains a zero-width space (U+200B) at position 9, which cannot be seen: type the value again in your SIS'],
  ]);
  expect(g.counts).toMatchObject({ deactivated: 0 });
  const { rows } = await f.db.pool.query<{ username: string }>(
    `SELECT u.username FROM memberships m JOIN users u ON u.id = m.user_id JOIN tenants t ON t.id = u.tenant_id
      WHERE t.subdomain = 'zw-usd' ORDER BY 1`,
  );
  expect(rows.map((r) => r.username)).toEqual(['stud0001', 'stud0002']);
});

it("an owner that does not exist because the last users.csv rejected the owner's row is told which line to fix", async () => {
  await f.addTenant('owner-usd', { thresholdPercent: 100 });
  const last = await f.importCsv('owner-usd', csv('username,email,access type', 'stud0001,s@x.org,', 'teach001,not-an-email,Manager'));
  expect(last.counts).toMatchObject({ created: 1, errors: 1 });
  const g = await f.importCsv('owner-usd', csv('username,owner,group', 'stud0001,teach001,Band', 'stud0001,nobody99,Chess'), 'groups.csv');
  expect(g.errors.map((e) => [e.line, e.column, e.value, e.message])).toEqual([
    [
      2,
      'owner',
      'teach001',
      `Owner "teach001" does not exist: the owner's row in the users.csv received ${await receivedAsSaid(f, last.id)} was rejected ` +
        '(line 3: Email address is not valid: it has no @) — fix that row.',
    ],
    [3, 'owner', 'nobody99', 'Owner "nobody99" does not exist. The owner must be an active user.'],
  ]);
});

it('a groups.csv none of whose rows could be used fails whole instead of removing the memberships, and validate says so too', async () => {
  await f.addTenant('sis-usd', { thresholdPercent: 100 });
  await f.importCsv('sis-usd', csv('username,sis id,access type', 'teach001,T1,Manager', 'stud0001,S1,', 'stud0002,S2,', 'stud0003,S3,'));
  const good = csv(
    'username,owner,group',
    'stud0001,,Band',
    'stud0002,,Band',
    'stud0003,,Band',
    'stud0001,teach001,',
    'stud0002,teach001,',
  );
  expect((await f.importCsv('sis-usd', good, 'groups.csv')).counts).toMatchObject({ created: 5, errors: 0 });
  const before = await f.snapshot();
  const message =
    'None of the 2 rows of groups.csv could be used (the first error, on line 2: User "S1" does not exist. Add the user to users.csv first), ' +
    'so nothing was changed: applying it would have removed all 5 group memberships. Fix the errors and upload it again.';

  // The SIS exported its own IDs as usernames: every row is an error, and every membership would go.
  const sisIds = csv('username,owner,group', 'S1,,Band', 'S2,teach001,');
  const file = path.join(f.dataDir, 'groups-sis-ids.csv');
  writeFileSync(file, sisIds);
  const dry = await validateFile(f.ctx, { tenant: 'sis-usd', file });
  // The message says why the file was refused; the errors, which rows to fix.
  const errors = [
    { line: 2, column: 'username', value: 'S1', message: 'User "S1" does not exist. Add the user to users.csv first.', username: 'S1' },
    { line: 3, column: 'username', value: 'S2', message: 'User "S2" does not exist. Add the user to users.csv first.', username: 'S2' },
  ];
  expect(dry).toMatchObject({ status: 'failed', message, counts: { rows: 2, created: 0, deactivated: 0, errors: 2 } });
  expect(dry.errors).toEqual(errors);

  const id = await f.receive('sis-usd', sisIds, 'groups.csv', 'pending');
  const run = await processPending({ ...f.ctx, claimedBy: 'test:1' }, { now: true, tenant: 'sis-usd' });
  expect(run.imported).toEqual([{ id, tenant: 'sis-usd', file: 'groups.csv', status: 'failed' }]);
  expect(await f.snapshot()).toBe(before);
  const r = await getImportRecord(f.db.pool, id);
  expect(r).toMatchObject({ status: 'failed', message, counts: { rows: 2, created: 0, deactivated: 0, errors: 2 } });
  expect(r?.errors).toEqual(errors);
  expect(describeRecord(r!)).toContain(`\n\n${message}`);
  const { rows: report } = await f.db.pool.query<{ subject: string; text: string }>(
    `SELECT message->>'subject' AS subject, message->>'text' AS text FROM outbox WHERE upload_id = $1`,
    [id],
  );
  expect(report[0]?.subject).toBe('[rosterd] sis-usd: groups.csv failed — nothing imported, 2 errors');
  expect(report[0]?.text.replace(/\s+/g, ' ')).toContain(`groups.csv was not imported. ${message}`);

  // A row in error keeps its user's memberships: said as the part of them the file would remove.
  const some = await f.importCsv('sis-usd', csv('username,owner,group', 'S1,,Band', 'stud0001,nobody99,Band'), 'groups.csv');
  expect(some.message).toMatch(/^None of the 2 rows .*: applying it would have removed 3 of the 5 group memberships\./);
  expect(await f.snapshot()).toBe(before);

  // A file whose valid rows are few still applies (the rows in error are skipped), and so does one
  // that is all errors but takes nothing away.
  const one = await f.importCsv('sis-usd', csv('username,owner,group', 'S1,,Band', 'stud0001,,Band'), 'groups.csv');
  expect(one).toMatchObject({ status: 'completed_with_errors', counts: { unchanged: 1, deactivated: 4, errors: 1 } });
  await f.addTenant('sis-new', { thresholdPercent: 100 });
  await f.importCsv('sis-new', csv('username,access type', 'teach001,Manager'));
  const first = await f.importCsv('sis-new', sisIds, 'groups.csv');
  expect(first).toMatchObject({ status: 'completed_with_errors', counts: { rows: 2, created: 0, deactivated: 0, errors: 2 } });
});

it('a username or owner with a Cyrillic or Greek letter that looks Latin says which user it looks like and which letter differs', async () => {
  const of = (users: string[]) => async () => (await memberships()).filter((m) => users.some((u) => m.includes(`:${u}:`)));
  const meant = of(['stud0003', 'admin001', 'stud0002']);
  const before = await meant();
  expect(before).not.toEqual([]);
  const r = await f.importCsv(
    'grp',
    csv(
      'username,owner,group',
      'stud0001,teach001,Algebra 1',
      '\u0455tud0003,,Chess Club', // Cyrillic ѕ (a Russian keyboard layout left on)
      'stud0003,te\u0430ch001,', // Cyrillic а in the owner
      '\u0391D\u039cIN001,,Chess Club', // Greek capital alpha and mu, and another case
      'stud\uff10\uff10\uff10\uff12,,Chess Club', // full-width digits of an East Asian input method
      '\u0430nother1,,Chess Club', // no such user, spelt in Latin letters either
    ),
    'groups.csv',
  );
  expect(r.errors.map((e) => [e.line, e.column, e.message])).toEqual([
    [
      3,
      'username',
      'User "\u0455tud0003" does not exist. It looks like user "stud0003" but is not the same: it has the Cyrillic character "\u0455" (U+0455) ' +
        'where "stud0003" has "s". Type the username again in your SIS.',
    ],
    [
      4,
      'owner',
      'Owner "te\u0430ch001" does not exist. It looks like user "teach001" but is not the same: it has the Cyrillic character "\u0430" (U+0430) ' +
        'where "teach001" has "a". Type the owner\'s username again in your SIS.',
    ],
    [
      5,
      'username',
      'User "\u0391D\u039cIN001" does not exist. It looks like user "admin001" but is not the same: it has the Greek character "\u0391" (U+0391) ' +
        '(and 1 more such character) where "admin001" has "a". Type the username again in your SIS.',
    ],
    [
      6,
      'username',
      'User "stud\uff10\uff10\uff10\uff12" does not exist. It looks like user "stud0002" but is not the same: it has the full-width character ' +
        '"\uff10" (U+FF10) (and 3 more such characters) where "stud0002" has "0". Type the username again in your SIS.',
    ],
    [7, 'username', 'User "\u0430nother1" does not exist. Add the user to users.csv first.'],
  ]);
  // The users those lines meant keep their memberships, as the user of a line in error does.
  expect(await meant()).toEqual(before);
});

// Its speed (a nested loop once made it grow with lines times classes) is bench:import's to measure.
it('a first groups.csv of many new classes puts every line in its class', async () => {
  await f.addTenant('many-classes', { thresholdPercent: 100 });
  const students = Array.from({ length: 2000 }, (_, k) => `pupil${k}`);
  await f.importCsv('many-classes', ['username,access type', 'teach001,Manager', ...students.map((u) => `${u},`)].join('\n') + '\n');
  // 10,000 lines in 1,000 classes, all new: by a nested loop, 10 million comparisons of group names (7 to 15 s here).
  const lines = students.flatMap((u, k) => Array.from({ length: 5 }, (_, g) => `${u},teach001,Class ${(k * 5 + g) % 1000}`));
  const r = await f.importCsv('many-classes', ['username,owner,group', ...lines].join('\n') + '\n', 'groups.csv');
  expect(r.counts).toMatchObject({ rows: 10_000, created: 10_000, errors: 0 });
  const { rows } = await f.db.pool.query<{ classes: number; smallest: number; largest: number }>(
    `SELECT count(*)::int AS classes, min(n)::int AS smallest, max(n)::int AS largest FROM (
       SELECT count(*) AS n FROM memberships m JOIN groups g ON g.id = m.group_id JOIN tenants t ON t.id = g.tenant_id
        WHERE t.subdomain = 'many-classes' GROUP BY g.id) x`,
  );
  expect(rows[0]).toEqual({ classes: 1000, smallest: 10, largest: 10 });
});
