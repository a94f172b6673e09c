/**
 * A tenant's first full sync is copied straight into users (src/import/apply-users.ts, copyFresh);
 * a duplicate makes it start over the ordinary way. Either way, the outcome is the ordinary one.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';

const HEADER = 'username,email,first name,last name,role';

let f: ImportFixture;
beforeAll(async () => {
  f = await importFixture();
  // Errors in this database are logged in full (the embedded cluster logs them tersely), so that a
  // duplicate caught by the users index would show its username in the server log.
  const admin = new pg.Client({ connectionString: f.db.url });
  await admin.connect();
  await admin.query(`ALTER DATABASE ${f.db.name} SET log_error_verbosity = 'verbose'`);
  await admin.end();
  await f.addTenant('first-a');
  await f.addTenant('first-d');
  await f.addTenant('first-b');
  await f.addTenant('first-c');
});
afterAll(async () => f?.close());

describe("a tenant's first import", () => {
  it('counts every new user without a password, and keeps the first 50,000 of those warnings (the report must fit in the outbox)', async () => {
    await f.addTenant('first-nopw');
    const rows = Array.from({ length: 50_010 }, (_, i) => `u${String(i).padStart(6, '0')},`);
    const r = await f.importCsv('first-nopw', csv('username,password', ...rows));
    expect(r.status).toBe('succeeded');
    expect(r.counts).toMatchObject({ created: 50_010, warnings: 50_010 });
    const { rows: kept } = await f.db.pool.query<{ n: number; last: number }>(
      `SELECT count(*)::int AS n, max(line) AS last FROM import_issues WHERE upload_id = $1 AND kind = 'warning'`,
      [r.id],
    );
    expect(kept[0]).toEqual({ n: 50_000, last: 50_001 });
  });

  it('creates every valid row and reports the invalid ones', async () => {
    const r = await f.importCsv(
      'first-a',
      csv(HEADER, 'ann.lee,ann@x.org,Ann,Lee,student', 'bo,bo@x.org,Bo,Li,student', 'cy.doe,,Cy,,TEACHER'),
    );
    expect(r.status).toBe('completed_with_errors');
    expect(r.counts).toEqual({ rows: 3, created: 2, updated: 0, unchanged: 0, deactivated: 0, reactivated: 0, errors: 1, warnings: 0 });
    const users = await f.users('first-a');
    expect(users.map((u) => [u.username, u.email, u.role])).toEqual([
      ['ann.lee', 'ann@x.org', 'student'],
      ['cy.doe', null, 'teacher'],
    ]);
    const again = await f.importCsv(
      'first-a',
      csv(HEADER, 'ann.lee,ann@x.org,Ann,Lee,student', 'bo,bo@x.org,Bo,Li,student', 'cy.doe,,Cy,,TEACHER'),
    );
    expect(again.counts).toMatchObject({ created: 0, updated: 0, unchanged: 2, errors: 1 });
  });

  it('with a duplicate (ignoring case): both rows are errors, the rest is created, nothing else', async () => {
    const r = await f.importCsv(
      'first-b',
      csv(HEADER, 'ann.lee,ann@x.org,Ann,Lee,student', 'dan.roe,dan@x.org,Dan,Roe,staff', 'ANN.LEE,other@x.org,Ann,Other,student'),
    );
    expect(r.status).toBe('completed_with_errors');
    expect(r.counts).toEqual({ rows: 3, created: 1, updated: 0, unchanged: 0, deactivated: 0, reactivated: 0, errors: 2, warnings: 0 });
    expect(r.errors.map((e) => [e.line, e.column])).toEqual([
      [2, 'username'],
      [4, 'username'],
    ]);
    expect(r.errors[0]?.message).toMatch(/more than once.*lines 2, 4/);
    expect((await f.users('first-b')).map((u) => u.username)).toEqual(['dan.roe']);
  });

  it('a duplicate whose rows have other errors is still named on each of them (fixing those alone would not do)', async () => {
    await f.addTenant('first-e');
    const file = [
      'ann.lee,not-an-email,Ann,Lee,student', // line 2: a bad email, and line 4 repeats its username
      'dan.roe,dan@x.org,Dan,Roe,staff',
      'Ann.Lee,ann@x.org,Ann,Lee,student',
      'cy.doe,cy@x,Cy,Doe,student', // lines 5 and 6: both rows rejected for other reasons too
      'CY.DOE,cy@x.org,Cy,Doe,wizard',
    ];
    const r = await f.importCsv('first-e', csv(HEADER, ...file));
    expect(r.status).toBe('completed_with_errors');
    expect(r.counts).toMatchObject({ rows: 5, created: 1, errors: 7 });
    const duplicates = r.errors.filter((e) => /more than once/.test(e.message));
    expect(duplicates.map((e) => [e.line, e.column, e.value])).toEqual([
      [2, 'username', 'ann.lee'],
      [4, 'username', 'Ann.Lee'],
      [5, 'username', 'cy.doe'],
      [6, 'username', 'CY.DOE'],
    ]);
    expect(duplicates.map((e) => /lines (\S+ \S+);/.exec(e.message)?.[1])).toEqual(['2, 4', '2, 4', '5, 6', '5, 6']);
    // the rows' own errors stay listed beside it, line by line
    expect(r.errors.map((e) => [e.line, e.column])).toEqual([
      [2, 'email'],
      [2, 'username'],
      [4, 'username'],
      [5, 'email'],
      [5, 'username'],
      [6, 'role'],
      [6, 'username'],
    ]);
    expect((await f.users('first-e')).map((u) => u.username)).toEqual(['dan.roe']);
    // the same file again, now against a roster (the planned, not the direct, way): the same errors
    const again = await f.importCsv('first-e', csv(HEADER, ...file));
    expect(again.counts).toMatchObject({ created: 0, unchanged: 1, errors: 7 });
    expect(again.errors.map((e) => [e.line, e.column])).toEqual(r.errors.map((e) => [e.line, e.column]));
  });

  it('with a password column: hashed the ordinary way', async () => {
    const r = await f.importCsv('first-c', csv('username,password,email', 'eve.kim,secret-1,eve@x.org', 'fay.ng,,fay@x.org'));
    expect(r.counts).toMatchObject({ rows: 2, created: 2, errors: 0 });
    const users = await f.users('first-c');
    expect(users.map((u) => [u.username, u.email])).toEqual([
      ['eve.kim', 'eve@x.org'],
      ['fay.ng', 'fay@x.org'],
    ]);
  });

  const serverLog = inject('pgServerLog');
  it.skipIf(serverLog === '')(
    'a duplicate, ASCII or not, is found before the users index: no username reaches the Postgres log',
    async () => {
      const r = await f.importCsv(
        'first-d',
        csv(
          HEADER,
          'leaky.marker01,,A,B,student',
          'İpek.marker02,,C,D,student',
          'LEAKY.MARKER01,,E,F,student',
          'ipek.marker02,,G,H,student',
        ),
      );
      expect(r.counts).toMatchObject({ rows: 4, created: 0, errors: 4 });
      expect(r.errors.map((e) => e.line)).toEqual([2, 3, 4, 5]);
      const log = readFileSync(serverLog, 'utf8');
      expect(log).toMatch(/database system is ready/); // it is the running server's log
      expect(log.toLowerCase()).not.toMatch(/marker0/);
    },
  );
});
