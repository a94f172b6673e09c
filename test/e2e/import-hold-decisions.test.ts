/**
 * What may happen to a held import while it waits (PRODUCT.md §3 safety hold, §4, §5): approval
 * applies what the hold report showed and no more; a newer users.csv supersedes it; a groups.csv
 * pushed with it waits for the decision. Also the identity rules that decide who a full sync
 * deactivates: an invalid row protects its user, whatever the letters of its username.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { getImportRecord, type ImportRecord } from '../../src/import/records.js';
import { approveImport } from '../../src/import/run-import.js';
import { enqueueImportReport } from '../../src/report/import-report.js';
import { validateFile } from '../../src/import/validate.js';
import { withNextTick } from '../../src/schedule/next-tick.js';
import { withOperatorView } from '../../src/schedule/operator-view.js';
import { processPending } from '../../src/schedule/process.js';
import { csv, importFixture, rosterdError, names, receivedAsSaid, users, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
});
afterAll(async () => f?.close());

/** Usernames in a tenant's named group. */
async function members(tenant: string, group: string): Promise<string[]> {
  const { rows } = await f.db.pool.query<{ username: string }>(
    `SELECT u.username FROM memberships m JOIN users u ON u.id = m.user_id JOIN groups g ON g.id = m.group_id
      WHERE g.name = $2 AND g.tenant_id = (SELECT id FROM tenants WHERE subdomain = $1) ORDER BY 1`,
    [tenant, group],
  );
  return rows.map((r) => r.username);
}

const run = () => processPending({ ...f.ctx, claimedBy: 'test:1' }, { now: true });
const active = async (tenant: string) => (await f.users(tenant)).filter((u) => u.active).map((u) => u.username);

/** A new tenant of 20 users, and its users.csv of 17 of them, held (3 deactivations, above the default 10%). */
async function heldRoster(tenant: string) {
  await f.addTenant(tenant);
  await f.importCsv(tenant, csv('username,email', ...users(1, 20)));
  return f.importCsv(tenant, csv('username,email', ...users(1, 17)));
}

it('approval refuses to deactivate users the hold report did not list, and changes nothing', async () => {
  const held = await heldRoster('stale-roster');
  expect(held.status).toBe('held');
  expect(held.heldDeactivations).toEqual(names(18, 20));
  // Meanwhile a delta adds ten users (imported directly, as an approval racing the scheduler might see it).
  await f.importCsv('stale-roster', csv('username,email,action', ...users(21, 30).map((u) => `${u},add`)));

  const before = await f.snapshot();
  const err = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(err.code).toBe('IMPORT_APPROVAL_STALE');
  expect(err.message).toBe(
    `import ${held.id} cannot be approved: the roster changed since it was held, and it would now also deactivate 10 users ` +
      `its hold report did not list (user021, user022, user023, user024, user025, …). Nothing was changed. ` +
      'Ask the district to upload a current users.csv, which replaces this one when it is imported; ' +
      `reject this one ("rosterd import reject ${held.id}") only if none is coming.`,
  );
  expect(await f.snapshot()).toBe(before);
  expect((await getImportRecord(f.db.pool, held.id))?.status).toBe('held');
});

it('approval of fewer deactivations than were held (someone left meanwhile) goes ahead', async () => {
  const held = await heldRoster('fewer');
  await f.importCsv('fewer', csv('username,email,action', 'user020,u20@district.example.org,delete'));
  const r = await approveImport(f.ctx, held.id, { approvedBy: 'ops' });
  expect(r.status).toBe('succeeded');
  expect(r.counts.deactivated).toBe(2);
  expect(await active('fewer')).toEqual(names(1, 17));
});

it('approval refuses a held file whose received copy changed on the server', async () => {
  const held = await heldRoster('copy-changed');
  const { rows } = await f.db.pool.query<{ stored_path: string }>('SELECT stored_path FROM uploads WHERE id = $1', [held.id]);
  const copy = `${f.dataDir}/${rows[0]!.stored_path}`;
  chmodSync(copy, 0o600);
  writeFileSync(copy, csv('username,email', ...users(1, 2)));

  const before = await f.snapshot();
  const err = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(err.code).toBe('IMPORT_APPROVAL_STALE');
  expect(err.message).toMatch(/cannot be approved: The received copy of this file was damaged on the server after it arrived/);
  expect(err.message).toMatch(
    /Nothing was changed\. Ask the district to upload the file again, which replaces this one when it is imported; reject this one \("rosterd import reject .*"\) only if none is coming\.$/,
  );
  expect(await f.snapshot()).toBe(before);
});

it('a newer users.csv supersedes a held one, which can then no longer be approved', async () => {
  await f.addTenant('newer');
  await f.receive('newer', csv('username,email', ...users(1, 20)), 'users.csv', 'pending');
  await run();
  await f.receive('newer', csv('username,email', ...users(1, 17)), 'users.csv', 'pending');
  const first = await run();
  const held = first.imported[0]!;
  expect(held.status).toBe('held');
  // The hold report tells the district what the next step below shows: a corrected file is enough.
  const { rows: holdReport } = await f.db.pool.query<{ text: string }>(`SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1`, [
    held.id,
  ]);
  expect(holdReport[0]?.text.replace(/\s+/g, ' ')).toContain(
    'upload the corrected users.csv, the whole roster without an action column: it replaces this one when it is imported, ' +
      'in the next night window, and this one is then never applied. ' +
      'Only if no corrected file is coming, ask the operator to reject this one',
  );

  const newer = await f.receive('newer', csv('username,email', ...users(1, 20), ...users(21, 25)), 'users.csv', 'pending');
  const second = await run();
  expect(second.superseded).toEqual([{ id: held.id, tenant: 'newer', file: 'users.csv', status: 'superseded' }]);
  expect(second.imported).toEqual([{ id: newer, tenant: 'newer', file: 'users.csv', status: 'succeeded' }]);
  expect(await getImportRecord(f.db.pool, held.id)).toMatchObject({ status: 'superseded', supersededBy: newer });
  // Its record no longer tells anyone to approve or reject it.
  expect((await getImportRecord(f.db.pool, held.id))?.message).toMatch(
    /^Was held: this file would deactivate 3 of 20 active users \(15%\), .*\. A newer users\.csv replaced it before it was decided, so nothing was applied\.$/,
  );
  // The district was last asked to decide on the held file: the newer file's report says it need not.
  const { rows: reports } = await f.db.pool.query<{ text: string }>(`SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1`, [
    newer,
  ]);
  expect(reports).toHaveLength(1);
  expect(reports[0]?.text).toMatch(new RegExp(`Replaces: +the held import ${held.id} received .*: it needs no decision any more`));

  const err = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(err.code).toBe('IMPORT_NOT_HELD');
  expect(err.message).toMatch(/is superseded, not held: a newer users\.csv of the tenant was imported after it/);
  expect(await active('newer')).toEqual(names(1, 25));
});

it('a delta users.csv imported while a full sync is held leaves it held, to approve against the roster with the delta applied', async () => {
  const t = 'delta-held';
  await f.addTenant(t);
  await f.importCsv(t, csv('username,email,access type', 'teach01,t@x.org,Manager', ...users(1, 20).map((u) => `${u},`)));
  const held = await f.importCsv(t, csv('username,email,access type', 'teach01,t@x.org,Manager', ...users(1, 17).map((u) => `${u},`)));
  expect(held).toMatchObject({ status: 'held', heldDeactivations: names(18, 20) });
  // The SIS's next push: one user's email changed, as a delta, with a groups.csv.
  const delta = await f.receive(t, csv('username,email,action', 'user019,new19@district.example.org,update'), 'users.csv', 'pending');
  const groups = await f.receive(t, csv('username,owner,group', 'user001,teach01,Band'), 'groups.csv', 'pending');
  const night = await processPending({ ...f.ctx, claimedBy: 'test:1' }, { now: true, tenant: t });
  expect(night.superseded).toEqual([]);
  expect(night.imported).toEqual([{ id: delta, tenant: t, file: 'users.csv', status: 'succeeded' }]);
  expect(await getImportRecord(f.db.pool, held.id)).toMatchObject({ status: 'held', supersededBy: null });
  // The groups.csv still waits for the decision on the held roster.
  expect(night.onHold).toEqual([{ tenant: t, pending: 1, heldId: held.id }]);
  expect((await getImportRecord(f.db.pool, groups))?.status).toBe('pending');
  // The delta's report does not say it replaced the held file; it says that one still waits.
  const { rows: mail } = await f.db.pool.query<{ text: string }>(`SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1`, [
    delta,
  ]);
  const text = mail[0]?.text.replace(/\s+/g, ' ') ?? '';
  expect(text).not.toMatch(/Replaces|needs no decision/);
  expect(text).toMatch(
    new RegExp(
      `The users\\.csv received [^.]+ \\(import ${held.id}\\) is still held for approval: this file has an action column, ` +
        'so it changed only the users it lists and did not replace that one\\.',
    ),
  );

  // Approved, the held roster is applied to the roster as it stands now: the delta's change stays.
  const approved = await approveImport(f.ctx, held.id, { approvedBy: 'ops' });
  expect(approved).toMatchObject({ status: 'succeeded', counts: { deactivated: 3 } });
  expect(await active(t)).toEqual(['teach01', ...names(1, 17)]);
  expect((await f.users(t)).find((u) => u.username === 'user019')).toMatchObject({ email: 'new19@district.example.org', active: false });
  const after = await processPending({ ...f.ctx, claimedBy: 'test:1' }, { now: true, tenant: t });
  expect(after.imported).toEqual([{ id: groups, tenant: t, file: 'groups.csv', status: 'succeeded' }]);
});

it('an approval given while a delta users.csv is being imported waits for it, then applies the held roster', async () => {
  const t = 'approve-during-delta';
  const held = await heldRoster(t);
  expect(held.status).toBe('held');
  const delta = await f.receive(t, csv('username,email,action', 'user002,new2@district.example.org,update'), 'users.csv', 'pending');
  let open = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  let reached = () => {};
  const staged = new Promise<void>((resolve) => (reached = resolve));
  const importHook = async (point: string) => {
    if (point !== 'staged') return;
    reached();
    await gate;
  };
  const importing = processPending({ ...f.ctx, claimedBy: 'test:1', importHook }, { now: true, tenant: t });
  try {
    await staged;
    let settled = false;
    const approval = approveImport(f.ctx, held.id, { approvedBy: 'ops' }).then(
      (r) => ((settled = true), r),
      (err: unknown) => ((settled = true), err),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The import holds the tenant's roster: the approval waits for it rather than racing it.
    expect(settled).toBe(false);
    open();
    expect((await importing).imported).toEqual([{ id: delta, tenant: t, file: 'users.csv', status: 'succeeded' }]);
    expect(await approval).toMatchObject({ status: 'succeeded', counts: { deactivated: 3 } });
  } finally {
    open();
    await importing;
  }
  expect(await active(t)).toEqual(names(1, 17));
});

it('only a whole roster that is imported supersedes a held users.csv: not one that fails, nor one whose import crashed', async () => {
  const t = 'held-kept';
  const held = await heldRoster(t);
  expect(held.status).toBe('held');
  const nightly = (ctx = f.ctx) => processPending({ ...ctx, claimedBy: 'test:1' }, { now: true, tenant: t });

  // A file that cannot be read fails, and the held one still waits for its decision.
  const broken = await f.receive(t, 'username,email\n', 'users.csv', 'pending');
  const first = await nightly();
  expect(first).toMatchObject({ superseded: [], imported: [{ id: broken, status: 'failed' }] });
  expect((await getImportRecord(f.db.pool, held.id))?.status).toBe('held');

  // An import that crashes (every attempt) changes nothing, the hold included.
  const crashing = await f.receive(t, csv('username,email', ...users(1, 20)), 'users.csv', 'pending');
  const failing = {
    ...f.ctx,
    config: { ...f.ctx.config, IMPORT_MAX_ATTEMPTS: 1 },
    importHook: async (point: string) => {
      if (point === 'deactivated') throw new Error('the database went away');
    },
  };
  const second = await nightly(failing);
  expect(second).toMatchObject({ superseded: [], failed: [{ id: crashing, status: 'failed' }] });
  expect((await getImportRecord(f.db.pool, held.id))?.status).toBe('held');

  // A whole roster held in its turn replaces the older held one.
  const newer = await f.receive(t, csv('username,email', ...users(1, 16)), 'users.csv', 'pending');
  const third = await nightly();
  expect(third.superseded).toEqual([{ id: held.id, tenant: t, file: 'users.csv', status: 'superseded' }]);
  expect(third.imported).toEqual([{ id: newer, tenant: t, file: 'users.csv', status: 'held' }]);
  expect(await getImportRecord(f.db.pool, held.id)).toMatchObject({ status: 'superseded', supersededBy: newer });
});

it("an approval's report advises on its warnings, also when the held import was recorded before warnings had codes", async () => {
  await f.addTenant('coded');
  await f.importCsv('coded', csv('username,email', ...users(1, 20)));
  // Five users gone (held); a password with spaces and a column rosterd does not know.
  const held = await f.importCsv(
    'coded',
    csv('username,email,password,Grad Yr', ...users(1, 14).map((u) => `${u},,`), 'user015,u15@x.org, Secret-15 ,2031'),
  );
  expect(held.status).toBe('held');
  const stored = async () =>
    (
      await f.db.pool.query<{ code: string | null }>(
        `SELECT code FROM import_issues WHERE upload_id = $1 AND kind = 'warning' ORDER BY line`,
        [held.id],
      )
    ).rows.map((r) => r.code);
  expect(await stored()).toEqual(['UNKNOWN_COLUMN', 'PASSWORD_TRIMMED']);
  // As rosterd before migration 009 left it: no codes, and (for all this version knows) other words.
  await f.db.pool.query(`UPDATE import_issues SET code = NULL, message = 'worded by an older rosterd' WHERE upload_id = $1`, [held.id]);

  await approveImport(f.ctx, held.id, {
    approvedBy: 'ops',
    onOutcome: (client, record) =>
      enqueueImportReport(client, record, { from: 'rosterd@example.org', now: new Date() }).then(() => undefined),
  });
  // The approval read the file again: its warnings are this version's, and so is the advice.
  expect(await stored()).toEqual(['UNKNOWN_COLUMN', 'PASSWORD_TRIMMED']);
  const { rows } = await f.db.pool.query<{ text: string }>(`SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1 ORDER BY id`, [
    held.id,
  ]);
  const approval = rows.at(-1)?.text.replace(/\s+/g, ' ') ?? '';
  expect(approval).toContain('approved by ops');
  expect(approval).toContain(
    'Some passwords started or ended with spaces, which were removed: tell those users to sign in without the spaces',
  );
  expect(approval).toContain('Columns with names rosterd does not know were ignored (see the warnings).');
  expect(approval).not.toContain('worded by an older rosterd');
});

it('approval is refused while a newer users.csv waits to be imported, which replaces the held one', async () => {
  await f.addTenant('newer-pending');
  await f.importCsv('newer-pending', csv('username,email', ...users(1, 20)));
  const held = await f.importCsv('newer-pending', csv('username,email', ...users(1, 10)));
  expect(held.status).toBe('held');
  // The district's corrected file arrives and waits for the window.
  const newer = await f.receive('newer-pending', csv('username,email', ...users(1, 20)), 'users.csv', 'pending');
  const before = await f.snapshot();
  const err = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(err.code).toBe('IMPORT_APPROVAL_STALE');
  expect(err.message).toMatch(
    new RegExp(
      `^import ${held.id} cannot be approved: a newer users\\.csv of newer-pending \\(import ${newer}, received \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d[-+]\\d\\d:\\d\\d\\) is waiting`,
    ),
  );
  // Rejecting it could be work for nothing: the newer file replaces it if it is a whole roster.
  expect(err.message).toMatch(
    /and replaces it at the next run if it is a whole roster\. Nothing was changed\. "rosterd import run --tenant newer-pending --now" imports the newer one now; if it has an action column \(a delta\), this one stays held, to approve or reject after it\.$/,
  );
  expect(await f.snapshot()).toEqual(before);
  expect((await getImportRecord(f.db.pool, held.id))?.status).toBe('held');
  expect(await active('newer-pending')).toEqual(names(1, 20));
  // The newer file is imported at the next run and replaces the held one.
  const night = await run();
  expect(night.imported.find((i) => i.id === newer)?.status).toBe('succeeded');
  expect((await getImportRecord(f.db.pool, held.id))?.status).toBe('superseded');
});

it('a groups.csv waits while the users.csv pushed with it is held, and is imported after the approval', async () => {
  await f.addTenant('groups-wait');
  await f.receive(
    'groups-wait',
    csv('username,email,access type', 'teach01,t@district.example.org,Manager', ...users(1, 20).map((u) => `${u},`)),
    'users.csv',
    'pending',
  );
  await run();
  // Tonight's push: two new students, five gone (held), and their groups.
  await f.receive(
    'groups-wait',
    csv(
      'username,email,access type',
      'teach01,t@district.example.org,Manager',
      ...users(1, 15).map((u) => `${u},`),
      'new001,n1@x.org,',
      'new002,n2@x.org,',
    ),
    'users.csv',
    'pending',
  );
  const groups = await f.receive(
    'groups-wait',
    csv('username,owner,group', 'new001,teach01,Band', 'new002,teach01,Band', 'user001,teach01,Band'),
    'groups.csv',
    'pending',
  );
  const night = await run();
  expect(night.imported.map((i) => [i.file, i.status])).toEqual([['users.csv', 'held']]);
  const heldId = night.imported[0]!.id;
  expect(night.onHold).toEqual([{ tenant: 'groups-wait', pending: 1, heldId }]);
  expect((await getImportRecord(f.db.pool, groups))?.status).toBe('pending');
  const record = (await getImportRecord(f.db.pool, groups))!;
  const [view] = await withNextTick('*/5 * * * *', (nextTick) =>
    withOperatorView(f.db.pool, [record], new Date(), { nextTick, settleMs: 0 }),
  );
  expect(view?.schedule).toMatchObject({
    nextRunAt: null,
    note: `waiting until the held users.csv is decided: "rosterd import approve ${heldId}" or "rosterd import reject ${heldId}"`,
  });
  // The hold report tells the administrator that the groups wait too.
  const { rows: mail } = await f.db.pool.query<{ text: string }>(`SELECT message->>'text' AS text FROM outbox WHERE upload_id = $1`, [
    heldId,
  ]);
  expect(mail[0]?.text.replace(/\s+/g, ' ')).toMatch(
    /The groups\.csv received \w+day, \w+ \d+, \d{4}, [\d:]+ [AP]M \w+ \(America\/New_York\) waits until this import is approved, rejected or replaced by a corrected users\.csv: it is imported at the first run after that, against the users as they are then\./,
  );

  await approveImport(f.ctx, heldId, { approvedBy: 'ops' });
  const next = await run();
  expect(next.imported).toEqual([{ id: groups, tenant: 'groups-wait', file: 'groups.csv', status: 'succeeded' }]);
  expect(await members('groups-wait', 'Band')).toEqual(['new001', 'new002', 'user001']);
});

it('a groups full sync keeps the memberships of a user whose line the reader rejected', async () => {
  await f.addTenant('groups-keep', { thresholdPercent: 100 }); // 1 of 3 memberships removed: not held
  await f.importCsv('groups-keep', csv('username,access type', 'teach01,Manager', 'stu001,', 'stu002,', 'stu003,'));
  const first = await f.importCsv(
    'groups-keep',
    csv('username,owner,group', 'stu001,,Chess', 'stu002,,Chess', 'stu003,,Chess'),
    'groups.csv',
  );
  expect(first.counts.created).toBe(3);
  // stu001: neither owner nor group; stu002: a ragged line; stu003 left out (removed).
  const second = await f.importCsv('groups-keep', csv('username,owner,group', 'stu001,,', 'stu002', 'teach01,,Chess'), 'groups.csv');
  expect(second.errors.map((e) => e.line)).toEqual([2, 3]);
  expect(second.counts).toMatchObject({ errors: 2, created: 1, deactivated: 1 });
  expect(await members('groups-keep', 'Chess')).toEqual(['stu001', 'stu002', 'teach01']);
});

it('a first import reports a valid row and an invalid row with the same username both as errors, as validate does', async () => {
  await f.addTenant('first-dup');
  const file = csv('username,email', 'alice1,a@x.org', 'ALICE1,not-an-email', 'bob001,b@x.org');
  const path = `${f.dataDir}/first-dup.csv`;
  writeFileSync(path, file);
  const dry = await validateFile(f.ctx, { tenant: 'first-dup', file: path });
  const r = await f.importCsv('first-dup', file);
  expect(r.counts).toMatchObject({ created: 1, errors: 3 });
  expect(r.counts).toEqual(dry.counts);
  // the invalid row is told of the duplicate too: fixing its email alone would only meet it next
  expect(r.errors.map((e) => [e.line, e.column])).toEqual([
    [2, 'username'],
    [3, 'email'],
    [3, 'username'],
  ]);
  expect(await active('first-dup')).toEqual(['bob001']);
});

it('non-ASCII usernames: an invalid row protects its user, and an owner matches as written', async () => {
  await f.addTenant('unicode');
  await f.importCsv('unicode', csv('username,email,access type', 'ÉLODIE,e@x.org,', 'José.Ávila,j@x.org,Manager', 'ΟΔΥΣΣΕΑΣ,o@x.org,'));
  // ÉLODIE's and ΟΔΥΣΣΕΑΣ's rows are invalid (bad email): neither may be deactivated.
  const r = await f.importCsv('unicode', csv('username,email,access type', 'ÉLODIE,bad,', 'José.Ávila,j@x.org,Manager', 'ΟΔΥΣΣΕΑΣ,bad,'));
  expect(r.counts).toMatchObject({ errors: 2, deactivated: 0 });
  expect(await active('unicode')).toEqual(expect.arrayContaining(['ÉLODIE', 'José.Ávila', 'ΟΔΥΣΣΕΑΣ']));
  const g = await f.importCsv('unicode', csv('username,owner,group', 'ÉLODIE,José.Ávila,'), 'groups.csv');
  expect(g.errors).toEqual([]);
  expect(g.counts.created).toBe(1);
});

it('of several pending groups.csv only the newest is imported; the older ones are superseded by it', async () => {
  await f.addTenant('groups-newest');
  await f.receive('groups-newest', csv('username,access type', 'teach01,Manager', 'stu001,', 'stu002,'), 'users.csv', 'pending');
  await run();
  const older = await f.receive('groups-newest', csv('username,owner,group', 'stu001,nobody99,Band'), 'groups.csv', 'pending');
  const newer = await f.receive('groups-newest', csv('username,owner,group', 'stu002,teach01,Band'), 'groups.csv', 'pending');
  const r = await run();
  expect(r.superseded).toEqual([{ id: older, tenant: 'groups-newest', file: 'groups.csv', status: 'superseded' }]);
  expect(r.imported).toEqual([{ id: newer, tenant: 'groups-newest', file: 'groups.csv', status: 'succeeded' }]);
  expect(await getImportRecord(f.db.pool, older)).toMatchObject({ status: 'superseded', supersededBy: newer });
});

it('usernames differing only in the case of a non-ASCII letter are one user where the database folds them (the embedded one does)', async () => {
  const { rows } = await f.db.pool.query<{ ctype: string }>(`SELECT datctype AS ctype FROM pg_database WHERE datname = current_database()`);
  const folds = rows[0]?.ctype !== 'C' && rows[0]?.ctype !== 'POSIX';
  // The tests' embedded Postgres is created as `rosterd serve` creates it: with C.UTF-8 character types.
  if (process.env.DATABASE_URL === undefined) expect(rows[0]?.ctype).toBe('C.UTF-8');
  await f.addTenant('folding');
  const r = await f.importCsv('folding', csv('username,email', 'élodie1,e@x.org', 'ÉLODIE1,e2@x.org', 'ana0001,a@x.org'));
  if (folds) {
    expect(r.errors.map((e) => [e.line, e.column])).toEqual([
      [2, 'username'],
      [3, 'username'],
    ]);
    expect(await active('folding')).toEqual(['ana0001']);
  } else {
    expect(r.counts.created).toBe(3); // README: a C LC_CTYPE folds A-Z only; doctor warns
  }
});

it('lines applied not quite as written are warnings: an inactive user put in a group, an owner a group does not take, a new user without a password', async () => {
  await f.addTenant('warn-usd', { thresholdPercent: 50 });
  const people = ['teach01,Manager,t1pass01', 'teach02,Manager,t2pass02', 'stu001,,s1pass01', 'stu002,,s2pass02'];
  await f.importCsv('warn-usd', csv('username,access type,password', ...people));
  await f.importCsv('warn-usd', csv('username,owner,group', 'stu001,teach01,Band'), 'groups.csv');
  const users = await f.importCsv('warn-usd', csv('username,access type,password', ...people.slice(0, 3), 'new0001,,'));
  expect(users.counts).toMatchObject({ created: 1, deactivated: 1 }); // stu002 gone
  expect(users.warnings).toEqual([
    {
      line: 5,
      column: 'password',
      code: 'NEW_USER_WITHOUT_PASSWORD',
      message: 'New user "new0001" has no password, so it cannot sign in with one until a password is set.',
      username: 'new0001',
    },
  ]);
  const g = await f.importCsv('warn-usd', csv('username,owner,group', 'stu001,teach02,Band', 'stu002,,Band'), 'groups.csv');
  expect(g.status).toBe('succeeded');
  expect(g.warnings).toEqual([
    {
      line: 2,
      column: 'owner',
      value: 'teach02',
      username: 'stu001', // the row's user; the owner is the value
      code: 'GROUP_OWNER_IGNORED',
      message:
        'Group "Band" already has an owner (teach01); the owner on this line was not applied. A group keeps the owner it was created with.',
    },
    {
      line: 3,
      column: 'username',
      value: 'stu002',
      username: 'stu002',
      code: 'GROUP_USER_INACTIVE',
      message: `User "stu002" was deactivated by the import of the users.csv received ${await receivedAsSaid(f, users.id)}, which no longer listed the user; the membership was recorded, but means nothing until the user is active again.`,
    },
  ]);
  expect(g.counts.warnings).toBe(2);
  expect(await members('warn-usd', 'Band')).toEqual(['stu001', 'stu002']);
});

it('the metrics hear of every outcome: a superseded upload, and one that failed after its attempts', async () => {
  await f.addTenant('outcomes');
  const seen: Array<[string, string]> = [];
  const ctx = { ...f.ctx, claimedBy: 'test:1', onImported: (r: ImportRecord) => void seen.push([r.id, r.status]) };
  const older = await f.receive('outcomes', csv('username', 'user0001'), 'users.csv', 'pending');
  const newer = await f.receive('outcomes', csv('username', 'user0001', 'user0002'), 'users.csv', 'pending');
  await processPending(ctx, { now: true, tenant: 'outcomes' });
  expect(seen).toEqual([
    [older, 'superseded'],
    [newer, 'succeeded'],
  ]);
  seen.length = 0;
  const doomed = await f.receive('outcomes', csv('username', 'user0003'), 'users.csv', 'pending');
  const failing = {
    ...ctx,
    config: { ...f.ctx.config, IMPORT_MAX_ATTEMPTS: 1 },
    importHook: async (point: string) => {
      if (point === 'staged') throw new Error('the database went away');
    },
  };
  const r = await processPending(failing, { now: true, tenant: 'outcomes' });
  expect(r.failed).toEqual([expect.objectContaining({ id: doomed, status: 'failed', reason: 'the database went away' })]);
  expect(seen).toEqual([[doomed, 'failed']]);
});
