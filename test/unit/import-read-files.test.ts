/**
 * Reading users.csv as a file (issue 3, step 1): header matching, encodings, line endings, quoting,
 * line numbers, and every broken-file case with the one message it fails with.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readUsersFile } from '../../src/import/read/users-reader.js';
import { collect, fixture, NOW, readGroupsText, readUsersText, rejection, SCHOOLS, streamOf } from '../fixtures/csv/helpers.js';
import { readUsers } from '../../src/import/read/users-reader.js';
import { xlsxEntries, zipArchive } from '../support/zip.js';
import { USERS_SPEC, type UserColumn } from '../../src/import/read/headers.js';
import { IssueLog } from '../../src/import/read/summary.js';
import { readTable, type TableState } from '../../src/import/read/table-reader.js';

const fromFile = (name: string) => collect(readUsersFile(fixture(name), { schools: SCHOOLS, now: NOW }));

describe('header row', () => {
  it('matches names case-insensitively, ignoring spaces, _ and -, with the aliases', async () => {
    const header = 'User Name,EMAIL_ADDRESS,first-name,LastName,School,Graduation_Year,accessType,ROLE,mis id,Pass-Word';
    const { rows, summary } = await readUsersText(`${header}\njsmith,j@x.org,John,Smith,Lincoln High,2030,Manager,staff,42,secret99\n`);
    expect(summary.columns).toEqual([
      'username',
      'email',
      'first name',
      'last name',
      'school',
      'graduation year',
      'access type',
      'role',
      'sis id',
      'password',
    ]);
    expect(rows[0]).toMatchObject({ username: 'jsmith', email: 'j@x.org', sisId: '42', password: 'secret99' });
    for (const email of ['Email address', 'emailAddress', 'email_address', 'E-mail', 'email']) {
      const { rows: r } = await readUsersText(`username,${email}\njsmith,j@x.org\n`);
      expect(r[0]?.email, email).toBe('j@x.org');
    }
  });
  it('ignores invisible characters in a name, as spaces: a zero-width space pasted with it, a byte order mark', async () => {
    const { rows, summary } = await readUsersText('user\u200bname,e\u00admail,\ufefffirst name\u2060\njsmith,j@x.org,John\n');
    expect(summary.columns).toEqual(['username', 'email', 'first name']);
    expect(summary.warnings).toEqual([]);
    expect(rows[0]).toMatchObject({ username: 'jsmith', email: 'j@x.org', firstName: 'John' });
  });
  it('lists each unknown column as a warning on line 1, as written, and ignores its values', async () => {
    const { rows, summary } = await readUsersText('username,Favorite Color,,email\njsmith,blue,x,j@x.org\n');
    expect(rows[0]?.email).toBe('j@x.org');
    expect(summary.warnings).toEqual([
      {
        line: 1,
        column: 'Favorite Color',
        code: 'UNKNOWN_COLUMN',
        message: "Column 'Favorite Color' is not a known column; its values were ignored",
      },
      { line: 1, column: '', code: 'UNNAMED_COLUMNS', message: 'Column 3 has no name in the header row; its values were ignored' },
    ]);
    expect(summary.warningCount).toBe(2);
  });
  it('columns without a name (Excel writes thousands of trailing commas) are one warning that counts them and gives the first', async () => {
    const commas = ','.repeat(16_000);
    const { rows, summary } = await readUsersText(`username,,Favorite Color,email${commas}\njsmith,x,blue,j@x.org${commas}\n`);
    expect(rows[0]).toMatchObject({ username: 'jsmith', email: 'j@x.org' });
    expect(summary.warnings).toEqual([
      {
        line: 1,
        column: '',
        code: 'UNNAMED_COLUMNS',
        message: '16,001 columns have no name in the header row (the first is column 2); their values were ignored',
      },
      {
        line: 1,
        column: 'Favorite Color',
        code: 'UNKNOWN_COLUMN',
        message: "Column 'Favorite Color' is not a known column; its values were ignored",
      },
    ]);
    expect(summary.warningCount).toBe(2);
  });
  it('names the column an unknown one was probably meant to be: an SIS synonym or a misspelling, unless the file has that column', async () => {
    const { summary } = await readUsersText(
      'username,Grad Year,Emial,Student ID,sis id,Surname,Favorite Colour\njsmith,2030,j@x.org,7,7,Smith,blue\n',
    );
    expect(summary.warnings.map((w) => w.message)).toEqual([
      "Column 'Grad Year' is not a known column; its values were ignored. If it holds the graduation year, rename it 'graduation year'",
      "Column 'Emial' is not a known column; its values were ignored. If it holds the email, rename it 'email'",
      // the file has a sis id column already
      "Column 'Student ID' is not a known column; its values were ignored",
      "Column 'Surname' is not a known column; its values were ignored. If it holds the last name, rename it 'last name'",
      "Column 'Favorite Colour' is not a known column; its values were ignored",
    ]);
  });
  it('a line repeating the header (per-school exports joined, with or without a BOM) is skipped with a warning, not a user "username"', async () => {
    const text = 'username,password,first name\nann.lee,Secret-123,Ann\n\uFEFFUsername,Password,First Name\nbob.ray,Secret-456,Bob\n';
    const { rows, summary } = await readUsersText(text);
    expect(rows.map((r) => [r.line, r.username])).toEqual([
      [2, 'ann.lee'],
      [4, 'bob.ray'],
    ]);
    expect(summary.rows).toBe(2);
    expect(summary.warnings).toEqual([
      {
        line: 3,
        column: '',
        code: 'HEADER_REPEATED',
        message: 'This line repeats the header row (files joined together?); it was skipped',
      },
    ]);
  });
  it('a missing username column names the column that probably holds the usernames', async () => {
    const err = await rejection(readUsersText('Login ID,Given Name,Surname\njsmith,John,Smith\n'));
    expect(err.message).toBe(
      "The header row has no username column, which users.csv requires. If column 'Login ID' holds the usernames, rename it 'username' and upload the file again.",
    );
    const short = await readUsersText('username,ID,PW\njsmith,7,secret9\n');
    expect(short.summary.warnings.map((w) => w.message)).toEqual([
      "Column 'ID' is not a known column; its values were ignored. If it holds the sis id, rename it 'sis id'",
      "Column 'PW' is not a known column; its values were ignored. If it holds the password, rename it 'password'",
    ]);
    const misspelt = await rejection(readUsersText('usrname,email\njsmith,j@x.org\n'));
    expect(misspelt.message).toMatch(/If column 'usrname' holds the usernames, rename it 'username'/);
  });
  it('a first line of data is still "no header row" when one value looks like a column name, and quotes nothing', async () => {
    const err = await rejection(readUsersText('jsmith,usernam3,j@x.org,John\n'));
    expect(err.message).toMatch(/^The file has no header row/);
    expect(err.message).not.toContain('usernam3');
  });
  it('reads a status column, however written, and warns of none of its values it reads', async () => {
    const { rows, summary } = await readUsersText('username,Status\njsmith,Inactive\njdoe1,active\n');
    expect(rows.map((r) => r.inactive)).toEqual([true, false]);
    expect(summary.columns).toEqual(['username', 'status']);
    expect(summary.warnings).toEqual([]);
  });
  it('an Active or Enrollment Status column is not read, and says which is; a Grade column is told to become the graduation year', async () => {
    const { rows, summary } = await readUsersText('username,Active,Enrollment_Status,Grade Level\njsmith,N,Withdrawn,9\n');
    expect(rows.map((r) => r.inactive)).toEqual([false]);
    const notStatus =
      "is not read: rosterd reads whether a user is active only from a column named 'status' (active or inactive; blank is " +
      "active). To deactivate users, give them status inactive in a 'status' column, or leave their rows out of the file " +
      '(in a file with an action column, send them with action delete).';
    expect(summary.warnings.map((w) => [w.column, w.code, w.message])).toEqual([
      ['Active', 'UNREAD_COLUMN', `Column 'Active' ${notStatus}`],
      ['Enrollment_Status', 'UNREAD_COLUMN', `Column 'Enrollment_Status' ${notStatus}`],
      ['Grade Level', 'UNREAD_COLUMN', expect.stringMatching(/^Column 'Grade Level' is not read/)],
    ]);
    expect(summary.warnings[2]?.message).toBe(
      "Column 'Grade Level' is not read: rosterd reads the graduation year (the year a student finishes grade 12), not the grade. " +
        "Add a 'graduation year' column: the year the current school year ends, plus 12, minus the grade (for a 9th grader, that " +
        'year plus 3).',
    );
  });
  it('a known column twice fails the file', async () => {
    const err = await rejection(readUsersText('username,Email,password,email address\njsmith,a@b.org,secret1,c@d.org\n'));
    expect(err.message).toBe(
      "The header row has the email column twice (columns 2 and 4: 'Email' and 'email address'). " +
        'Remove one of them and upload the file again.',
    );
    expect(err.line).toBe(1);
  });
  it('a missing username column fails the file', async () => {
    const err = await rejection(readUsersText('email,first name\nj@x.org,John\n'));
    expect(err.message).toBe(
      'The header row has no username column, which users.csv requires. ' +
        'Add it (for example: username,password,email,first name,last name) and upload the file again.',
    );
  });
  it('a first line that names no known column is "no header row", and its values (a password, maybe) are not quoted', async () => {
    const err = await rejection(readUsersText('jsmith,Secret123,j@x.org\njdoe,Secret456,d@x.org\n'));
    expect(err.message).toBe(
      'The file has no header row: its first line names none of the users.csv columns (it looks like a row of data). ' +
        'The first line must name the columns, for example: username,password,email,first name,last name',
    );
  });
  it('blank lines before the header are skipped', async () => {
    const { rows } = await readUsersText('\n\nusername\njsmith\n');
    expect(rows[0]?.line).toBe(4);
  });
});

describe('empty and header-only files', () => {
  const EMPTY =
    'The file is empty: it has no header row. The first line must name the columns ' +
    '(for example: username,password,email,first name,last name), followed by one line per user.';
  it('an empty file fails', async () => {
    expect((await rejection(readUsersText(''))).message).toBe(EMPTY);
  });
  it('a file of blank lines, or only a BOM, is empty', async () => {
    expect((await rejection(readUsersText('\r\n  \r\n\r\n'))).message).toBe(EMPTY);
    expect((await rejection(readUsersText(Buffer.from([0xef, 0xbb, 0xbf])))).message).toBe(EMPTY);
  });
  it('a header without data rows fails (it would deactivate everyone)', async () => {
    const HEADER_ONLY =
      'The file has a header row but no data rows. Nothing was imported; check the export from your SIS and upload it again.';
    expect((await rejection(readUsersText('username,email\n'))).message).toBe(HEADER_ONLY);
    expect((await rejection(readUsersText('username,email\r\n\r\n,\r\n'))).message).toBe(HEADER_ONLY);
  });
});

describe('files that are not CSV', () => {
  const SAVE_AS = 'Open it in Excel (or your SIS) and save it as "CSV UTF-8 (Comma delimited)", then upload that file.';
  it('binary content (NUL bytes) fails', async () => {
    const err = await rejection(readUsersText(Buffer.from('username\njsmith\0\0\x01\x02\n', 'latin1')));
    expect(err.message).toBe(
      'The file contains binary data (NUL bytes), so it is not a CSV text file. ' +
        'Export the roster as CSV (comma-separated values) and upload it again.',
    );
  });
  it('NUL bytes far into the file fail it too', async () => {
    const rows = Array.from({ length: 500 }, (_, i) => `user${i}`).join('\n');
    const err = await rejection(readUsersText(`username\n${rows}\nbad\0user\n`, {}));
    expect(err.message).toMatch(/^The file contains binary data \(NUL bytes\)/);
  });
  it('a file on disk with NUL bytes names the line of the first, as a text editor counts lines (one NUL in a cell, or padding)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rosterd-nul-'));
    try {
      const file = path.join(dir, 'users.csv');
      const rows = Array.from({ length: 60_000 }, (_, i) => `user${i},u${i}@x.org`).join('\r\n');
      writeFileSync(file, `username,email\r\n${rows}\r\njsm\0ith,j@x.org\r\n`);
      const err = await rejection(collect(readUsersFile(file, { schools: SCHOOLS, now: NOW })));
      expect(err.message).toBe(
        'The file contains binary data (NUL bytes), the first on line 60,002 (as a text editor counts lines), so it is not a ' +
          'CSV text file. Export the roster as CSV (comma-separated values) and upload it again.',
      );
      expect(err.line).toBe(0);
      writeFileSync(file, Buffer.concat([Buffer.from('username\njsmith\n'), Buffer.alloc(4096)]));
      expect((await rejection(collect(readUsersFile(file, { schools: SCHOOLS, now: NOW })))).message).toMatch(
        /^The file contains binary data \(NUL bytes\), the first on line 3 \(as a text editor counts lines\)/,
      );
      // A workbook has NUL bytes too, and is told as a workbook; UTF-16 is read.
      writeFileSync(file, Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0]), Buffer.alloc(600)]));
      expect((await rejection(collect(readUsersFile(file, { schools: SCHOOLS, now: NOW })))).message).toMatch(/old-format Excel/);
      writeFileSync(file, Buffer.from('\ufeffusername\r\njsmith\r\n', 'utf16le'));
      const { items } = await collect(readUsersFile(file, { schools: SCHOOLS, now: NOW }));
      expect(items.map((i) => (i.kind === 'valid' ? i.row.username : null))).toEqual(['jsmith']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('an .xlsx workbook saved as .csv fails (a file on disk: the reader sees its first 64 KiB)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rosterd-xlsx-'));
    try {
      const file = path.join(dir, 'users.csv');
      writeFileSync(file, zipArchive(xlsxEntries()));
      const err = await rejection(collect(readUsersFile(file, { schools: SCHOOLS, now: NOW })));
      expect(err.message).toBe(`The file is an Excel workbook (.xlsx) saved with a .csv name, not a CSV file. ${SAVE_AS}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('an old .xls workbook saved as .csv fails', async () => {
    const err = await rejection(fromFile('users-xls.csv'));
    expect(err.message).toBe(`The file is an old-format Excel workbook (.xls) saved with a .csv name, not a CSV file. ${SAVE_AS}`);
  });
  describe("UTF-16, as Windows PowerShell's > and Out-File write a file, is read as such", () => {
    const text = 'username,email,first name\r\njsmith,j@x.org,Renée\r\nkim.l,k@x.org,Zoë 😀\r\n';
    const le = Buffer.from(text, 'utf16le');
    const be = Buffer.from(le).swap16();
    const bom = (b: Buffer, order: 'le' | 'be') => Buffer.concat([Buffer.from(order === 'le' ? [0xff, 0xfe] : [0xfe, 0xff]), b]);
    const expected = [
      expect.objectContaining({ line: 2, username: 'jsmith', firstName: 'Renée' }),
      expect.objectContaining({ line: 3, username: 'kim.l', firstName: 'Zoë 😀' }),
    ];
    it('with or without a byte order mark, either byte order, streamed in odd-sized pieces', async () => {
      for (const [bytes, encoding] of [
        [bom(le, 'le'), 'utf-16le'],
        [bom(be, 'be'), 'utf-16be'],
        [le, 'utf-16le'],
        [be, 'utf-16be'],
      ] as const) {
        // streamOf cuts 7-byte pieces: characters (and the emoji's surrogate pair) are split between them.
        const { rows, summary } = await readUsersText(bytes);
        expect(rows).toEqual(expected);
        expect(summary).toMatchObject({ encoding, errorCount: 0, warningCount: 0 });
      }
    });
    it('from a file on disk, without reading it twice', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'rosterd-utf16-'));
      try {
        const file = path.join(dir, 'users.csv');
        writeFileSync(file, bom(le, 'le'));
        const { items, summary } = await collect(readUsersFile(file, { schools: SCHOOLS, now: NOW }));
        expect(items.map((i) => (i.kind === 'valid' ? i.row : i))).toEqual(expected);
        expect(summary.encoding).toBe('utf-16le');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
    it('Excel\'s "Unicode Text" is UTF-16 with tabs: told to be saved as CSV, as any tab-separated file', async () => {
      const err = await rejection(readUsersText(Buffer.from('\uFEFFusername\temail\r\njsmith\tj@x.org\r\n', 'utf16le')));
      expect(err.message).toMatch(/^The file is separated by tabs, not by commas/);
    });
    it('a workbook or NUL characters are still refused when the text is UTF-16', async () => {
      expect((await rejection(readUsersText(Buffer.from('\uFEFF<html><body>Error</body></html>\r\n', 'utf16le')))).message).toMatch(
        /^The file is a web page/,
      );
      expect((await rejection(readUsersText(Buffer.from('\uFEFFusername\r\njs\0mith\r\n', 'utf16le')))).message).toMatch(/NUL bytes/);
    });
  });
  it('a gzip file says it is compressed', async () => {
    const gzip = await rejection(readUsersText(gzipSync('username,email\njsmith,j@x.org\n')));
    expect(gzip.message).toBe(
      'The file is compressed (gzip, a .gz file) with a .csv name, not a CSV file. Upload the CSV file itself, not the compressed one.',
    );
  });
  describe('a ZIP archive is named for what it is, each with its own advice', () => {
    const csv = 'username,email\njsmith,j@x.org\n';
    const read = async (zip: Buffer): Promise<string> => (await rejection(readUsersText(zip))).message;
    const EXCEL = `The file is an Excel workbook (.xlsx) saved with a .csv name, not a CSV file. ${SAVE_AS}`;
    it('an Excel workbook, with sizes in its headers or after its data (streaming writers)', async () => {
      expect(await read(zipArchive(xlsxEntries()))).toBe(EXCEL);
      expect(await read(zipArchive(xlsxEntries(), { descriptors: true }))).toBe(EXCEL);
      // Written by another program, with the parts in another order.
      expect(await read(zipArchive([...xlsxEntries()].reverse(), { descriptors: true }))).toBe(EXCEL);
    });
    it('a LibreOffice (OpenDocument) spreadsheet', async () => {
      const ods = zipArchive([
        { name: 'mimetype', content: 'application/vnd.oasis.opendocument.spreadsheet', stored: true },
        { name: 'Configurations2/', content: '', stored: true },
        { name: 'manifest.rdf', content: '<rdf:RDF/>' },
        { name: 'content.xml', content: '<office:document-content><table:table table:name="users"/></office:document-content>' },
        { name: 'META-INF/manifest.xml', content: '<manifest:manifest/>' },
      ]);
      expect(await read(ods)).toBe(
        'The file is an OpenDocument spreadsheet (.ods, as LibreOffice Calc saves it) with a .csv name, not a CSV file. ' +
          'Open it in LibreOffice Calc and save it as "Text CSV (.csv)", with the character set UTF-8 and a comma as the field ' +
          'delimiter, then upload that file.',
      );
      // A text document is not a spreadsheet to save as CSV.
      const odt = zipArchive([
        { name: 'mimetype', content: 'application/vnd.oasis.opendocument.text', stored: true },
        { name: 'content.xml', content: '<office:document-content/>' },
      ]);
      expect(await read(odt)).toMatch(/^The file is an OpenDocument file \(from LibreOffice or OpenOffice\) but not a spreadsheet/);
    });
    it('an Apple Numbers spreadsheet', async () => {
      const numbers = zipArchive([
        { name: 'Index/Document.iwa', content: Buffer.from([0x00, 0x8e, 0x01, 0x00, 0x0a, 0x0c, 0x08]) },
        { name: 'Index/ViewState.iwa', content: Buffer.from([0x00, 0x20, 0x00, 0x00]) },
        { name: 'Metadata/Properties.plist', content: 'bplist00' },
        { name: 'preview.jpg', content: Buffer.alloc(64, 0xff) },
      ]);
      expect(await read(numbers)).toBe(
        'The file is an Apple Numbers spreadsheet (.numbers) with a .csv name, not a CSV file. Open it in Numbers and ' +
          'export it as CSV (File > Export To > CSV, text encoding Unicode (UTF-8)), then upload that file.',
      );
    });
    it('users.csv compressed, alone or with other files, in a folder or not', async () => {
      expect(await read(zipArchive([{ name: 'users.csv', content: csv }]))).toBe(
        'The file is a ZIP archive (a compressed file) holding users.csv, not a CSV file. Unzip it and upload users.csv itself.',
      );
      expect(await read(zipArchive([{ name: 'users.csv', content: csv, stored: true }]))).toBe(
        'The file is a ZIP archive (a compressed file) holding users.csv, not a CSV file. Unzip it and upload users.csv itself.',
      );
      const exported = zipArchive(
        [
          { name: 'export/', content: '', stored: true },
          { name: 'export/readme.pdf', content: '%PDF-1.4' },
          { name: 'export/users.csv', content: csv },
        ],
        { descriptors: true },
      );
      expect(await read(exported)).toBe(
        'The file is a ZIP archive (a compressed file) holding export/users.csv and other files, not a CSV file. ' +
          'Unzip it and upload users.csv itself.',
      );
      // as macOS's Compress makes it: the resource fork under __MACOSX/ is not another file of the district's
      const finder = zipArchive([
        { name: 'users.csv', content: csv },
        { name: '__MACOSX/', content: '', stored: true },
        { name: '__MACOSX/._users.csv', content: Buffer.alloc(40, 0) },
        { name: '.DS_Store', content: Buffer.alloc(40, 0) },
      ]);
      expect(await read(finder)).toBe(
        'The file is a ZIP archive (a compressed file) holding users.csv, not a CSV file. Unzip it and upload users.csv itself.',
      );
    });
    it('a ZIP archive of anything else, or one whose names cannot be read', async () => {
      const other = zipArchive([
        { name: 'roster.pdf', content: '%PDF-1.4 roster' },
        { name: 'photo.jpg', content: Buffer.alloc(40, 0xff) },
      ]);
      expect(await read(other)).toBe(
        'The file is a ZIP archive (a compressed file) holding roster.pdf and other files, not a CSV file. Unzip it and upload ' +
          'the roster as a CSV file (a spreadsheet saved as "CSV UTF-8 (Comma delimited)" in Excel).',
      );
      expect(await read(Buffer.from([0x50, 0x4b, 0x03, 0x04, 1, 2, 3, 4]))).toBe(
        'The file is a ZIP archive (a compressed file), not a CSV file. Unzip it and upload the roster as a CSV file ' +
          '(a spreadsheet saved as "CSV UTF-8 (Comma delimited)" in Excel).',
      );
    });
  });
  it('an HTML page fails', async () => {
    const err = await rejection(fromFile('users-html.csv'));
    expect(err.message).toBe(
      'The file is a web page (HTML or XML), not a CSV file. It may be an error page saved by mistake. ' +
        'Export the roster from your SIS as CSV (comma-separated values) and upload it again.',
    );
  });
  it('a semicolon-separated file fails', async () => {
    const err = await rejection(fromFile('users-semicolon.csv'));
    expect(err.message).toBe(
      'The file is separated by semicolons, not by commas. Save it as comma-separated CSV ' +
        '("CSV UTF-8 (Comma delimited)" in Excel) and upload it again.',
    );
  });
  it('a tab-separated file fails', async () => {
    const err = await rejection(fromFile('users-tab.csv'));
    expect(err.message).toBe(
      'The file is separated by tabs, not by commas. Save it as comma-separated CSV ' +
        '("CSV UTF-8 (Comma delimited)" in Excel) and upload it again.',
    );
  });
  it("Excel's separator line sep=, is skipped and not counted, as Excel shows the file; another separator there fails the file", async () => {
    for (const start of ['sep=,\n', '\ufeffsep=,\r\n', 'SEP=,\r']) {
      const { rows, summary } = await readUsersText(`${start}username,email\njsmith,j@x.org\nab,\n`);
      expect(rows.map((r) => [r.line, r.username])).toEqual([[2, 'jsmith']]);
      expect(summary.errors.map((e) => [e.line, e.column])).toEqual([[3, 'username']]);
    }
    expect((await rejection(readUsersText('sep=;\nusername;email\njsmith;j@x.org\n'))).message).toBe(
      'The file is separated by semicolons, not by commas. Save it as comma-separated CSV ' +
        '("CSV UTF-8 (Comma delimited)" in Excel) and upload it again.',
    );
    expect((await rejection(readUsersText('sep=\t\nusername\temail\n'))).message).toMatch(/^The file is separated by tabs, not by commas/);
    // Only the first line: later, it is a row like any other.
    expect((await readUsersText('username\nsep=,\n')).summary.errors.map((e) => [e.line, e.value])).toEqual([[2, 'sep=']]);
  });
  it("Windows PowerShell's #TYPE line (Export-Csv without -NoTypeInformation) is skipped but counted, as a spreadsheet shows it", async () => {
    const type = '#TYPE Selected.System.Management.Automation.PSCustomObject';
    for (const start of [`${type}\r\n`, `\ufeff${type}\r\n`, '#TYPE System.Data.DataRow,,\n', `\n${type}\n`]) {
      const { rows, summary } = await readUsersText(`${start}"username","email"\r\n"jsmith","j@x.org"\r\n"ab",""\r\n`);
      const at = start.startsWith('\n') ? 1 : 0;
      expect(rows.map((r) => [r.line, r.username])).toEqual([[3 + at, 'jsmith']]);
      expect(summary.errors.map((e) => [e.line, e.column])).toEqual([[4 + at, 'username']]);
      expect(summary.warnings).toEqual([]);
    }
    const utf16 = Buffer.concat([
      Buffer.from([0xff, 0xfe]),
      Buffer.from(`${type}\r\n"username","owner","group"\r\n"jsmith","","Chess"\r\n`, 'utf16le'),
    ]);
    expect((await readGroupsText(utf16)).items).toMatchObject([{ line: 3, username: 'jsmith', group: 'Chess' }]);
    // Only before the header: later, it is a row like any other.
    expect((await readUsersText(`username\n${type}\n`)).summary.errors.map((e) => e.line)).toEqual([2]);
  });
  it('a file separated by semicolons or tabs with every value quoted (PowerShell -UseCulture, LibreOffice) fails as such too', async () => {
    const cases: Array<[string, string]> = [
      ['"username";"password";"email"\r\n"jsmith";"Secret123";"j@x.org"\r\n', 'semicolons'],
      ['"Benutzername";"Kennwort";"E-Mail"\r\n"jsmith";"Secret123";"j@x.org"\r\n', 'semicolons'],
      ['"username"\t"email"\n"jsmith"\t"j@x.org"\n', 'tabs'],
      ['"username"|"email"\n"jsmith"|"j@x.org"\n', 'vertical bars (|)'],
    ];
    for (const [text, name] of cases) {
      expect((await rejection(readUsersText(text))).message, text).toBe(
        `The file is separated by ${name}, not by commas. Save it as comma-separated CSV ` +
          '("CSV UTF-8 (Comma delimited)" in Excel) and upload it again.',
      );
    }
    expect((await rejection(readGroupsText('"username";"owner";"group"\n"jsmith";"teach01";"Chess"\n'))).message).toMatch(
      /^The file is separated by semicolons, not by commas/,
    );
  });
  it('a semicolon inside an unknown column name is not mistaken for a separator', async () => {
    const { summary } = await readUsersText('username,notes;misc\njsmith,x\n');
    expect(summary.warnings[0]?.column).toBe('notes;misc');
  });
});

describe('quoting, line endings and line numbers', () => {
  it('reads RFC 4180 quoting: commas, doubled quotes, newlines inside quotes', async () => {
    const { rows } = await readUsersText('username,last name,sis id\n"jsmith","Smith, Jr.","a ""b"" c"\n');
    expect(rows[0]).toMatchObject({ username: 'jsmith', lastName: 'Smith, Jr.', sisId: 'a "b" c' });
  });
  it('numbers lines as a spreadsheet shows them: a cell holding line breaks is one row (LF and CRLF)', async () => {
    for (const nl of ['\n', '\r\n']) {
      // An address in a column rosterd does not read may hold line breaks.
      const text = ['username,address', 'aaaa,"1 Main St', 'Apt 2', 'Springfield, IL"', 'bad,', 'bbbb,x', ''].join(nl);
      const { items, summary } = await readUsersText(text);
      expect(
        items.map((i) => (i.kind === 'valid' ? i.row.line : i.line)),
        JSON.stringify(nl),
      ).toEqual([2, 3, 4]);
      expect(summary.errors[0]).toMatchObject({ line: 3, message: 'Username must be at least 4 characters' });
    }
  });
  it('a line break typed in a cell of a column rosterd reads (Alt+Enter) is an error of that row; the other rows are read', async () => {
    const text = 'username,password,first name,last name\njdoe,Secret1,"John\r\nPaul",Doe\namy1,"Sec\nret2",Amy,Lee\nbob1,Secret3,Bob,Li\n';
    const { items, summary } = await readUsersText(text);
    expect(items.map((i) => (i.kind === 'valid' ? i.row.username : `invalid ${i.line} ${i.username}`))).toEqual([
      'invalid 2 jdoe',
      'invalid 3 amy1',
      'bob1',
    ]);
    expect(summary.errors.map((e) => [e.line, e.column, e.value])).toEqual([
      [2, 'first name', 'John↵Paul'],
      [3, 'password', '******'],
    ]);
    expect(summary.errors[0]?.message).toMatch(/^The value holds a line break \(shown as ↵: a new line inside the cell, as Alt\+Enter/);
  });
  it('a line break followed by part of a row, or in a file too narrow to tell, is a quote not closed: the file fails', async () => {
    // amy1's row swallowed up to the quote after her password: she would be missing, the password shown
    const swallowed = 'username,password,first name,last name\njdoe,Secret1,"John\namy1,Secret2",Amy\nbob1,Secret3,Bob,Li\n';
    expect((await rejection(readUsersText(swallowed))).message).toMatch(/^The value in column 3 of line 2 runs over 2 lines/);
    const narrow = 'username,last name\njdoe,"Doe\namy1\nbob1,Li"\n';
    expect((await rejection(readUsersText(narrow))).message).toMatch(/^The value in column 2 of line 2 runs over 3 lines/);
  });
  it('a value of a column rosterd reads never holds a line break: a quote not closed in time fails the file, quoting nothing', async () => {
    const rows = Array.from({ length: 20 }, (_, i) => `user${String(i).padStart(3, '0')},Secret-${i},First${i},Last${i}`);
    rows[5] = 'user005,Secret-5,"First5,Last5';
    rows[15] = 'user015,Secret-15,First15,"Last, 15"';
    const err = await rejection(readUsersText(['username,password,first name,last name', ...rows, ''].join('\n')));
    expect(err.message).toMatch(/^The value in column 3 of line 7 runs over 11 lines of the file: a double quote \(\"\) opens it/);
    expect(err.message).not.toMatch(/Secret/);
    expect(err.line).toBe(7);
    // In a column it does not read, the lines swallowed look like rows of the file: the same.
    const address = rows.map((r, i) => (i === 5 ? `${r.replace('"', '')},"1 Main St` : `${r},x`));
    const other = await rejection(readUsersText(['username,password,first name,last name,address', ...address, ''].join('\n')));
    expect(other.message).toMatch(/^The value in column 5 of line 7 runs over/);
  });
  it('after blank lines, the warnings and errors of the header name its own line, as the rows do theirs', async () => {
    const { rows, summary } = await readUsersText('\n\n\nusername,password,favorite color\njsmith01,Secret-123,red\n');
    expect(rows.map((r) => r.line)).toEqual([5]);
    expect(summary.warnings.map((w) => [w.line, w.code])).toEqual([[4, 'UNKNOWN_COLUMN']]);
    expect((await rejection(readUsersText('\n\nlogin,password\njsmith01,Secret-123\n'))).line).toBe(3);
  });
  it('reads LF, CRLF, CR and mixed line endings, with or without a final newline, and a DOS end-of-file mark (Ctrl-Z)', async () => {
    for (const text of [
      'username\njsmith\njdoe1',
      'username\r\njsmith\r\njdoe1\r\n',
      'username\rjsmith\rjdoe1\r',
      'username\r\njsmith\njdoe1\n',
      'username\r\njsmith\r\njdoe1\r\n\x1a',
      'username,email\r\njsmith,\r\njdoe1,\x1a',
    ]) {
      const { rows } = await readUsersText(text);
      expect(
        rows.map((r) => [r.line, r.username]),
        JSON.stringify(text),
      ).toEqual([
        [2, 'jsmith'],
        [3, 'jdoe1'],
      ]);
    }
  });
  it('ignores spaces before and after a quoted value (header and rows); a password keeps only what is inside the quotes', async () => {
    const { rows, summary } = await readUsersText(
      '"Username" ,"Password", "Last Name" ,sis id\nann1, "Secret-123",Lee,x\nbob1, "Sec ret-456" ,"Lee, Jr" ,\t"S-1"\t\n',
    );
    expect(summary.columns).toEqual(['username', 'password', 'last name', 'sis id']);
    expect(summary.warnings).toEqual([]);
    expect(summary.errors).toEqual([]);
    expect(rows).toEqual([
      expect.objectContaining({ line: 2, username: 'ann1', password: 'Secret-123', lastName: 'Lee', sisId: 'x' }),
      expect.objectContaining({ line: 3, username: 'bob1', password: 'Sec ret-456', lastName: 'Lee, Jr', sisId: 'S-1' }),
    ]);
  });
  it('an unquoted password keeps its spaces until validation, which trims them with a warning, as before', async () => {
    const { rows, summary } = await readUsersText('username,password,last name\nann1, Secret-123 ,"Lee"\n');
    expect(rows[0]).toMatchObject({ password: 'Secret-123', lastName: 'Lee' });
    expect(summary.warnings.map((w) => [w.line, w.column, w.value])).toEqual([[2, 'password', '******']]);
  });
  it('a quote after spaces that is never closed fails the file too (memory stays bounded)', async () => {
    const short = await rejection(readUsersText('username,last name\njsmith, "Smith\njdoe1,Doe\n'));
    expect(short.message).toMatch(/^A quoted value that opens on line 2 is never closed|^The value in column 2 of line 2 runs over/);
    const long = await rejection(readUsersText(`username,last name\njsmith, "${'x'.repeat(1_000_005)}\n`, {}));
    expect(long.message).toMatch(/^Line 2 is longer than 1,000,000 characters/);
  });
  it('keeps a stray quote inside an unquoted value as written', async () => {
    const { rows } = await readUsersText('username,last name\nkobrien,O"Brien\n');
    expect(rows[0]?.lastName).toBe('O"Brien');
  });
  it('an unterminated quote fails the file, naming the line where it opens', async () => {
    const err = await rejection(readUsersText('username,email\njsmith,j@x.org\n\n"jdoe,d@x.org\nkim1,k@x.org\n'));
    expect(err.message).toBe(
      'A quoted value that opens on line 4 is never closed: a double quote (") is missing. Fix line 4 and upload the file again.',
    );
    expect(err.line).toBe(4);
  });
});

describe('a file cut off mid-line', () => {
  it('a last line with too few values and no line break after it fails the whole file', async () => {
    const err = await rejection(readUsersText('username,email,first name\njsmith,j@x.org,John\njdoe1,jd'));
    expect(err.message).toBe(
      'The file ends in the middle of line 3: it has 2 of the 3 values of the header row and no line break after it, ' +
        'as if the upload was cut off. Nothing was changed. Upload the whole file again.',
    );
    expect(err.line).toBe(3);
    // groups.csv reads the same way
    expect((await rejection(readGroupsText('username,owner,group\njsmith,m1,g1\njdoe1'))).message).toMatch(
      /^The file ends in the middle of line 3/,
    );
  });
  it('the same short line followed by a line break is one row error; a complete last line needs no line break', async () => {
    const short = await readUsersText('username,email,first name\njsmith,j@x.org,John\njdoe1,jd\n');
    expect(short.summary.errors).toEqual([
      {
        line: 3,
        column: '',
        message: expect.stringMatching(/^This line has 2 values but the header row has 3 columns: it has no value for 'first name'/),
        username: 'jdoe1',
      },
    ]);
    const complete = await readUsersText('username,email,first name\njsmith,j@x.org,John\njdoe1,jd@x.org,Jane');
    expect(complete.rows.map((r) => r.username)).toEqual(['jsmith', 'jdoe1']);
    const crlf = await readUsersText('username,email,first name\r\njsmith,j@x.org,John\r\njdoe1\r');
    expect(crlf.summary.errors).toHaveLength(1);
  });
});

describe('ragged rows', () => {
  it('a row with too many or too few values is a row error; the others are read', async () => {
    const { items, summary } = await readUsersText('username,email\njsmith,j@x.org\njdoe1,d@x.org,extra\nkim1\nlee1,l@x.org\n');
    expect(items).toEqual([
      expect.objectContaining({ kind: 'valid' }),
      { kind: 'invalid', line: 3, username: 'jdoe1' },
      { kind: 'invalid', line: 4, username: 'kim1' },
      expect.objectContaining({ kind: 'valid' }),
    ]);
    expect(summary.errors).toEqual([
      {
        line: 3,
        column: '',
        message:
          'This line has 3 values but the header row has 2 columns: a value with a comma, such as "Lee, Jr", must be in double quotes',
        username: 'jdoe1',
      },
      {
        line: 4,
        column: '',
        message:
          "This line has 1 value but the header row has 2 columns: it has no value for 'email' (the last column). If it is empty, " +
          'end the line with a comma: Excel leaves empty values out of some lines when it saves a CSV, so export the file from your SIS again rather than saving it in Excel. If a value is missing elsewhere on the line, add it where it belongs',
        username: 'kim1',
      },
    ]);
  });
  it('a row with too few values names the columns it has no value for and says what to do; it is not padded', async () => {
    const { items, summary } = await readUsersText(
      'Username,Password,First Name,Last Name,School,Grad Year,Role,SIS ID\nann1,Secret-1,Ann,Lee,Lincoln High\nbob1,Bob,Ray\n' +
        'cy01,Secret-3,Cy,Po,Lincoln High,,student,S3\ndee1,Secret-4,Dee,Wu,,2031,staff,S4\n',
    );
    // bob1 has no password: read as written, Bob would be the password and Ray the first name.
    expect(items.map((i) => i.kind)).toEqual(['invalid', 'invalid', 'valid', 'valid']);
    expect(summary.errors).toEqual([
      {
        line: 2,
        column: '',
        message:
          "This line has 5 values but the header row has 8 columns: it has no value for 'Grad Year', 'Role' and 'SIS ID' (the last 3 columns). " +
          'If they are empty, end the line with 3 commas, one for each: Excel leaves empty values out of some lines when it saves a CSV, so export the file from your SIS again rather than saving it in Excel. If a value is missing elsewhere on the line, add it where it belongs',
      },
      {
        line: 3,
        column: '',
        message:
          "This line has 3 values but the header row has 8 columns: it has no value for 'Last Name', 'School', 'Grad Year' and 2 more (the last 5 columns). " +
          'If they are empty, end the line with 5 commas, one for each: Excel leaves empty values out of some lines when it saves a CSV, so export the file from your SIS again rather than saving it in Excel. If a value is missing elsewhere on the line, add it where it belongs',
      },
    ]);
    expect(JSON.stringify(summary)).not.toContain('Secret');
    // A header padded with columns without a name (Excel's trailing commas): a line is measured
    // against the named columns, which are all a spreadsheet shows.
    const unnamed = await readUsersText(
      `username,email${','.repeat(16_000)}\nann1,a@x.org${','.repeat(16_000)}\nbob1\ncy01,c@x.org${','.repeat(16_000)}\n`,
    );
    expect(unnamed.summary.errors).toEqual([
      {
        line: 3,
        column: '',
        message:
          "This line has 1 value but the header row has 2 columns: it has no value for 'email' (the last column). " +
          'If it is empty, end the line with a comma: Excel leaves empty values out of some lines when it saves a CSV, so export the file from your SIS again rather than saving it in Excel. If a value is missing elsewhere on the line, add it where it belongs',
        username: 'bob1',
      },
    ]);
  });
  it('a header padded with thousands of empty columns reads as one without them, however many commas each line ends with', async () => {
    const pad = ','.repeat(2_000);
    const text =
      `username,password,email${pad}\n` +
      `ann1,Secret-1,a@x.org${pad}\n` + // as many trailing commas as the header
      'bob1,Secret-2,b@x.org\n' + // none
      'cy01,Secret-3,c@x.org,,,\n' + // fewer
      `dee1,Secret-4,d@x.org${pad}${pad}\n` + // more
      `"eve1","Secret-5","e@x.org"${pad}\n` + // quoted, read by csv-parse
      'fay1,Secret-6,f@x.org'; // the last line, no line break and no padding: not cut off
    const { rows, summary } = await readUsersText(text);
    expect(summary.errors).toEqual([]);
    expect(rows.map((r) => [r.line, r.username, r.email])).toEqual([
      [2, 'ann1', 'a@x.org'],
      [3, 'bob1', 'b@x.org'],
      [4, 'cy01', 'c@x.org'],
      [5, 'dee1', 'd@x.org'],
      [6, 'eve1', 'e@x.org'],
      [7, 'fay1', 'f@x.org'],
    ]);
    // No row has a value in them: nothing to tell, night after night.
    expect(summary.warnings).toEqual([]);
    // A value in one of them is told of, once for all of them, not once a column.
    const valued = await readUsersText(`username,password,email${pad}\nann1,Secret-1,a@x.org,,,note\nbob1,Secret-2,b@x.org${pad}\n`);
    expect(valued.summary.errors).toEqual([]);
    expect(valued.summary.warnings).toEqual([
      {
        line: 1,
        column: '',
        code: 'UNNAMED_COLUMNS',
        message: '2,000 columns have no name in the header row (the first is column 4); their values were ignored',
      },
    ]);
    // So is one between named columns, and only then.
    const between = 'username,,email\nann1,,a@x.org\n';
    expect((await readUsersText(between)).summary.warnings).toEqual([]);
    expect((await readUsersText(between + 'bob1,x,b@x.org\n')).summary.warnings.map((w) => w.code)).toEqual(['UNNAMED_COLUMNS']);
    // groups.csv reads the same way.
    const groups = await readGroupsText(`username,owner,group${pad}\njsmith,m1,Chess\njdoe1,m1,Chess${pad}\n`);
    expect(groups.summary.errors).toEqual([]);
    expect(groups.items.map((i) => i.valid)).toEqual([true, true]);
  });
  it('in a padded file, a value past the header is still a row error, and a line short of a named column too', async () => {
    const pad = ','.repeat(2_000);
    const { items, summary } = await readUsersText(
      `username,password,email${pad}\nann1,Secret-1,a@x.org\nbob1,Secret-2,b@x.org${pad},Lee Jr\ncy01,Secret-3\ndee1,Secret-4,d@x.org\n`,
    );
    expect(items.map((i) => i.kind)).toEqual(['valid', 'invalid', 'invalid', 'valid']);
    expect(summary.errors).toEqual([
      {
        line: 3,
        column: '',
        message:
          'This line has 2,004 values but the header row has 2,003 columns: a value with a comma, such as "Lee, Jr", must be in double quotes',
        // Values moved right cannot have brought the password, in a later column, into the username's.
        username: 'bob1',
      },
      {
        line: 4,
        column: '',
        message: expect.stringMatching(
          /^This line has 2 values but the header row has 3 columns: it has no value for 'email' \(the last column\)/,
        ),
        // No username: a value missing before it would have moved the password into its column.
      },
    ]);
    // A file whose lines mostly lack a named column still fails whole, counting the named columns.
    const err = await rejection(readUsersText(`username,password,email${pad}\nann1,Secret-1\nbob1,Secret-2\ncy01,Secret-3,c@x.org\n`));
    expect(err.message).toMatch(/^Most lines \(2 of 3\) do not have the same number of values as the header row \(3 columns\)/);
    // A last line cut off before its named columns end is still a cut-off file.
    const cut = await rejection(readUsersText(`username,password,email${pad}\nann1,Secret-1,a@x.org\nbob1,Sec`));
    expect(cut.message).toMatch(/^The file ends in the middle of line 3: it has 2 of the 3 values of the header row/);
  });
  it('in a padded file, rows carry no array of its thousands of empty values', async () => {
    const pad = ','.repeat(5_000);
    const lines = Array.from({ length: 2_000 }, (_, i) => `user${i},Secret-${i},u${i}@x.org${pad}`);
    const widths: number[] = [];
    const log = new IssueLog(100);
    const state: TableState = { mode: 'full', encoding: 'utf-8', rows: 0, columns: [] };
    const table = readTable<UserColumn, number>(
      {
        spec: USERS_SPEC,
        log,
        // In 64 KiB chunks, as a file is read: only the rows split with the header, in its chunk, are whole.
        open: async () => ({ input: streamOf(`username,password,email${pad}\n${lines.join('\n')}\n`, 1 << 16), encoding: 'utf-8' }),
        // A consumer that keeps only what it is given: how many values each row came with.
        onHeader: () => ({ row: (_line, fields) => fields.length, ragged: (_line, fields) => fields.length }),
      },
      state,
    );
    for await (const batch of table) widths.push(...batch);
    expect(log.errorCount).toBe(0);
    expect(widths).toHaveLength(2_000);
    expect(widths.filter((w) => w === 3).length).toBeGreaterThan(1_980);
    expect(widths.filter((w) => w !== 3).every((w) => w === 5_003)).toBe(true);
  });
  it('trailing empty values (a,b,,) are not ragged', async () => {
    const { rows, summary } = await readUsersText('username,email\njsmith,j@x.org,,\n');
    expect(summary.errorCount).toBe(0);
    expect(rows).toHaveLength(1);
  });
  it('a value split by an unquoted comma in a row whose last value is blank is a row error, values not shown', async () => {
    const { items, summary } = await readUsersText(
      'username,first name,last name,password,sis id\nbob1,Bob,Ray,Secret-456,S1\nab.cd,Ann,Lee, Junior,Tr0ub4dor&3,\ncy01,Cy,Po,Secret-789,S3\n',
    );
    expect(items.map((i) => i.kind)).toEqual(['valid', 'invalid', 'valid']);
    expect(summary.errors).toEqual([
      {
        line: 3,
        column: '',
        message:
          'This line has 6 values but the header row has 5 columns: a value with a comma, such as "Lee, Jr", must be in double quotes',
        username: 'ab.cd',
      },
    ]);
    expect(JSON.stringify(summary)).not.toContain('Tr0ub4dor');
  });
  it('every line ending in a blank extra value (an exporter that ends lines with a comma) is read; the first line alone is not', async () => {
    const style = await readUsersText('username,email\njsmith,j@x.org,\njdoe1,d@x.org,\nkim01,k@x.org\n');
    expect(style.summary.errorCount).toBe(0);
    expect(style.rows).toHaveLength(3);
    // The first line split by an unquoted comma (its last value blank); the others are right.
    const err = await rejection(
      readUsersText('username,last name,password,sis id\nann01,Lee, Jr,Secret-123,\nbob01,Ray,Secret-456,S2\ncy001,Po,Secret-789,S3\n'),
    );
    expect(err.message).toMatch(/^Line 2 has more values than the header row has columns \(4\), but most lines do not/);
    expect(err.message).not.toContain('Secret-123');
    expect(err.line).toBe(2);
  });
  it('in a file whose lines end in a blank extra value, a line with more of them is a row error, values not shown', async () => {
    // "Doe, Jr" unquoted with the email blank: every value after it one column right, the
    // password in the email column, which the email's error would show.
    const { items, summary } = await readUsersText(
      'username,last name,first name,password,email\njsmith01,Smith,John,Secret-123,j@x.org,\n' +
        'adoe0001,Doe, Jr,Ann,Tr0ub4dor&3,,\nbbrown01,Brown,Bob,Secret-789,b@x.org,\n',
    );
    expect(items.map((i) => i.kind)).toEqual(['valid', 'invalid', 'valid']);
    expect(summary.errors).toEqual([
      {
        line: 3,
        column: '',
        message:
          'This line has 7 values but the header row has 5 columns: a value with a comma, such as "Lee, Jr", must be in double quotes',
        username: 'adoe0001',
      },
    ]);
    expect(JSON.stringify(summary)).not.toContain('Tr0ub4dor');
  });
  it('in a file whose header ends in a column without a name, a longer line shows no values in its errors', async () => {
    // The same shift, but the header's own padding makes extra blank values fine: the row is read,
    // and the email's error, which would show the password, shows nothing.
    const { items, summary } = await readUsersText(
      'username,last name,first name,password,email,\njsmith01,Smith,John,Secret-123,j@x.org,\n' +
        'adoe0001,Doe, Jr,Ann,Tr0ub4dor&3,,\nbbrown01,Brown,Bob,Secret-789,b@x.org,\n',
    );
    expect(items.map((i) => i.kind)).toEqual(['valid', 'invalid', 'valid']);
    expect(summary.errors.map((e) => [e.line, e.column, e.value])).toEqual([
      [3, 'password', ''],
      [3, 'email', ''],
    ]);
    expect(summary.errors[1]?.message).toMatch(/^Email address is not valid: .*\. The value is not shown: this line has more values/);
    expect(JSON.stringify(summary)).not.toContain('Tr0ub4dor');
  });
  it("a ragged row's errors name its username, unless its values may have moved the password into the username's column", async () => {
    // A username cut from the line (Excel's "delete cells, shift left") moves the password left into
    // its place; an unquoted comma before the username moves an earlier password right into it.
    const left = await readUsersText('username,password,email\nann1,Secret-1,a@x.org\nSecret-92,b@x.org\ncy01,Secret-3,c@x.org\n');
    const right = await readUsersText(
      'last name,password,username\nLee,Secret-1,ann1\nRay, Jr,Secret-92,bob1\nPo,Secret-3,cy01\nWu,Secret-4,dee1\n',
    );
    for (const { summary } of [left, right]) {
      expect(summary.errors.map((e) => [e.line, e.username])).toEqual([[3, undefined]]);
      expect(JSON.stringify(summary)).not.toContain('Secret-92');
    }
    // Values moved the other way cannot bring the password into it: the username is given.
    const safe = await readUsersText('password,username,email\nSecret-1,ann1,a@x.org\nSecret-2,bob1\n');
    expect(safe.summary.errors.map((e) => [e.line, e.username])).toEqual([[3, 'bob1']]);
    const safeRight = await readUsersText('username,password,last name\nann1,Secret-1,Lee\nbob1,Secret-2,Ray, Jr\ncy01,Secret-3,Po\n');
    expect(safeRight.summary.errors.map((e) => [e.line, e.username])).toEqual([[3, 'bob1']]);
  });
  it('when most rows are ragged, the file fails', async () => {
    const err = await rejection(readUsersText('username,email,role\njsmith,j@x.org\njdoe1,d@x.org\nkim1,k@x.org,student\n'));
    expect(err.message).toBe(
      'Most lines (2 of 3) do not have the same number of values as the header row (3 columns), so the file cannot be ' +
        'read reliably. Check that the header row names every column and that values containing commas are in double ' +
        'quotes, then upload the file again.',
    );
  });
});

describe('absurdly long values', () => {
  it('a value over 10,000 characters is a row error, shown shortened', async () => {
    const long = 'x'.repeat(10_001);
    const { items, summary } = await readUsersText(`username,sis id\njsmith,${long}\njdoe1,ok\n`);
    expect(items.map((i) => i.kind)).toEqual(['invalid', 'valid']);
    expect(summary.errors).toEqual([
      {
        line: 2,
        column: 'sis id',
        value: `${'x'.repeat(300)}…`,
        message: 'The value is longer than 10,000 characters',
        username: 'jsmith',
      },
    ]);
  });
  it('a long password is masked too', async () => {
    const { summary } = await readUsersText(`username,password\njsmith,${'p'.repeat(20_000)}\n`);
    expect(summary.errors).toEqual([
      { line: 2, column: 'password', value: '******', message: 'The value is longer than 10,000 characters', username: 'jsmith' },
    ]);
  });
  it('a line over 1,000,000 characters fails the file (memory stays bounded)', async () => {
    const err = await rejection(readUsersText(`username,sis id\njsmith,ok\njdoe1,"${'y'.repeat(1_100_000)}"\n`));
    expect(err.message).toBe(
      'Line 3 is longer than 1,000,000 characters; most likely a double quote (") opened there is never closed. ' +
        'Fix line 3 and upload the file again.',
    );
  });
});

describe('stopping early', () => {
  it('a consumer may stop after the first batch; the file is closed and nothing hangs', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const path = join(await mkdtemp(join(tmpdir(), 'rosterd-read-')), 'users.csv');
    await writeFile(path, `username\n${Array.from({ length: 5000 }, (_, i) => `user${i}`).join('\n')}\n`);
    const result = readUsersFile(path, { schools: SCHOOLS, now: NOW });
    for await (const batch of result.items) {
      expect(batch).toHaveLength(1000);
      break;
    }
    expect(result.summary().rows).toBeLessThan(5000);
  });
});

describe('encodings', () => {
  const CP1252_WARNING = {
    line: 0,
    column: '',
    code: 'ENCODING_WINDOWS_1252',
    message:
      'The file is not valid UTF-8, so it was read as Windows-1252 (Western European). If accented names look wrong, ' +
      'save the file as "CSV UTF-8 (Comma delimited)" next time.',
  };
  it('strips a UTF-8 BOM and reads CRLF (Excel "CSV UTF-8")', async () => {
    const { items, summary } = await fromFile('users-excel-utf8-bom-crlf.csv');
    expect(summary).toMatchObject({
      encoding: 'utf-8',
      warnings: [],
      errors: [],
      columns: ['username', 'email', 'first name', 'last name'],
    });
    expect(items.map((i) => (i.kind === 'valid' ? [i.row.username, i.row.firstName, i.row.lastName] : i))).toEqual([
      ['zoe.m', 'Zoë', 'Müller'],
      ['o.brien', 'Seán "Jr"', "O'Brien"],
    ]);
  });
  it('strips the BOM before a quoted first header name', async () => {
    const { rows, summary } = await readUsersText(Buffer.from('\uFEFF"Username","Email"\r\n"jsmith","j@x.org"\r\n'));
    expect(summary.warnings).toEqual([]);
    expect(rows[0]).toMatchObject({ username: 'jsmith', email: 'j@x.org' });
  });
  it('reads a Windows-1252 file as Windows-1252, with a warning (file)', async () => {
    const { items, summary } = await fromFile('users-cp1252.csv');
    expect(summary.encoding).toBe('windows-1252');
    expect(summary.warnings).toEqual([CP1252_WARNING]);
    expect(items.map((i) => (i.kind === 'valid' ? [i.row.firstName, i.row.lastName] : i))).toEqual([
      ['Zoë', 'Müller'],
      ['François', '“Quoted”'],
    ]);
  });
  it('reads a Windows-1252 stream the same way, switching in place', async () => {
    const { readFile } = await import('node:fs/promises');
    const bytes = await readFile(fixture('users-cp1252.csv'));
    const { rows, summary } = await readUsersText(bytes);
    expect(summary.encoding).toBe('windows-1252');
    expect(summary.warnings).toEqual([CP1252_WARNING]);
    expect(rows.map((r) => r.firstName)).toEqual(['Zoë', 'François']);
  });
  it('decodes UTF-8 characters split across chunks', async () => {
    const text = 'username,first name\nzoe.m,Zoë 😀 Łukasz\n';
    const { items } = await collect(readUsers(streamOf(text, 1), { schools: SCHOOLS, now: NOW }));
    expect(items[0]?.kind === 'valid' && items[0].row.firstName).toBe('Zoë 😀 Łukasz');
  });
  it('a file on disk that is UTF-8 but for some lines reads those lines as Windows-1252 and names them; as a stream it is refused', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const bytes = Buffer.concat([
      Buffer.from('username,first name\nzoe.m,Zoë\nfran.c,Fran'),
      Buffer.from([0xe7, 0x6f]),
      Buffer.from('is\n'),
    ]);
    const path = join(await mkdtemp(join(tmpdir(), 'rosterd-read-')), 'users.csv');
    await writeFile(path, bytes);
    const { items, summary } = await collect(readUsersFile(path, { schools: SCHOOLS, now: NOW }));
    expect(summary.encoding).toBe('mixed');
    // Read whole as Windows-1252, Zoë (valid UTF-8) would have become ZoÃ«.
    expect(items.map((i) => i.kind === 'valid' && i.row.firstName)).toEqual(['Zoë', 'François']);
    expect(summary.warnings).toEqual([
      {
        line: 0,
        column: '',
        code: 'ENCODING_MIXED',
        message:
          'Line 3 is not valid UTF-8, although the rest of the file is: it was read as Windows-1252 (Western European), the rest ' +
          'as UTF-8. Check the names on those lines, and save the whole file as "CSV UTF-8 (Comma delimited)" next time. ' +
          '(Line numbers as a text editor counts them.)',
      },
    ]);
    // Several such lines are listed; the file's end needs no line break; a password line is read the same way.
    const many = Buffer.concat([
      Buffer.from('username,password,first name\r\nrenee01,Sécret01,Renée\r\n'),
      Buffer.from('zoe.m,pass-'),
      Buffer.from([0xeb]),
      Buffer.from('1,Zo'),
      Buffer.from([0xeb]),
      Buffer.from('\r\nfran.c,,Fran'),
      Buffer.from([0xe7]),
      Buffer.from('ois'),
    ]);
    await writeFile(path, many);
    const second = await collect(readUsersFile(path, { schools: SCHOOLS, now: NOW }));
    expect(second.summary.encoding).toBe('mixed');
    expect(second.items.map((i) => i.kind === 'valid' && [i.row.password, i.row.firstName])).toEqual([
      ['Sécret01', 'Renée'],
      ['pass-ë1', 'Zoë'],
      [undefined, 'François'],
    ]);
    expect(second.summary.warnings[0]?.message).toMatch(
      /^2 lines are not valid UTF-8, although the rest of the file is \(lines 3, 4\): they were read/,
    );
    // Old Mac line ends (CR only) are lines too: only the Windows-1252 one is recoded.
    await writeFile(path, Buffer.from(many.toString('latin1').replaceAll('\r\n', '\r'), 'latin1'));
    const cr = await collect(readUsersFile(path, { schools: SCHOOLS, now: NOW }));
    expect(cr.summary.encoding).toBe('mixed');
    expect(cr.items.map((i) => i.kind === 'valid' && [i.row.password, i.row.firstName])).toEqual([
      ['Sécret01', 'Renée'],
      ['pass-ë1', 'Zoë'],
      [undefined, 'François'],
    ]);
    expect(cr.summary.warnings[0]?.message).toMatch(/\(lines 3, 4\)/);
    // As a stream, a chunk holding both is still read as Windows-1252 (nothing was passed on yet)…
    expect((await collect(readUsers(streamOf(bytes, 4096), { schools: SCHOOLS, now: NOW }))).summary.encoding).toBe('windows-1252');
    // …but once UTF-8 text has been passed on, a later invalid byte cannot be honoured.
    const padding = Array.from({ length: 100 }, (_, i) => `user${i},x`).join('\n');
    const late = Buffer.concat([
      Buffer.from(`username,first name\nzoe.m,Zoë\n${padding}\nfran.c,Fran`),
      Buffer.from([0xe7]),
      Buffer.from('ois\n'),
    ]);
    const err = await rejection(collect(readUsers(streamOf(late, 64), { schools: SCHOOLS, now: NOW })));
    expect(err.message).toBe(
      'The file mixes two character encodings: part of it is UTF-8 and part of it is not. ' +
        'Save it again as "CSV UTF-8 (Comma delimited)" and upload it again.',
    );
  });
  it('a valid file on disk reads as UTF-8 without warnings', async () => {
    const { items, summary } = await fromFile('users-valid.csv');
    expect(summary).toMatchObject({ encoding: 'utf-8', mode: 'full', rows: 2, errorCount: 0, warningCount: 0 });
    expect(items.map((i) => i.kind === 'valid' && [i.row.username, i.row.schoolId, i.row.accessType])).toEqual([
      ['jsmith', 'school-lincoln', null],
      ['mgarcia', 'school-adams', 'school_administrator'],
    ]);
  });
});
