/**
 * The safety hold of groups.csv (PRODUCT.md §3 safety hold, §4 full sync): a groups.csv that would
 * remove more than the tenant's threshold of its memberships (a truncated export, one taken from
 * the wrong report) is held like a users.csv that would deactivate too many users: nothing
 * applied, a report that says what would go, and an operator's approval or rejection.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeRecord } from '../../src/cli/commands/import.js';
import { getImportRecord } from '../../src/import/records.js';
import { approveImport, rejectImport } from '../../src/import/run-import.js';
import { validateFile } from '../../src/import/validate.js';
import { csv, importFixture, rosterdError, type ImportFixture } from './import-fixture.js';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
});
afterAll(async () => f?.close());

const students = Array.from({ length: 20 }, (_, k) => `stud${String(k + 1).padStart(3, '0')}`);

/** Every student in Algebra 1 (owned by teach001) and in teach001's default group: 40 memberships. */
const whole = csv('username,owner,group', ...students.map((s) => `${s},teach001,Algebra 1`), ...students.map((s) => `${s},teach001,`));

/** A tenant (default threshold, 10 %) with its 40 memberships imported. */
async function tenantWithGroups(tenant: string): Promise<void> {
  await f.addTenant(tenant);
  await f.importCsv(tenant, csv('username,access type', 'teach001,Manager', ...students.map((s) => `${s},`)));
  const first = await f.importCsv(tenant, whole, 'groups.csv');
  expect(first.counts).toMatchObject({ created: 40, deactivated: 0, errors: 0 });
}

async function memberships(tenant: string): Promise<number> {
  const { rows } = await f.db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM memberships m JOIN groups g ON g.id = m.group_id JOIN tenants t ON t.id = g.tenant_id WHERE t.subdomain = $1`,
    [tenant],
  );
  return Number(rows[0]?.n);
}

/** An export cut short after three students, with a new club: would remove 37 of the 40 memberships. */
const truncated = csv(
  'username,owner,group',
  'stud001,teach001,Algebra 1',
  'stud002,teach001,Algebra 1',
  'stud003,teach001,',
  'stud001,,Chess Club',
);

it('a groups.csv that would remove more than the threshold of memberships is held, applies nothing, and its report lists them', async () => {
  await tenantWithGroups('cut-short');
  const before = await f.snapshot();
  const r = await f.importReported('cut-short', truncated, 'groups.csv');
  expect(r.status).toBe('held');
  // What it would do: 1 membership added (in a club it would create), 3 already there, 37 removed.
  expect(r.counts).toMatchObject({ rows: 4, created: 1, unchanged: 3, deactivated: 37, errors: 0 });
  expect(r.message).toBe(
    "Held: this file would remove 37 of 40 group memberships (92.5%), more than the district's threshold of 10%. Nothing was applied. " +
      `If the file is right, approve it with "rosterd import approve ${r.id}". If not, a corrected groups.csv from the district ` +
      '(every membership, as a groups.csv always is) replaces it when that is imported; ' +
      `reject it with "rosterd import reject ${r.id}" only if none is coming.`,
  );
  // Nothing written: not the club, not its membership, not the removals.
  expect(await f.snapshot()).toBe(before);
  expect(r.heldRemovals).toHaveLength(37);
  expect(r.heldRemovals?.slice(0, 2)).toEqual([
    { username: 'stud003', group: 'Algebra 1' },
    { username: 'stud004', group: 'Algebra 1' },
  ]);
  expect(describeRecord(r)).toMatch(/^would remove \(37\): stud003 from Algebra 1, stud004 from Algebra 1, /m);

  const report = await f.report(r.id);
  expect(report.subject).toBe('[rosterd] cut-short: groups.csv held for approval — would remove 37 memberships');
  const text = report.text.replace(/\s+/g, ' ');
  expect(text).toContain('groups.csv was held and nothing has been changed yet: this file would remove 37 of 40 group memberships (92.5%)');
  expect(text).toContain('Would remove, by group: Default group of teach001 19, Algebra 1 18');
  expect(text).toContain('Check the memberships it would remove in groups-would-remove.csv.');
  expect(text).toContain(`rosterd import approve ${r.id}`);
  const list = report.attachments.find((a) => a.filename === 'groups-would-remove.csv');
  expect(list?.content.split(/\r?\n/).slice(0, 2)).toEqual(['\ufeffgroup,owner,username', 'Algebra 1,teach001,stud003']);

  // validate says the same before anything is uploaded.
  const file = path.join(f.dataDir, 'groups-cut-short.csv');
  writeFileSync(file, truncated);
  const dry = await validateFile(f.ctx, { tenant: 'cut-short', file });
  expect(dry.message).toBe(
    "An import of this file would be held: this file would remove 37 of 40 group memberships (92.5%), more than the district's threshold of 10%. " +
      'An operator would have to approve it.',
  );

  // Approved, it applies: the club is created and the 37 memberships go.
  const approved = await approveImport(f.ctx, r.id, { approvedBy: 'ops' });
  // Its message no longer says to approve or reject it, as an approved users.csv's does not.
  expect(approved).toMatchObject({
    status: 'succeeded',
    counts: { created: 1, unchanged: 3, deactivated: 37 },
    approvedBy: 'ops',
    message: null,
  });
  expect(await memberships('cut-short')).toBe(4);
});

it('a rejected hold changes nothing; within the threshold a groups.csv applies at once', async () => {
  await tenantWithGroups('rejecting');
  const before = await f.snapshot();
  const held = await f.importCsv('rejecting', truncated, 'groups.csv');
  expect(held.status).toBe('held');
  const rejected = await rejectImport(f.ctx, held.id, { by: 'ops' });
  expect(rejected.status).toBe('rejected');
  expect(rejected.message).toMatch(
    /^Was held: this file would remove 37 of 40 group memberships .* It was rejected, so nothing was applied\.$/,
  );
  expect(await f.snapshot()).toBe(before);

  // Four leave Algebra 1: 4 of 40 is exactly the threshold, not more.
  const fewer = csv(
    'username,owner,group',
    ...students.slice(4).map((s) => `${s},teach001,Algebra 1`),
    ...students.map((s) => `${s},teach001,`),
  );
  const r = await f.importCsv('rejecting', fewer, 'groups.csv');
  expect(r).toMatchObject({ status: 'succeeded', message: null, counts: { unchanged: 36, deactivated: 4 } });
  expect(await memberships('rejecting')).toBe(36);
});

it('a newer groups.csv replaces a held one; approval waits for a newer one pending, and refuses removals nobody reviewed', async () => {
  await tenantWithGroups('replaced');
  const held = await f.importCsv('replaced', truncated, 'groups.csv');
  expect(held.status).toBe('held');

  // A newer one waiting: the approval would apply the file the district has since replaced.
  const newer = await f.receive('replaced', whole, 'groups.csv', 'pending');
  const pending = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(pending.code).toBe('IMPORT_APPROVAL_STALE');
  expect(pending.message).toMatch(
    new RegExp(
      `^import ${held.id} cannot be approved: a newer groups\\.csv of replaced \\(import ${newer}, received .*\\) is waiting to be imported`,
    ),
  );
  await f.db.pool.query(`UPDATE uploads SET status = 'rejected' WHERE id = $1`, [newer]);

  // A membership made since that the file does not list either (here by hand, as an import would).
  await f.db.pool.query(
    `INSERT INTO memberships (group_id, user_id, import_id)
     SELECT g.id, u.id, $2::uuid FROM groups g JOIN users u ON u.tenant_id = g.tenant_id
      WHERE g.tenant_id = (SELECT id FROM tenants WHERE subdomain = $1) AND g.name = 'Algebra 1' AND u.username = 'teach001'`,
    ['replaced', held.id],
  );
  const before = await f.snapshot();
  const stale = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(stale.message).toBe(
    `import ${held.id} cannot be approved: the memberships changed since it was held, and it would now also remove 1 membership ` +
      'its hold report did not list (teach001 from Algebra 1). Nothing was changed. Ask the district to upload a current groups.csv, ' +
      `which replaces this one when it is imported; reject this one ("rosterd import reject ${held.id}") only if none is coming.`,
  );
  expect(await f.snapshot()).toBe(before);

  // The whole file again, imported: it replaces the held one, which can no longer be approved.
  const fixed = await f.importCsv('replaced', whole, 'groups.csv');
  expect(fixed).toMatchObject({ status: 'succeeded', counts: { unchanged: 40, deactivated: 1 } });
  const gone = await getImportRecord(f.db.pool, held.id);
  expect(gone).toMatchObject({ status: 'superseded', supersededBy: fixed.id });
  expect(gone?.message).toMatch(/A newer groups\.csv replaced it before it was decided, so nothing was applied\.$/);
  const late = await rosterdError(approveImport(f.ctx, held.id, { approvedBy: 'ops' }));
  expect(late.message).toMatch(
    /is superseded, not held: a newer groups\.csv of the tenant was imported after it, so it can no longer be approved/,
  );
});
