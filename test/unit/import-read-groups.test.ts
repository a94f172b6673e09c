/** groups.csv (PRODUCT.md §4): what the file alone can tell; existence and ownership are the applier's. */
import { describe, expect, it } from 'vitest';
import { readGroupsFile } from '../../src/import/read/groups-reader.js';
import { collect, fixture, readGroupsText, rejection } from '../fixtures/csv/helpers.js';

describe('groups.csv', () => {
  it('reads username, owner and group (with the owner name / group name aliases)', async () => {
    const { items, summary } = await collect(readGroupsFile(fixture('groups-valid.csv')));
    expect(summary).toMatchObject({ mode: 'full', rows: 3, errorCount: 0, columns: ['username', 'owner', 'group'] });
    expect(items).toEqual([
      { valid: true, line: 2, username: 'jsmith', owner: 'mteacher', group: 'Period 1 Algebra' },
      { valid: true, line: 3, username: 'jdoe', owner: 'mteacher', group: null },
      { valid: true, line: 4, username: 'kim.l', owner: null, group: 'Chess Club' },
    ]);
  });
  it('trims cells and keeps names as written (Postgres compares usernames ignoring case)', async () => {
    const { items } = await readGroupsText('username,owner,group\n JSmith , MTeacher ,  Period 1 \n');
    expect(items).toEqual([{ valid: true, line: 2, username: 'JSmith', owner: 'MTeacher', group: 'Period 1' }]);
  });
  it('reads a cell written as an Excel text formula (="0012345") as the text Excel shows', async () => {
    const { items } = await readGroupsText('username,owner,group\n="0012345",="0000777",="0042"\n');
    expect(items).toEqual([{ valid: true, line: 2, username: '0012345', owner: '0000777', group: '0042' }]);
  });
  it('a group name is read as people read it: invisible characters dropped, no-break spaces made spaces', async () => {
    const { items, summary } = await readGroupsText(
      'username,group\njsmith,Chess\u200b Club\njdoe,\ufeffChess Club\u200b\nkim.l,Chess\u00a0Club\nann.b,Chess\u00adClub\n',
    );
    expect(summary.errorCount).toBe(0);
    expect(items.map((i) => (i.valid ? i.group : null))).toEqual(['Chess Club', 'Chess Club', 'Chess Club', 'ChessClub']);
  });
  it('username is required', async () => {
    const { items, summary } = await readGroupsText('username,owner,group\n,mteacher,Chess\n');
    expect(items).toEqual([{ valid: false, line: 2, username: null }]);
    expect(summary.errors).toEqual([{ line: 2, column: 'username', value: '', message: 'Username is required' }]);
  });
  it('a username or owner Excel changed (scientific notation) says so, not that no such user exists', async () => {
    const { items, summary } = await readGroupsText('username,owner,group\n1.23457E+11,mteacher,Chess\njsmith,1.23457E+11,Chess\n');
    expect(items).toEqual([
      { valid: false, line: 2, username: '1.23457E+11' },
      { valid: false, line: 3, username: 'jsmith' },
    ]);
    expect(summary.errors.map((e) => [e.line, e.column])).toEqual([
      [2, 'username'],
      [3, 'owner'],
    ]);
    expect(summary.errors[0]?.message).toMatch(/^Excel changed this username: the cell holds a number in scientific notation/);
    expect(summary.errors[1]?.message).toMatch(/^Excel changed this owner's username: the cell holds a number in scientific notation/);
  });
  it('a row with neither owner nor group is an error', async () => {
    const { items, summary } = await readGroupsText('username,owner,group\njsmith,,\njdoe,,Chess\n');
    // The invalid row still names its user: a full sync keeps that user's memberships.
    expect(items).toEqual([
      { valid: false, line: 2, username: 'jsmith' },
      { valid: true, line: 3, username: 'jdoe', owner: null, group: 'Chess' },
    ]);
    expect(summary.errors).toEqual([
      {
        line: 2,
        column: 'group',
        value: '',
        message: 'Owner and group are both blank: a line needs an owner, a group or both',
        username: 'jsmith',
      },
    ]);
  });
  it('a file with only an owner column (or only a group column) is fine', async () => {
    expect((await readGroupsText('username,owner\njsmith,mteacher\n')).items[0]).toMatchObject({ owner: 'mteacher', group: null });
    expect((await readGroupsText('username,group\njsmith,Chess\n')).items[0]).toMatchObject({ owner: null, group: 'Chess' });
  });
  it('a missing username column fails the file', async () => {
    const err = await rejection(readGroupsText('owner,group\nmteacher,Chess\n'));
    expect(err.message).toBe(
      'The header row has no username column, which groups.csv requires. Add it (for example: username,owner,group) and upload the file again.',
    );
  });
  it('a header with neither owner nor group column fails the file', async () => {
    const err = await rejection(readGroupsText('username,color\njsmith,blue\n'));
    expect(err.message).toBe(
      'The header row has neither an owner nor a group column; groups.csv needs at least one of them ' +
        '(for example: username,owner,group). Add it and upload the file again.',
    );
  });
  it('a class list exported as username,teacher,class fails the file naming the columns to rename, at the header line', async () => {
    const err = await rejection(readGroupsText('\nusername,Teacher,Class Name,Section\njsmith,mteacher,Algebra,1\n'));
    expect(err.message).toBe(
      'The header row has neither an owner nor a group column; groups.csv needs at least one of them. ' +
        "If column 'Teacher' holds the owners, rename it 'owner'; if column 'Class Name' holds the groups, rename it 'group'; " +
        'then upload the file again.',
    );
    expect(err.line).toBe(2);
  });
  it('shares the broken-file checks of users.csv', async () => {
    expect((await rejection(readGroupsText(''))).message).toMatch(/^The file is empty/);
    expect((await rejection(readGroupsText('username,owner,group\n'))).message).toMatch(/^The file has a header row but no data rows/);
    expect((await rejection(readGroupsText('username;owner;group\njsmith;m;c\n'))).message).toMatch(/^The file is separated by semicolons/);
  });
  it('unknown columns are warnings; ragged rows and blank lines as in users.csv', async () => {
    const { items, summary } = await readGroupsText('username,owner,group,note\n\njsmith,m1,g1,x\njdoe,m1\nkim1,m1,g1,\n');
    expect(items.map((i) => [i.line, i.username, i.valid])).toEqual([
      [3, 'jsmith', true],
      [4, 'jdoe', false], // ragged: reported, and its user's memberships are kept
      [5, 'kim1', true],
    ]);
    expect(summary.warnings).toEqual([
      { line: 1, column: 'note', code: 'UNKNOWN_COLUMN', message: "Column 'note' is not a known column; its values were ignored" },
    ]);
    expect(summary.errors).toEqual([
      {
        line: 4,
        column: '',
        message: expect.stringMatching(
          /^This line has 2 values but the header row has 4 columns: it has no value for 'group' and 'note' \(the last 2 columns\)/,
        ),
        username: 'jdoe', // groups.csv has no password to move into its place
      },
    ]);
  });
  it('lines that repeat an earlier one (ignoring case) are one warning that counts them and names the first', async () => {
    const { items, summary } = await readGroupsText(
      'username,owner,group\njsmith,m1,Chess\njdoe1,m1,Chess\nJSMITH, M1 ,chess\njsmith,m2,Chess\n,m1,Chess\n,m1,Chess\njdoe1,m1,Chess\njsmith,m1,Chess\n',
    );
    // All are yielded: the applier adds each membership once.
    expect(items.filter((i) => i.valid)).toHaveLength(6);
    expect(summary.warnings).toEqual([
      {
        line: 4,
        column: '',
        code: 'LINES_REPEATED',
        message:
          '3 lines repeat an earlier line (the same username, owner and group), the first of them line 4, which repeats line 2; each membership is added once',
      },
    ]);
    const one = await readGroupsText('username,group\njsmith,Chess\njdoe1,Chess\njsmith,Chess\n');
    expect(one.summary.warnings).toEqual([
      {
        line: 4,
        column: '',
        code: 'LINES_REPEATED',
        message: 'Line 4 repeats line 2 (the same username, owner and group); the membership is added once',
      },
    ]);
    expect((await readGroupsText('username,owner,group\njsmith,m1,Chess\njsmith,m1,Chess 2\njsmith,,Chess\n')).summary.warnings).toEqual(
      [],
    );
  });
  it('finds repeats among 200,000 lines (its table grows as they come)', async () => {
    const lines = Array.from({ length: 200_000 }, (_, i) => `user${i},,Group ${i % 7}`);
    const { summary } = await readGroupsText(
      `username,owner,group\n${lines.join('\n')}\nUSER123456,,group ${123456 % 7}\nuser5,,Group 5\n`,
    );
    expect(summary.warnings).toEqual([
      expect.objectContaining({
        line: 200_002,
        message: expect.stringMatching(/^2 lines repeat .* line 200002, which repeats line 123458;/),
      }),
    ]);
  });
});
