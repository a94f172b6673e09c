/**
 * An import is all or nothing (PRODUCT.md §3, §5): a connection killed in the middle of applying
 * leaves no partial change and the upload still claimed (for the retry); a file the reader
 * rejects is recorded as failed with its one message and nothing applied.
 */
import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runImport } from '../../src/import/run-import.js';
import { getImportRecord } from '../../src/import/records.js';
import type { ImportPoint } from '../../src/import/engine-types.js';
import { csv, importFixture, type ImportFixture } from './import-fixture.js';
import { xlsxEntries, zipArchive } from '../support/zip.js';

let f: ImportFixture;
const base = Array.from({ length: 30 }, (_, i) => `member${String(i).padStart(2, '0')},m${i}@x.org,First,Last${i}`);
beforeAll(async () => {
  f = await importFixture();
  await f.addTenant('fail', { thresholdPercent: 100 });
  await f.importCsv('fail', csv('username,email,first name,last name', ...base));
});
afterAll(async () => f?.close());

describe('a connection killed while applying', () => {
  // creates, updates and deactivations all happen in this file, so every point is mid-apply
  const next = csv(
    'username,email,first name,last name,password',
    ...base.slice(0, 20).map((r, i) => (i < 5 ? r.replace('Last', 'Changed') : r) + (i < 2 ? ',secret-pw' : ',')),
    'brandnew1,b1@x.org,New,User,secret-pw',
  );
  for (const point of ['staged', 'planned', 'hashed', 'created', 'updated', 'deactivated'] satisfies ImportPoint[]) {
    it(`at "${point}" leaves no partial change, and the upload still running`, async () => {
      const before = await f.snapshot();
      const id = await f.receive('fail', next);
      const at = async (p: ImportPoint, client: import('pg').PoolClient) => {
        if (p !== point) return;
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await f.db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        await new Promise((r) => setTimeout(r, 50));
      };
      await expect(runImport(f.ctx, id, { at })).rejects.toThrow();
      expect(await f.snapshot()).toBe(before);
      const record = await getImportRecord(f.db.pool, id);
      expect(record?.status).toBe('running');
      expect(record?.errors).toEqual([]);
      // the retry applies it
      const retried = await runImport(f.ctx, id);
      expect(retried.counts).toMatchObject({ created: 1, updated: 5, unchanged: 15, deactivated: 10 });
      // and put things back for the next case
      await f.importCsv('fail', csv('username,email,first name,last name', ...base));
      await f.db.pool.query(`UPDATE users SET password_hash = NULL, password_check = NULL`);
      await f.db.pool.query(`DELETE FROM users WHERE username = 'brandnew1'`);
    });
  }
});

describe('broken files fail cleanly and change nothing', () => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['an empty file', '', /empty/i],
    ['a header only', 'username,email\n', /no data rows|only a header|header row but no/i],
    ['no username column', 'email,first name\na@x.org,A\n', /username/i],
    ['a semicolon-separated file', 'username;email;first name\nmember00;m0@x.org;First\n', /semicolon/i],
    ['an Excel workbook', zipArchive(xlsxEntries()), /^The file is an Excel workbook \(\.xlsx\)/],
    ['users.csv compressed', zipArchive([{ name: 'users.csv', content: 'username\nmember00\n' }]), /Unzip it and upload users\.csv itself/],
    ['an HTML page', '<!DOCTYPE html><html><body>Error</body></html>\n', /web page/i],
    ['an unterminated quote', 'username,email\nmember00,"m0@x.org\nmember01,m1@x.org\n', /quote/i],
  ];
  // rejected only after thousands of rows were already streamed to Postgres
  const many = Array.from({ length: 3000 }, (_, i) => `late${String(i).padStart(5, '0')},l${i}@x.org`);
  cases.push(['an unterminated quote after 3,000 good rows', csv('username,email', ...many) + 'late99999,"oops\n', /quote/i]);
  cases.push(
    [
      'binary data (NUL bytes)',
      Buffer.from('username,email\nmember00,m0@x.org\0\0\x01\n', 'latin1'),
      /binary data \(NUL bytes\), the first on line 2 \(as a text editor counts lines\)/,
    ],
    ['NUL bytes after 3,000 good rows', csv('username,email', ...many) + 'late99999,bad\0x.org\n', /NUL bytes\), the first on line 3,002 /],
    ['a tab-separated file', 'username\temail\tfirst name\nmember00\tm0@x.org\tFirst\nmember01\tm1@x.org\tSecond\n', /separated by tabs/],
    [
      'most lines ragged',
      'username,email,role\nmember00,m0@x.org\nmember01,m1@x.org\nmember02,m2@x.org,student\n',
      /Most lines \(2 of 3\)/,
    ],
    [
      'a line over 1,000,000 characters',
      `username,sis id\nmember00,"${'y'.repeat(1_100_000)}"\n`,
      /Line 2 is longer than 1,000,000 characters/,
    ],
    ['a column named twice', 'username,Email,email address\nmember00,a@x.org,b@x.org\n', /the email column twice/],
    ['no header row', 'member00,m0@x.org\nmember01,m1@x.org\n', /no header row/],
  );
  for (const [name, content, message] of cases) {
    it(name, async () => {
      const before = await f.snapshot();
      const r = await f.importCsv('fail', content);
      expect(r.status).toBe('failed');
      expect(r.message).toMatch(message);
      expect(r.counts).toMatchObject({ created: 0, updated: 0, deactivated: 0, errors: 1 });
      expect(r.errors[0]?.message).toBe(r.message);
      expect(await f.snapshot()).toBe(before);
    });
  }
});

describe('a broken groups.csv fails cleanly and changes nothing', () => {
  const cases: [string, string, RegExp][] = [
    ['no username column', 'owner,group\nmember00,Band\n', /username/i],
    ['a semicolon-separated file', 'username;owner;group\nmember00;;Band\n', /semicolon/i],
    ['an unterminated quote', 'username,owner,group\nmember00,,"Band\nmember01,,Choir\n', /quote/i],
  ];
  for (const [name, content, message] of cases) {
    it(name, async () => {
      const before = await f.snapshot();
      const r = await f.importCsv('fail', content, 'groups.csv');
      expect(r.status).toBe('failed');
      expect(r.message).toMatch(message);
      expect(await f.snapshot()).toBe(before);
    });
  }
});

describe('the received copy is checked before it is imported', () => {
  const storedPath = async (id: string) => {
    const { rows } = await f.db.pool.query<{ stored_path: string }>('SELECT stored_path FROM uploads WHERE id = $1', [id]);
    return path.join(f.ctx.config.DATA_DIR, rows[0]!.stored_path);
  };

  it('a copy damaged on disk fails with one message and changes nothing', async () => {
    const before = await f.snapshot();
    const id = await f.receive('fail', csv('username,email,first name,last name', ...base.slice(0, 3)));
    const file = await storedPath(id);
    chmodSync(file, 0o600);
    writeFileSync(file, csv('username,email,first name,last name', 'intruder1,i@x.org,In,Truder'));
    const record = await runImport(f.ctx, id);
    expect(record.status).toBe('failed');
    expect(record.message).toMatch(/damaged on the server after it arrived \(its SHA-256 no longer matches\)/);
    expect(await f.snapshot()).toBe(before);
  });

  it('a copy that cannot be read is a failed attempt of this server (a replica without the shared volume), retried, not a failed file', async () => {
    const before = await f.snapshot();
    const id = await f.receive('fail', csv('username,email,first name,last name', ...base.slice(0, 3)));
    const file = await storedPath(id);
    const moved = `${file}.away`;
    renameSync(file, moved);
    await expect(runImport(f.ctx, id)).rejects.toThrow(
      /^cannot read the received copy .* \(ENOENT\): check that DATA_DIR is the same volume for every rosterd process/,
    );
    expect((await getImportRecord(f.db.pool, id))?.status).toBe('running');
    expect(await f.snapshot()).toBe(before);
    // The volume is back: the next attempt imports it.
    renameSync(moved, file);
    expect((await runImport(f.ctx, id)).status).toBe('succeeded');
  });
});
