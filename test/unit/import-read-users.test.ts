/**
 * users.csv row rules (PRODUCT.md §3): every rule broken on its own, with the exact message, and
 * the UserRow each valid cell becomes (undefined = column absent, null = blank cell).
 */
import { describe, expect, it } from 'vitest';
import type { ImportIssue } from '../../src/import/types.js';
import { readUsersText } from '../fixtures/csv/helpers.js';

const quote = (v: string): string => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/** A file with a header of the given columns and one row of the given cells. */
function csv(cells: Record<string, string>): string {
  const cols = Object.keys(cells);
  return `${cols.join(',')}\n${cols.map((c) => quote(cells[c] ?? '')).join(',')}\n`;
}

async function errorsOf(cells: Record<string, string>): Promise<ImportIssue[]> {
  const { items, summary } = await readUsersText(csv(cells));
  expect(items).toHaveLength(1);
  expect(items[0]?.kind).toBe('invalid');
  return summary.errors;
}

async function rowOf(cells: Record<string, string>) {
  const { rows, summary } = await readUsersText(csv(cells));
  expect(summary.errors).toEqual([]);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

describe('username', () => {
  it('is required', async () => {
    expect(await errorsOf({ username: '', email: 'a@b.org' })).toEqual([
      { line: 2, column: 'username', value: '', message: 'Username is required' },
    ]);
  });
  it('has at least 4 characters', async () => {
    expect(await errorsOf({ username: 'abc' })).toEqual([
      { line: 2, column: 'username', value: 'abc', message: 'Username must be at least 4 characters', username: 'abc' },
    ]);
  });
  it('has at most 254 characters', async () => {
    const long = 'a'.repeat(255);
    expect(await errorsOf({ username: long })).toEqual([
      { line: 2, column: 'username', value: long, message: 'Username must be at most 254 characters', username: long },
    ]);
  });
  it('holds only letters, digits and . _ - @', async () => {
    expect(await errorsOf({ username: 'john smith' })).toEqual([
      {
        line: 2,
        column: 'username',
        value: 'john smith',
        message: 'Username may contain only letters, digits and . _ - @',
        username: 'john smith',
      },
    ]);
    expect(await errorsOf({ username: 'john+smith' })).toHaveLength(1);
  });
  it('a username Excel changed (a long numeric ID in scientific notation, #NAME?, ####) says so and how to avoid it', async () => {
    const message = async (username: string) => (await errorsOf({ username }))[0]?.message;
    expect(await message('1.23457E+11')).toBe(
      'Excel changed this username: the cell holds a number in scientific notation, which is how Excel shortens a long number, ' +
        'losing its last digits, not the username. Format the column as Text in Excel before typing or pasting the values, ' +
        'or export the file from your SIS directly, without opening and saving it in Excel',
    );
    expect(await message('#NAME?')).toMatch(/^Excel changed this username: the cell holds an Excel error code/);
    expect(await message('########')).toMatch(/^Excel changed this username: the cell holds only # signs/);
    // An ordinary username with a + is not Excel's doing.
    expect(await message('1E+15x')).toBe('Username may contain only letters, digits and . _ - @');
  });
  it('letters that look like others are an error naming the first: fullwidth ones, or Cyrillic or Greek among Latin', async () => {
    const message = async (username: string) => (await errorsOf({ username }))[0]?.message;
    expect(await message('ｊｓｍｉｔｈ')).toBe(
      'Username contains fullwidth characters, as an East Asian keyboard types them (the first, "ｊ" (U+FF4A) at position 1): ' +
        'type the username again in your SIS with ordinary (half-width) letters and digits',
    );
    expect(await message('john.smith\u0430')).toBe(
      'Username mixes Latin and Cyrillic letters (the first Cyrillic one, "а" (U+0430) at position 11), which look alike: one was ' +
        'probably typed on another keyboard layout or pasted. Type the username again in your SIS with the letters of one alphabet',
    );
    expect(await message('nik\u03bfs99')).toMatch(
      /^Username mixes Latin and Greek letters \(the first Greek one, "ο" \(U\+03BF\) at position 4\)/,
    );
  });
  it('such a rejected row names the user it looks like, so that a full sync does not deactivate that user', async () => {
    const { items } = await readUsersText('username\nｊｓｍｉｔｈ\njohn.smith\u0430\n\u0410nn\u0430.Lee\n');
    expect(items).toEqual([
      { kind: 'invalid', line: 2, username: 'jsmith' },
      { kind: 'invalid', line: 3, username: 'john.smitha' },
      { kind: 'invalid', line: 4, username: 'Anna.Lee' },
    ]);
  });
  it('a username of one alphabet, or one per part (a Cyrillic name at a Latin mail domain), is fine', async () => {
    for (const username of ['иван.петров', 'иван@school.org', 'νίκος_π', 'José.Müller', 'zoë-2031']) {
      expect((await rowOf({ username })).username).toBe(username);
    }
  });
  it('an invisible character inside is named, with its position; at either end, a no-break space is trimmed like a space', async () => {
    const invisible = async (username: string) => (await errorsOf({ username }))[0]?.message;
    const rest = 'which cannot be seen: type the value again in your SIS. A username may contain only letters, digits and . _ - @';
    expect(await invisible('john\u00a0smith')).toBe(`Username contains a no-break space (U+00A0) at position 5, ${rest}`);
    expect(await invisible('\u200bjsmith')).toBe(`Username contains a zero-width space (U+200B) at position 1, ${rest}`);
    expect(await invisible('jo\u00adhn\u200d\u200c')).toBe(
      `Username contains a soft hyphen (U+00AD) at position 3 (and 2 more invisible characters), ${rest}`,
    );
    expect(await invisible('😀js\ufeffmith')).toMatch(
      /^Username contains a zero-width no-break space \(U\+FEFF, a byte order mark\) at position 4, /,
    );
    expect((await rowOf({ username: '\u00a0jsmith\u00a0 ' })).username).toBe('jsmith');
  });
  it('accepts an email address, accented letters, and keeps its case with a lower-cased key', async () => {
    const row = await rowOf({ username: ' Zoë.O-Neil_2@Lincoln.k12.ca.us ' });
    expect(row.username).toBe('Zoë.O-Neil_2@Lincoln.k12.ca.us');
    expect(row.usernameKey).toBe('zoë.o-neil_2@lincoln.k12.ca.us');
  });
});

describe('password', () => {
  it('has at least 6 characters, and its value is masked', async () => {
    expect(await errorsOf({ username: 'jsmith', password: 'abc12' })).toEqual([
      { line: 2, column: 'password', value: '******', message: 'Password must be at least 6 characters', username: 'jsmith' },
    ]);
  });
  it('never appears in any issue, whatever else is wrong', async () => {
    const { summary } = await readUsersText(csv({ username: 'ab', password: 'Secr3t', email: 'bad' }));
    expect(JSON.stringify(summary)).not.toContain('Secr3t');
    expect(summary.errors.map((e) => e.column)).toEqual(['username', 'email']);
  });
  it('a value Excel wrote instead of the password is not used, with a warning that does not show it', async () => {
    const damaged = ['#NAME?', '#VALUE!', '#REF!', '####', '########', '1.23457E+17', '1E+15'];
    const text = `username,password,sis id\n${damaged.map((p, i) => `user${i},${p},S${i}`).join('\n')}\nfine1,#Secret-1,S9\nfine2,1.2345E17x,S10\n`;
    const { items, summary } = await readUsersText(text);
    expect(summary.errors).toEqual([]);
    expect(items.map((i) => (i.kind === 'valid' ? i.row.password : i.kind))).toEqual([
      ...damaged.map(() => undefined),
      '#Secret-1',
      '1.2345E17x',
    ]);
    expect(summary.warnings.map((w) => [w.line, w.column, w.value, w.code])).toEqual(
      damaged.map((_, i) => [i + 2, 'password', '******', 'EXCEL_CHANGED_PASSWORD']),
    );
    expect(summary.warnings[0]?.message).toBe(
      'Excel changed this password: the cell holds an Excel error code, which Excel writes when it takes a value for a formula that fails, ' +
        'not a password. It was not used: the user keeps their current password, and a new user has none yet. Format the column as Text ' +
        'in Excel before typing or pasting the values, or export the file from your SIS directly, without opening and saving it in Excel',
    );
    expect(summary.warnings[3]?.message).toMatch(
      /^Excel changed this password: the cell holds only # signs, which Excel writes when a column is too narrow/,
    );
    expect(summary.warnings[5]?.message).toMatch(
      /^Excel changed this password: the cell holds a number in scientific notation, which is how Excel shortens/,
    );
    for (const p of damaged) expect(JSON.stringify(summary)).not.toContain(p);
  });
  it('a password holding an invisible character (pasted with it) is not used, with a warning naming the character, not where', async () => {
    const held = ['Secret\u200b123', 'Sec\u00a0ret99', '\u200bSecret99', 'Secret99\u2060', 'Se\u00adcret99'];
    const text = `username,password\n${held.map((p, i) => `user${i},${p}`).join('\n')}\nfine1,Secret 99\n`;
    const { items, summary } = await readUsersText(text);
    expect(summary.errors).toEqual([]);
    expect(items.map((i) => (i.kind === 'valid' ? i.row.password : i.kind))).toEqual([...held.map(() => undefined), 'Secret 99']);
    expect(summary.warnings.map((w) => [w.line, w.column, w.value, w.code])).toEqual(
      held.map((_, i) => [i + 2, 'password', '******', 'INVISIBLE_PASSWORD']),
    );
    expect(summary.warnings[0]?.message).toBe(
      'The password contains a zero-width space (U+200B), which cannot be seen, and which users do not type when they sign in. ' +
        'It was not used: the user keeps their current password, and a new user has none yet. Type the password again in your SIS',
    );
    expect(summary.warnings[1]?.message).toMatch(/^The password contains a no-break space \(U\+00A0\), which/);
    for (const p of held) expect(JSON.stringify(summary)).not.toContain(p);
    // Refused for its length, it is that row's error alone.
    const short = await readUsersText('username,password\njsmith,ab\u200bc\n');
    expect(short.summary.errors.map((e) => e.message)).toEqual(['Password must be at least 6 characters']);
    expect(short.summary.warnings).toEqual([]);
  });
  it('is kept as written (case-sensitive); blank keeps the current password (undefined)', async () => {
    expect((await rowOf({ username: 'jsmith', password: 'PaSsWoRd' })).password).toBe('PaSsWoRd');
    expect((await rowOf({ username: 'jsmith', password: '' })).password).toBeUndefined();
  });
});

describe('email', () => {
  it('is a valid address', async () => {
    expect(await errorsOf({ username: 'jsmith', email: 'john@' })).toEqual([
      { line: 2, column: 'email', value: 'john@', message: 'Email address is not valid: it has no domain after the @', username: 'jsmith' },
    ]);
  });
  it('the message says what is wrong with the address', async () => {
    const cases: Array<[string, string]> = [
      ['john.smith.example.org', 'it has no @'],
      ['john@@example.org', 'it has more than one @'],
      ['a@x.org;b@y.org', 'it holds more than one address: give only one'],
      ['a@x.org, b@y.org', 'it holds more than one address: give only one'],
      ['john smith@example.org', 'it has a space in it, at position 5'],
      ['john@example.org\tx', 'it has a space in it, at position 17'],
      [
        'jo\u00a0hn@example.org',
        'it contains a no-break space (U+00A0) at position 3, which cannot be seen: type the address again in your SIS',
      ],
      [
        'john@exam\u200bple.org',
        'it contains a zero-width space (U+200B) at position 10, which cannot be seen: type the address again in your SIS',
      ],
      ['@example.org', 'it has nothing before the @'],
      ['john@', 'it has no domain after the @'],
      ['jöhn@example.org', "it has a character that is not allowed in an email address: 'ö' at position 2"],
      ['john@example.org😀', "it has a character that is not allowed in an email address: '😀' at position 17"],
      ['<john@example.org>', "it has a character that is not allowed in an email address: '<' at position 1"],
      ['.john@example.org', 'the part before the @ starts with a dot'],
      ['john.@example.org', 'the part before the @ ends with a dot'],
      ['jo..hn@example.org', 'the part before the @ has two dots in a row'],
      ["john'@example.org", 'the part before the @ ends with an apostrophe'],
      ['john@.example.org', 'the domain after the @ starts with a dot'],
      ['john@example.org.', 'the domain after the @ ends with a dot'],
      ['john@example..org', 'the domain after the @ has two dots in a row'],
      ['john@localhost', 'the domain after the @ has no dot (such as example.org)'],
      ['john@exa_mple.org', "the domain after the @ cannot have '_' (at position 9)"],
      ['john@-example.org', 'a part of the domain after the @ starts with a hyphen'],
      ['john@example.o', 'the domain after the @ must end in a dot and at least two letters, such as .org'],
      ['john@example.c0m', 'the domain after the @ must end in a dot and at least two letters, such as .org'],
    ];
    for (const [email, problem] of cases) {
      expect(await errorsOf({ username: 'jsmith', email }), email).toEqual([
        { line: 2, column: 'email', value: email, message: `Email address is not valid: ${problem}`, username: 'jsmith' },
      ]);
    }
    // What was accepted still is.
    for (const email of ["o'neil+x@k12.ca.us", 'a-b_c@x-y.example.org', '\u00a0john@example.org\u00a0']) {
      expect((await rowOf({ username: 'jsmith', email })).email, email).toBe(email.trim());
    }
  });
  it('has at most 254 characters', async () => {
    const long = `${'a'.repeat(250)}@example.org`;
    expect(await errorsOf({ username: 'jsmith', email: long })).toEqual([
      { line: 2, column: 'email', value: long, message: 'Email address must be at most 254 characters', username: 'jsmith' },
    ]);
  });
  it('blank clears it (null)', async () => {
    expect((await rowOf({ username: 'jsmith', email: '' })).email).toBeNull();
    expect((await rowOf({ username: 'jsmith', 'Email Address': 'j@x.org' })).email).toBe('j@x.org');
  });
});

describe('first name and last name', () => {
  it('first name has at most 64 characters', async () => {
    const long = 'Ä'.repeat(65);
    expect(await errorsOf({ username: 'jsmith', 'first name': long })).toEqual([
      { line: 2, column: 'first name', value: long, message: 'First name must be at most 64 characters', username: 'jsmith' },
    ]);
  });
  it('last name has at most 64 characters', async () => {
    const long = 'x'.repeat(65);
    expect(await errorsOf({ username: 'jsmith', 'last name': long })).toEqual([
      { line: 2, column: 'last name', value: long, message: 'Last name must be at most 64 characters', username: 'jsmith' },
    ]);
  });
  it('64 characters (counted as characters, not UTF-16 units) are fine', async () => {
    const row = await rowOf({ username: 'jsmith', 'first name': '😀'.repeat(64), 'last name': "  O'Neil " });
    expect(row.firstName).toBe('😀'.repeat(64));
    expect(row.lastName).toBe("O'Neil");
  });
  it('a question mark where an accented letter was (an export saved as ASCII) is a warning that says how to export, on either path', async () => {
    // Row 3 is read by the slow path (its email fails it) and stores no name, so it has no warning;
    // rows 5-6 have question marks that are not beside a letter. A deleting row is below.
    const { rows, summary } = await readUsersText(
      'username,first name,last name,email\njose.m,Jos?,Mu?oz,j@x.org\nann1,?lvarez,Lee,not-an-email\n' +
        'bob1,B?b,Bo,b@x.org\ncy01,?,Cy,c@x.org\ndee1,Dee ?,Do,d@x.org\n',
    );
    expect(rows.map((r) => [r.firstName, r.lastName])).toEqual([
      ['Jos?', 'Mu?oz'],
      ['B?b', 'Bo'],
      ['?', 'Cy'],
      ['Dee ?', 'Do'],
    ]);
    expect(summary.errors.map((e) => [e.line, e.column])).toEqual([[3, 'email']]);
    expect(summary.warnings.map((w) => [w.line, w.column, w.value, w.code])).toEqual([
      [2, 'first name', 'Jos?', 'LETTERS_LOST'],
      [2, 'last name', 'Mu?oz', 'LETTERS_LOST'],
      [4, 'first name', 'B?b', 'LETTERS_LOST'],
    ]);
    expect(summary.warnings[0]?.message).toMatch(/Export-Csv -Encoding UTF8/);
    const deleted = await readUsersText('username,first name,action\njose.m,Jos?,delete\nann1,Ann?e,add\n');
    expect(deleted.summary.warnings.map((w) => w.line)).toEqual([3]);
  });
});

describe('school', () => {
  it('a school or username after an apostrophe says to remove it', async () => {
    const errors = await errorsOf({ username: "'jsmith", school: "'Lincoln High" });
    expect(errors.map((e) => e.message)).toEqual([
      "Username may contain only letters, digits and . _ - @: remove the apostrophe (') at its start, which some SIS exports and " +
        'spreadsheets add to keep a value as text',
      "School ''Lincoln High' does not match any school of this district (by NCES ID, state ID or name): remove the apostrophe (') " +
        'at its start, which some SIS exports and spreadsheets add to keep a value as text',
    ]);
  });
  it('that matches no school is an error', async () => {
    expect(await errorsOf({ username: 'jsmith', school: 'Lincoln Hgh' })).toEqual([
      {
        line: 2,
        column: 'school',
        value: 'Lincoln Hgh',
        message: "School 'Lincoln Hgh' does not match any school of this district (by NCES ID, state ID or name)",
        username: 'jsmith',
      },
    ]);
  });
  it('an NCES ID a spreadsheet mangled (leading zero dropped, scientific notation) says so', async () => {
    const [dropped] = await errorsOf({ username: 'jsmith', school: '60000100001' });
    expect(dropped?.message).toBe(
      "School '60000100001' does not match any school of this district (by NCES ID, state ID or name). It looks like the ID " +
        '060000100001 without its leading zero, which a spreadsheet drops: format the column as Text in Excel before typing or pasting ' +
        'the values, or export the file from your SIS directly, without opening and saving it in Excel',
    );
    const [scientific] = await errorsOf({ username: 'jsmith', school: '6.00001E+10' });
    expect(scientific?.message).toMatch(
      /\. It looks like a number a spreadsheet wrote in scientific notation: format the column as Text in Excel/,
    );
    const [year] = await errorsOf({ username: 'jsmith', 'graduation year': '2030.0' });
    expect(year?.message).toBe(
      'Graduation year must be a four-digit year, such as 2031, without decimals (a spreadsheet number format adds them)',
    );
  });
  it('an invisible character in the school names it, with its position', async () => {
    const [error] = await errorsOf({ username: 'jsmith', school: 'Lincoln\u00a0High' });
    expect(error?.message).toBe(
      "School 'Lincoln\u00a0High' does not match any school of this district (by NCES ID, state ID or name): it contains a no-break space " +
        '(U+00A0) at position 8, which cannot be seen: type the value again in your SIS',
    );
    const [id] = await errorsOf({ username: 'jsmith', school: '\u200b060000100001' });
    expect(id?.message).toMatch(/: it contains a zero-width space \(U\+200B\) at position 1, which cannot be seen/);
  });
  it('matches by NCES ID, state ID or exact name, case-insensitively', async () => {
    expect((await rowOf({ username: 'jsmith', school: '060000100001' })).schoolId).toBe('school-lincoln');
    expect((await rowOf({ username: 'jsmith', school: 'ca-ada-02' })).schoolId).toBe('school-adams');
    expect((await rowOf({ username: 'jsmith', school: ' lincoln HIGH ' })).schoolId).toBe('school-lincoln');
    expect((await rowOf({ username: 'jsmith', school: '' })).schoolId).toBeNull();
  });
  it('matches a name whatever way its accents are spelled (composed, or e + a combining accent as a Mac saves it)', async () => {
    for (const [stored, inFile] of [
      ['NFC', 'NFD'],
      ['NFD', 'NFC'],
    ] as const) {
      const schools = [{ id: 'school-nord', name: 'Lycée Nord'.normalize(stored), ncesId: null, stateId: null }];
      const { items, summary } = await readUsersText(`username,school\njsmith,${'LYCÉE Nord'.normalize(inFile)}\n`, { schools });
      expect(summary.errors).toEqual([]);
      expect(items.map((i) => (i.kind === 'valid' ? i.row.schoolId : i.kind))).toEqual(['school-nord']);
    }
  });
  it("a value that is one school's ID and another's name is an error, not a silent pick", async () => {
    const schools = [
      { id: 'school-a', name: 'Lincoln Elementary', ncesId: null, stateId: '100200' },
      { id: 'school-b', name: '100200', ncesId: null, stateId: 'LIN-2' },
      { id: 'school-c', name: 'Adams', ncesId: '060000100001', stateId: '060000100001' },
    ];
    const { items, summary } = await readUsersText('username,school\njsmith,100200\njdoe1,lin-2\nkim1,060000100001\n', { schools });
    expect(items.map((i) => (i.kind === 'valid' ? i.row.schoolId : i.kind))).toEqual(['invalid', 'school-b', 'school-c']);
    expect(summary.errors).toEqual([
      {
        line: 2,
        column: 'school',
        value: '100200',
        message: `School '100200' matches two schools: it is the state ID of "Lincoln Elementary" and the name of "100200". Use an ID that names only one of them`,
        username: 'jsmith',
      },
    ]);
  });
});

describe('graduation year', () => {
  it('has four digits', async () => {
    expect(await errorsOf({ username: 'jsmith', 'graduation year': '31' })).toEqual([
      {
        line: 2,
        column: 'graduation year',
        value: '31',
        message: 'Graduation year must be a four-digit year, such as 2031',
        username: 'jsmith',
      },
    ]);
  });
  it('a year written as a date, or after an apostrophe, says what to remove', async () => {
    const message = async (year: string) => (await errorsOf({ username: 'jsmith', 'graduation year': year }))[0]?.message;
    const asDate =
      'Graduation year must be a four-digit year, such as 2031, not a date (a spreadsheet shows a year as a date when its column ' +
      'is formatted as a date: format it as a number or as text)';
    for (const year of ['7/19/1905', '2027-06-01', '01.06.2027', '6/1/27']) expect(await message(year), year).toBe(asDate);
    expect(await message("'2027")).toBe(
      "Graduation year must be a four-digit year, such as 2031: remove the apostrophe (') at its start, which some SIS exports " +
        'and spreadsheets add to keep a value as text',
    );
  });
  it('is plausible (1900 to 20 years after now)', async () => {
    expect(await errorsOf({ username: 'jsmith', 'graduation year': '2047' })).toEqual([
      { line: 2, column: 'graduation year', value: '2047', message: 'Graduation year must be between 1900 and 2046', username: 'jsmith' },
    ]);
    expect(await errorsOf({ username: 'jsmith', 'graduation year': '1899' })).toHaveLength(1);
  });
  it('becomes a number; blank is null', async () => {
    expect((await rowOf({ username: 'jsmith', 'graduation year': '2046' })).graduationYear).toBe(2046);
    expect((await rowOf({ username: 'jsmith', GraduationYear: '' })).graduationYear).toBeNull();
  });
});

describe('access type', () => {
  it('is blank, Administrator, School Administrator or Manager', async () => {
    expect(await errorsOf({ username: 'jsmith', 'access type': 'Teacher' })).toEqual([
      {
        line: 2,
        column: 'access type',
        value: 'Teacher',
        message: 'Access type must be blank, Administrator, School Administrator or Manager',
        username: 'jsmith',
      },
    ]);
  });
  it('is matched case-insensitively to its enum value', async () => {
    expect((await rowOf({ username: 'jsmith', 'access type': 'ADMINISTRATOR' })).accessType).toBe('administrator');
    expect((await rowOf({ username: 'jsmith', 'access type': 'school administrator' })).accessType).toBe('school_administrator');
    expect((await rowOf({ username: 'jsmith', 'access type': 'Manager' })).accessType).toBe('manager');
    expect((await rowOf({ username: 'jsmith', 'access type': '' })).accessType).toBeNull();
  });
  it("ignores spaces, _ and - as header names do: an SIS's enum name (SchoolAdministrator) is the same access type", async () => {
    for (const written of ['SchoolAdministrator', 'SCHOOL_ADMINISTRATOR', 'school-administrator', 'School  Administrator']) {
      expect((await rowOf({ username: 'jsmith', 'access type': written })).accessType, written).toBe('school_administrator');
    }
    expect(await errorsOf({ username: 'jsmith', 'access type': 'SchoolAdmin' })).toHaveLength(1);
  });
});

describe('role', () => {
  it('is student, teacher, staff, parent or other', async () => {
    expect(await errorsOf({ username: 'jsmith', role: 'principal' })).toEqual([
      { line: 2, column: 'role', value: 'principal', message: 'Role must be student, teacher, staff, parent or other', username: 'jsmith' },
    ]);
  });
  it('is matched case-insensitively', async () => {
    expect((await rowOf({ username: 'jsmith', role: 'Teacher' })).role).toBe('teacher');
    expect((await rowOf({ username: 'jsmith', role: '' })).role).toBeNull();
  });
});

describe('sis id', () => {
  it('has at most 255 characters', async () => {
    const long = '9'.repeat(256);
    expect(await errorsOf({ username: 'jsmith', 'sis id': long })).toEqual([
      { line: 2, column: 'sis id', value: long, message: 'SIS ID must be at most 255 characters', username: 'jsmith' },
    ]);
  });
  it('an invisible character is stored as written, with a warning that names it', async () => {
    const { rows, summary } = await readUsersText(
      [
        'username,sis id,action',
        'ann1,S-\u200b001,update',
        'dee1,\u00a0S-004\u00a0,update', // at the ends: trimmed like spaces
        'ab,S-\u00ad007,update', // invalid for its username: warned of all the same
        'old1,S-\u00ad008,delete', // a delete reads only the username
        '',
      ].join('\n'),
    );
    expect(summary.errors.map((e) => [e.line, e.column])).toEqual([[4, 'username']]);
    expect(rows.map((r) => r.sisId)).toEqual(['S-\u200b001', 'S-004', undefined]);
    expect(summary.warnings).toEqual([
      {
        line: 2,
        column: 'sis id',
        value: 'S-\u200b001',
        username: 'ann1',
        code: 'INVISIBLE_SIS_ID',
        message:
          'The SIS ID contains a zero-width space (U+200B) at position 3, which cannot be seen; it was stored as written. Type the ID again in your SIS',
      },
      expect.objectContaining({
        line: 4,
        column: 'sis id',
        code: 'INVISIBLE_SIS_ID',
        message: expect.stringMatching(/^The SIS ID contains a soft hyphen \(U\+00AD\) at position 3/),
      }),
    ]);
  });
  it('a value Excel changed is not used (the user keeps theirs), with a warning that says so and how to avoid it', async () => {
    const { rows, summary } = await readUsersText('username,sis id\nbob1,1.23457E+17\ncy01,#REF!\neve1,1234567890123\nfay1,#12\n');
    expect(summary.errors).toEqual([]);
    expect(rows.map((r) => [r.sisId, r.keepSisId])).toEqual([
      [null, true],
      [null, true],
      ['1234567890123', false],
      ['#12', false],
    ]);
    const excel =
      'It was not used: the user keeps their current SIS ID, and a new user has none yet. Format the column as Text in Excel ' +
      'before typing or pasting the values, or export the file from your SIS directly, without opening and saving it in Excel';
    expect(summary.warnings).toEqual([
      {
        line: 2,
        column: 'sis id',
        value: '1.23457E+17',
        username: 'bob1',
        code: 'EXCEL_CHANGED_SIS_ID',
        message: `Excel changed this SIS ID: the cell holds a number in scientific notation, which is how Excel shortens a long number, losing its last digits, not the ID. ${excel}`,
      },
      {
        line: 3,
        column: 'sis id',
        value: '#REF!',
        username: 'cy01',
        code: 'EXCEL_CHANGED_SIS_ID',
        message: `Excel changed this SIS ID: the cell holds an Excel error code, which Excel writes when it takes a value for a formula that fails, not the ID. ${excel}`,
      },
    ]);
  });
  it('is free text, also under its alias mis id', async () => {
    expect((await rowOf({ username: 'jsmith', 'MIS ID': 'S-00/12 a' })).sisId).toBe('S-00/12 a');
  });
});

describe('status (the column rosterd export users writes)', () => {
  it('inactive, in any case and with spaces around it, lists an inactive user; blank and active a user who ends up active', async () => {
    const { rows, summary } = await readUsersText(
      'username,email,Status\nann1,a@x.org,inactive\nbob1,b@x.org, INACTIVE \ncy01,c@x.org,Inactive\ndee1,d@x.org,\neve1,e@x.org,Active\n',
    );
    expect(summary.errors).toEqual([]);
    expect(summary.warnings).toEqual([]);
    expect(rows.map((r) => [r.username, r.inactive])).toEqual([
      ['ann1', true],
      ['bob1', true],
      ['cy01', true],
      ['dee1', false],
      ['eve1', false],
    ]);
  });
  it('is matched as other columns are: ignoring case, spaces, _ and -', async () => {
    for (const name of ['STATUS', ' status ', 'Stat_us', 'sta-tus']) {
      const { rows, summary } = await readUsersText(`username,${name}\nann1,inactive\n`);
      expect(summary.warnings, name).toEqual([]);
      expect(summary.columns, name).toEqual(['username', 'status']);
      expect(rows[0]?.inactive, name).toBe(true);
    }
  });
  it('is read in a delta too, except on a delete row, which only deactivates', async () => {
    const { rows, summary } = await readUsersText(
      'username,status,action\nann1,inactive,add\nbob1,inactive,update\ncy01,inactive,delete\ndee1,Withdrawn,delete\n',
    );
    expect(summary.mode).toBe('delta');
    expect(rows.map((r) => [r.username, r.action, r.inactive])).toEqual([
      ['ann1', 'add', true],
      ['bob1', 'update', true],
      ['cy01', 'delete', false],
      ['dee1', 'delete', false],
    ]);
    // A delete row's status is not read, so it is not a value rosterd fails to read either.
    expect(summary.warnings).toEqual([]);
  });
  it("any other value (an SIS's Enrolled or Withdrawn) is read as blank: no row error, one warning naming the values", async () => {
    const { rows, summary } = await readUsersText(
      'username,email,Status\nann1,a@x.org,Enrolled\nbob1,b@x.org,Withdrawn\ncy01,c@x.org,enrolled\ndee1,d@x.org,inactive\neve1,bad,Withdrawn\n',
    );
    expect(rows.map((r) => [r.username, r.inactive])).toEqual([
      ['ann1', false],
      ['bob1', false],
      ['cy01', false],
      ['dee1', true],
    ]);
    expect(summary.errors.map((e) => [e.line, e.column])).toEqual([[6, 'email']]); // the bad email, not the status
    expect(summary.warnings).toEqual([
      {
        line: 1,
        column: 'status',
        code: 'STATUS_NOT_READ',
        message:
          "Column 'Status' has values other than active and inactive on 3 lines: 'Enrolled' (2 lines), 'Withdrawn' (1 line). " +
          'Only active and inactive are read in it: those lines were imported as if their status were blank, so the users they ' +
          'list are active after the import. To deactivate a user, give them status inactive, or leave their row out of the file.',
      },
    ]);
    expect(summary.warningCount).toBe(1);
  });
  it('names a few values, the most frequent first, then says how many more; comes before the row warnings', async () => {
    const values = [
      'Pre-registered',
      'Withdrawn',
      'Withdrawn',
      'Enrolled',
      'Enrolled',
      'Enrolled',
      'Graduated',
      'Transferred',
      'Summer',
      'Y',
    ];
    const lines = values.map((v, i) => `user${String(i).padStart(2, '0')},${i === 0 ? '" secret1"' : 'secret22'},${v}`);
    const { summary } = await readUsersText(`username,password,status\n${lines.join('\n')}\n`);
    expect(summary.warnings.map((w) => w.code)).toEqual(['STATUS_NOT_READ', 'PASSWORD_TRIMMED']);
    expect(summary.warnings[0]?.message).toMatch(
      /^Column 'status' has values other than active and inactive on 10 lines: 'Enrolled' \(3 lines\), 'Withdrawn' \(2 lines\), 'Pre-registered' \(1 line\), 'Graduated' \(1 line\), 'Transferred' \(1 line\) and 2 more\. /,
    );
  });
  it('in a delta, says to delete the users to deactivate', async () => {
    const { summary } = await readUsersText('username,status,action\nann1,Withdrawn,update\n');
    expect(summary.warnings).toEqual([
      expect.objectContaining({
        code: 'STATUS_NOT_READ',
        message:
          "Column 'status' has values other than active and inactive on 1 line: 'Withdrawn' (1 line). Only active and inactive " +
          'are read in it: those lines were imported as if their status were blank. To deactivate a user, send their row with ' +
          'action delete, or give them status inactive.',
      }),
    ]);
  });
  it('a file without the column lists every user active', async () => {
    expect((await rowOf({ username: 'jsmith' })).inactive).toBe(false);
  });
});

describe('a groups.csv sent as users.csv', () => {
  it('fails the file, naming groups.csv: read as the whole roster, it would deactivate everyone else', async () => {
    for (const header of ['username,owner,group', 'Username,Group Name', 'username,Owner Name']) {
      await expect(readUsersText(`${header}\nann1,teach01,Band\n`), header).rejects.toThrow(
        new RegExp(
          `^This is not a users\\.csv: its header names 'username', .*the columns of groups\\.csv, and no other users\\.csv column\\. Upload it as groups\\.csv; nothing was changed\\.`,
        ),
      );
    }
  });
  it('a users.csv with a group column besides its own columns is read, the group column an unknown one', async () => {
    const { summary } = await readUsersText('username,email,group\nann1,a@x.org,Band\n');
    expect(summary.warnings.map((w) => w.column)).toContain('group');
  });
});

describe('action (delta files)', () => {
  it('a column named otherwise that holds actions fails the file: it would be read as the whole roster', async () => {
    for (const name of ['Operation', 'Change Type', 'actoin']) {
      const text = `username,${name},email\nann1,add,a@x.org\nbob1,,b@x.org\ncy01,DELETE,\ndee1, update ,d@x.org\n`;
      await expect(readUsersText(text), name).rejects.toThrow(
        new RegExp(`^Column '${name}' holds add, update or delete on every line that has a value, as the action column`),
      );
    }
  });
  it('an unknown column with other values too, or an action on few lines, is only an unknown column', async () => {
    for (const text of [
      'username,notes\nann1,add\nbob1,new student\ncy01,delete\n',
      'username,notes\nann1,update\nbob1,\ncy01,\ndee1,\n',
    ]) {
      const { summary } = await readUsersText(text);
      expect(summary.mode).toBe('full');
      expect(summary.warnings.map((w) => w.code)).toEqual(['UNKNOWN_COLUMN']);
    }
  });

  it('blank is an error in a file with an action column', async () => {
    expect(await errorsOf({ username: 'jsmith', action: '' })).toEqual([
      {
        line: 2,
        column: 'action',
        value: '',
        message: 'Action is required in a file with an action column: add, update or delete',
        username: 'jsmith',
      },
    ]);
  });
  it('is add, update or delete', async () => {
    expect(await errorsOf({ username: 'jsmith', action: 'remove' })).toEqual([
      { line: 2, column: 'action', value: 'remove', message: 'Action must be add, update or delete', username: 'jsmith' },
    ]);
  });
  it('makes the file a delta; matched case-insensitively', async () => {
    const { rows, summary } = await readUsersText('username,action\njsmith,ADD\njdoe,Update\nold1,delete\n');
    expect(summary.mode).toBe('delta');
    expect(rows.map((r) => r.action)).toEqual(['add', 'update', 'delete']);
  });
  it('a delete needs only a valid username: stale other cells do not block it', async () => {
    const { rows, summary } = await readUsersText('username,school,action\nleaver,Closed School,delete\nnewbie,Closed School,add\n');
    expect(rows.map((r) => r.username)).toEqual(['leaver']);
    expect(summary.errors).toHaveLength(1);
    expect(summary.errors[0]).toMatchObject({ line: 3, column: 'school' });
  });
  it('without an action column the file is a full sync and action is undefined', async () => {
    const { rows, summary } = await readUsersText('username\njsmith\n');
    expect(summary.mode).toBe('full');
    expect(rows[0]?.action).toBeUndefined();
  });
});

describe('rows', () => {
  it('a row with several broken rules reports each, in the order of the columns in the file', async () => {
    const errors = await errorsOf({ username: 'ab', email: 'x', role: 'boss', 'graduation year': 'soon' });
    expect(errors.map((e) => e.column)).toEqual(['username', 'email', 'role', 'graduation year']);
  });
  it('absent columns are undefined, blank cells null, cells trimmed', async () => {
    const row = await rowOf({ username: '  jsmith  ', email: ' ', role: ' student ' });
    expect(row).toEqual({
      line: 2,
      username: 'jsmith',
      usernameKey: 'jsmith',
      password: undefined,
      email: null,
      firstName: undefined,
      lastName: undefined,
      schoolId: undefined,
      graduationYear: undefined,
      accessType: undefined,
      role: 'student',
      sisId: undefined,
      keepSisId: false,
      inactive: false,
      action: undefined,
    });
  });
  it('an invalid row carries its username as written (so it is never deactivated), or null when blank', async () => {
    // Not lower-cased here: Postgres compares it with lower(), like every other username.
    const { items } = await readUsersText('username,email\nJSmith,bad\n,a@b.org\nabc,\n ÉLODIE ,bad\n');
    expect(items).toEqual([
      { kind: 'invalid', line: 2, username: 'JSmith' },
      { kind: 'invalid', line: 3, username: null },
      { kind: 'invalid', line: 4, username: 'abc' },
      { kind: 'invalid', line: 5, username: 'ÉLODIE' },
    ]);
  });
  it("an invalid row's username is the one the administrator sees: without zero-width characters", async () => {
    // Rejected for the zero-width space, the row still names jsmith01, who must not be deactivated.
    const { items } = await readUsersText('username\njsmith01\u200b\n\u200bjo\u00adhn1\njohn\u00a0smith\n');
    expect(items).toEqual([
      { kind: 'invalid', line: 2, username: 'jsmith01' },
      { kind: 'invalid', line: 3, username: 'john1' },
      { kind: 'invalid', line: 4, username: 'john\u00a0smith' },
    ]);
  });
  it('a password with spaces at its start or end is trimmed, and the report says so (masked)', async () => {
    const { items, summary } = await readUsersText(
      'username,password,email\njsmith,"  secret1  ",bad\njdoe1,"  secret2 ",d@x.org\nkim1,"      ",k@x.org\nlee1,secret4,l@x.org\nmoe1,"  abc  ",m@x.org\n',
    );
    expect(items.map((i) => (i.kind === 'valid' ? i.row.password : i.kind))).toEqual([
      'invalid',
      'secret2',
      undefined,
      'secret4',
      'invalid',
    ]);
    // moe1's "abc" is too short once trimmed: an error, and no warning that would say they sign in with it.
    expect(summary.errors.filter((e) => e.line === 6).map((e) => e.column)).toEqual(['password']);
    const warning = 'The password starts or ends with spaces; they were removed, so the user signs in without them';
    // Once per row, also for a row that fails on another column.
    expect(summary.warnings).toEqual([
      { line: 2, column: 'password', value: '******', code: 'PASSWORD_TRIMMED', message: warning, username: 'jsmith' },
      { line: 3, column: 'password', value: '******', code: 'PASSWORD_TRIMMED', message: warning, username: 'jdoe1' },
    ]);
  });
  it('names are stored composed (NFC) and counted as people see them: 40 decomposed é are 40 characters', async () => {
    const decomposed = 'e\u0301'.repeat(40);
    const { items } = await readUsersText(`username,first name,last name\njsmith,${decomposed},O\u0308z\n`);
    expect(items).toEqual([expect.objectContaining({ kind: 'valid' })]);
    const row = items[0]?.kind === 'valid' ? items[0].row : undefined;
    expect(row?.firstName).toBe('\u00e9'.repeat(40));
    expect(row?.lastName).toBe('\u00d6z');
  });
  it('duplicates are left to the applier: both rows are yielded', async () => {
    const { rows } = await readUsersText('username\njsmith\nJSMITH\n');
    expect(rows.map((r) => r.usernameKey)).toEqual(['jsmith', 'jsmith']);
  });
  it('completely blank lines (also ,,,) are skipped silently and not counted', async () => {
    const { rows, summary } = await readUsersText('username,email\n\njsmith,j@x.org\n,\n  \njdoe,\n');
    expect(rows.map((r) => [r.line, r.username])).toEqual([
      [3, 'jsmith'],
      [6, 'jdoe'],
    ]);
    expect(summary.rows).toBe(2);
    expect(summary.errorCount).toBe(0);
  });
  it('keeps at most maxErrors detailed errors, but counts them all', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => `u${i}`).join('\n');
    const { summary } = await readUsersText(`username\n${lines}\n`, { maxErrors: 10 });
    expect(summary.errors).toHaveLength(10);
    expect(summary.errorCount).toBe(30);
    expect(summary.errors[9]?.line).toBe(11);
  });
});

describe('Excel text formulas (="00123", as SIS exports write IDs so that Excel keeps their leading zeros)', () => {
  it('are read as the text Excel shows, written bare or quoted as Excel saves them', async () => {
    const bare = 'username,sis id,graduation year,first name\n="0012345",="000789",="2027",="Ann ""Nan"""\n';
    const quoted = 'username,sis id,graduation year,first name\n"=""0012345""","=""000789""", ="2027" ,"=""Ann """"Nan"""""""\n';
    for (const text of [bare, quoted]) {
      const { rows, summary } = await readUsersText(text);
      expect(summary.errors).toEqual([]);
      expect(rows).toEqual([
        expect.objectContaining({ username: '0012345', sisId: '000789', graduationYear: 2027, firstName: 'Ann "Nan"' }),
      ]);
    }
  });
  it('any other formula is left as written, and checked as such', async () => {
    const { rows, summary } = await readUsersText('username,first name,sis id\njsmith,"=""a""&""b""",=A1\n');
    expect(summary.errors).toEqual([]);
    expect(rows).toEqual([expect.objectContaining({ firstName: '="a"&"b"', sisId: '=A1' })]);
  });
  it('a rejected row names its user as Excel shows it, so a full sync does not deactivate that user', async () => {
    const { items } = await readUsersText('username,email\n="jsmith",not-an-email\n');
    expect(items).toEqual([{ kind: 'invalid', line: 2, username: 'jsmith' }]);
  });
});

describe('text direction marks', () => {
  // A left-to-right or right-to-left mark comes along with a value copied from a web page, an email
  // or a document (Outlook and Word add them around text in Hebrew or Arabic), and takes no room:
  // the messages said that 'ann.lee' may contain only letters, digits and . _ - @, that 'Lincoln
  // High' matched no school of a district that has one, or that an address had the character ''.
  const rest = 'which cannot be seen: type the value again in your SIS. A username may contain only letters, digits and . _ - @';
  it('in a username, are named with their position, as the other invisible characters are', async () => {
    const [error] = await errorsOf({ username: 'ann.lee\u200e' });
    expect(error?.message).toBe(`Username contains a left-to-right mark (U+200E) at position 8, ${rest}`);
    const [rtl] = await errorsOf({ username: '\u202bjsmith\u202c' });
    expect(rtl?.message).toBe(
      `Username contains a text direction control (U+202B) at position 1 (and 1 more invisible character), ${rest}`,
    );
  });
  it('in a school and an email address', async () => {
    const [school] = await errorsOf({ username: 'jsmith', school: 'Lincoln High\u200f' });
    expect(school?.message).toMatch(
      /: it contains a right-to-left mark \(U\+200F\) at position 13, which cannot be seen: type the value again/,
    );
    const [email] = await errorsOf({ username: 'jsmith', email: 'j@x.org\u200f' });
    expect(email?.message).toBe(
      'Email address is not valid: it contains a right-to-left mark (U+200F) at position 8, which cannot be seen: type the address again in your SIS',
    );
  });
  it('the rejected row names the user without them, so a full sync does not deactivate that user', async () => {
    const { items } = await readUsersText('username\nann.lee\u200e\n\u2067jsmith\u2069\n');
    expect(items).toEqual([
      { kind: 'invalid', line: 2, username: 'ann.lee' },
      { kind: 'invalid', line: 3, username: 'jsmith' },
    ]);
  });
  it('a password holding one is not used, as with the other invisible characters', async () => {
    const { rows, summary } = await readUsersText('username,password\njsmith,Secret99\u200e\n');
    expect(rows[0]?.password).toBeUndefined();
    expect(summary.warnings.map((w) => w.code)).toEqual(['INVISIBLE_PASSWORD']);
    expect(summary.warnings[0]?.message).toContain('a left-to-right mark (U+200E)');
  });
});
