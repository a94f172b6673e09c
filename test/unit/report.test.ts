import { describe, expect, it } from 'vitest';
import { holdReason } from '../../src/import/hold.js';
import { emptyCounts, type ImportIssue } from '../../src/import/types.js';
import { csvCell, toCsv } from '../../src/report/csv.js';
import { escapeHtml } from '../../src/report/html.js';
import { formatBytes, formatDuration, formatInstant } from '../../src/report/model.js';
import { renderReport } from '../../src/report/render.js';
import type { ReportImport, ReportInput } from '../../src/report/types.js';

const SECRET = 'Sup3rSecret!';

function input(over: Partial<ReportImport> = {}, extra: Partial<ReportInput> = {}): ReportInput {
  return {
    from: 'rosterd <rosterd@example.com>',
    tenant: {
      subdomain: 'lincoln-usd',
      name: 'Lincoln <Unified> & Co',
      timezone: 'America/Chicago',
      adminEmails: ['it@lincoln.example', 'sis@lincoln.example'],
    },
    import: {
      id: '6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60',
      file: 'users.csv',
      sha256: 'a'.repeat(64),
      bytes: 123_456,
      receivedAt: '2026-11-21T19:02:11-06:00',
      status: 'succeeded',
      mode: 'full',
      counts: { ...emptyCounts(), rows: 126, created: 120, updated: 4, unchanged: 0, deactivated: 2 },
      errors: [],
      warnings: [],
      durationMs: 2345,
      ...over,
    },
    ...extra,
  };
}

const threeErrors: ImportIssue[] = [
  { line: 7, column: 'username', value: 'DUPuser01', message: 'username DUPuser01 appears twice (also line 9)', username: 'DUPuser01' },
  { line: 8, column: 'password', value: SECRET, message: 'password must be at least 6 characters', username: 'jsmith01' },
  // A username may start with @, which a spreadsheet would read as a formula.
  { line: 12, column: 'email', value: '=HYPERLINK("http://evil","click")', message: 'not a valid email <address>', username: '@jdoe' },
];

describe('renderReport', () => {
  it('a succeeded import: subject with tenant, outcome and counts; addressed to the administrators', () => {
    const mail = renderReport(input());
    expect(mail.subject).toBe('[rosterd] lincoln-usd: users.csv imported — 120 created, 4 updated, 2 deactivated');
    expect(mail.to).toEqual(['it@lincoln.example', 'sis@lincoln.example']);
    expect(mail.from).toBe('rosterd <rosterd@example.com>');
    expect(mail.attachments).toEqual([]);
    expect(mail.headers['X-Rosterd-Import']).toBe('6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60');
    expect(mail.headers['Auto-Submitted']).toBe('auto-generated');
  });

  it('the text body has file, size, SHA-256, arrival in the tenant zone, counts and duration', () => {
    const { text } = renderReport(input());
    expect(text).toContain('users.csv');
    expect(text).toContain('120.6 KiB (123,456 bytes)');
    expect(text).toContain('a'.repeat(64));
    expect(text).toContain('Saturday, November 21, 2026, 7:02:11 PM CST (America/Chicago)');
    expect(text).toContain('2.3 s');
    expect(text).toMatch(/Rows read\s+126/);
    expect(text).toMatch(/Created\s+120/);
    expect(text).toMatch(/Updated\s+4/);
    expect(text).toMatch(/Unchanged\s+0/);
    expect(text).toMatch(/Deactivated\s+2/);
    expect(text).toMatch(/Reactivated\s+0/);
    expect(text).toMatch(/Errors\s+0/);
    expect(text).toMatch(/Warnings\s+0/);
    expect(text).toContain('Lincoln <Unified> & Co (lincoln-usd)');
  });

  it('completed with errors: error table, CSV attachment, no password anywhere', () => {
    const mail = renderReport(
      input({
        status: 'completed_with_errors',
        counts: { ...emptyCounts(), rows: 129, created: 120, updated: 4, deactivated: 2, errors: 3 },
        errors: threeErrors,
      }),
    );
    expect(mail.subject).toBe('[rosterd] lincoln-usd: users.csv imported with 3 errors — 120 created, 4 updated, 2 deactivated');
    // The row's username beside its line, by which the administrator finds the row in the SIS; not
    // twice when the value shown is the username.
    expect(mail.text).toContain('line 7, username "DUPuser01": username DUPuser01 appears twice');
    expect(mail.text).toContain('line 8 (jsmith01), password "******": password must be at least 6 characters');
    expect(mail.text).toContain('line 12 (@jdoe), email "=HYPERLINK');
    expect(mail.html).toContain(
      '<td style="padding:2px 12px 2px 0;vertical-align:top;overflow-wrap:anywhere;word-break:break-word">DUPuser01</td>',
    );
    expect(mail.html).toContain('<th style="padding:2px 12px 2px 0;text-align:left;border-bottom:1px solid #ccc">Username</th>');
    expect(mail.html).toContain(
      '<td style="padding:2px 12px 2px 0;vertical-align:top">8</td>' +
        '<td style="padding:2px 12px 2px 0;vertical-align:top;overflow-wrap:anywhere;word-break:break-word">jsmith01</td>',
    );
    expect(mail.attachments).toHaveLength(1);
    const csv = mail.attachments[0];
    expect(csv?.filename).toBe('users-errors.csv');
    expect(csv?.contentType).toBe('text/csv; charset=utf-8');
    expect(csv?.content).toBe(
      '\uFEFFline,username,column,value,message\r\n' +
        '7,DUPuser01,username,DUPuser01,username DUPuser01 appears twice (also line 9)\r\n' +
        '8,jsmith01,password,******,password must be at least 6 characters\r\n' +
        `12,'@jdoe,email,"'=HYPERLINK(""http://evil"",""click"")",not a valid email <address>\r\n`,
    );
    expect(JSON.stringify(mail)).not.toContain(SECRET);
  });

  it('escapes everything from the file and the operator in HTML', () => {
    const mail = renderReport(
      input({
        status: 'failed',
        message: 'header <script>alert(1)</script> is not CSV',
        errors: [{ line: 3, column: 'first name', value: '<img src=x onerror=alert(1)>', message: 'too "long" & \'odd\'' }],
        counts: { ...emptyCounts(), errors: 1 },
      }),
    );
    expect(mail.html).not.toContain('<script>');
    expect(mail.html).not.toContain('<img');
    expect(mail.html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(mail.html).toContain('Lincoln &#60;Unified&#62; &#38; Co');
    expect(mail.html).toContain('too &#34;long&#34; &#38; &#39;odd&#39;');
    expect(mail.html).not.toMatch(/<(?!\/?(html|head|meta|title|body|p|strong|table|tr|th|td|h3|code|ul|li)\b|!DOCTYPE)/);
  });

  it('a failed import says nothing was changed and gives the message', () => {
    const mail = renderReport(
      input({ status: 'failed', message: 'the file has no username column', counts: emptyCounts(), errors: [], mode: null }),
    );
    expect(mail.subject).toBe('[rosterd] lincoln-usd: users.csv failed — nothing imported');
    expect(mail.text).toContain('users.csv was not imported. The file has no username column. Nothing was changed.');
    expect(mail.text).toContain('Do what the message above says and upload the file again');
    expect(mail.attachments).toEqual([]);
  });

  it('a held import names the approve command and attaches the users it would deactivate', () => {
    const id = '6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60';
    const mail = renderReport(
      input(
        {
          status: 'held',
          message: holdReason(57, 400, { uploadId: id, tenantId: 1, thresholdPercent: 10, thresholdCount: null }),
          counts: { ...emptyCounts(), rows: 343, created: 0, updated: 3, deactivated: 57 },
        },
        {
          wouldDeactivate: [
            { username: 'jdoe', email: 'jdoe@lincoln.example', firstName: 'Jane', lastName: 'Doe', school: 'Lincoln High', sisId: '1001' },
            { username: '@risky', email: null, firstName: '+1', lastName: '-x', school: '=Oak', sisId: null },
          ],
        },
      ),
    );
    expect(mail.subject).toBe('[rosterd] lincoln-usd: users.csv held for approval — would deactivate 57 users');
    expect(mail.text).toContain('rosterd import approve 6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60');
    expect(mail.text).toContain('rosterd import reject 6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60');
    expect(mail.text).toContain(
      'users.csv was held and nothing has been changed yet: this file would deactivate 57 of 400 active users (14.3%), ' +
        "more than the district's threshold of 10% of active users.\n",
    );
    // The stored message's commands are the operator's: the administrator is told to ask for them.
    expect(mail.text).not.toContain('approve it with');
    expect(mail.html).not.toContain('approve it with');
    expect(mail.text).toContain(`ask your rosterd operator to approve the import: rosterd import approve ${id}`);
    // A corrected whole roster supersedes the held one (src/import/run-import.ts): no rejection is needed for it.
    const flat = mail.text.replace(/\s+/g, ' ');
    expect(flat).toContain(
      'If not (an export that missed a school is the usual cause), fix the export and upload the corrected users.csv, the whole ' +
        'roster without an action column: it replaces this one when it is imported, in the next night window, and this one is then ' +
        `never applied. Only if no corrected file is coming, ask the operator to reject this one: rosterd import reject ${id}`,
    );
    expect(mail.html.replace(/\s+/g, ' ')).toContain('it replaces this one when it is imported');
    expect(mail.attachments.map((a) => a.filename)).toEqual(['users-would-deactivate.csv']);
    expect(mail.attachments[0]?.content).toBe(
      "\uFEFFusername,email,first name,last name,school,sis id\r\njdoe,jdoe@lincoln.example,Jane,Doe,Lincoln High,1001\r\n'@risky,,'+1,'-x,'=Oak,\r\n",
    );
  });

  it("a held import counts the users it would deactivate by school, most first: an export that missed a school shows as that school's users", () => {
    const user = (n: number, school: string | null) => ({ username: `user${n}`, school });
    const held = (wouldDeactivate: Array<{ username: string; school: string | null }>) =>
      renderReport(
        input(
          {
            status: 'held',
            message: holdReason(wouldDeactivate.length, 60, { uploadId: 'x', tenantId: 1, thresholdPercent: 10, thresholdCount: null }),
            counts: { ...emptyCounts(), rows: 20, deactivated: wouldDeactivate.length },
          },
          { wouldDeactivate },
        ),
      );
    const users = [
      ...Array.from({ length: 30 }, (_, i) => user(i, 'Lincoln High')),
      user(30, 'Oak Middle'),
      user(31, null),
      user(32, 'Birch Elementary'),
      user(33, 'Oak Middle'),
    ];
    const mail = held(users);
    const line = 'Would deactivate, by school: Lincoln High 30, Oak Middle 2, Birch Elementary 1, no school 1';
    expect(mail.text.replace(/ {2,}/g, ' ')).toContain(line);
    expect(mail.html).toContain('Lincoln High 30, Oak Middle 2, Birch Elementary 1, no school 1');
    // Beyond five schools, the rest are counted as users.
    const spread = held(
      ['A', 'B', 'C', 'D', 'E', 'F', 'G'].flatMap((s, i) => Array.from({ length: 7 - i }, (_, j) => user(i * 10 + j, s))),
    );
    expect(spread.text.replace(/ {2,}/g, ' ')).toContain(
      'Would deactivate, by school: A 7, B 6, C 5, D 4, E 3, and 3 more users (the attachment has them all)',
    );
    // A district without schools: no breakdown that would say only "no school".
    expect(held([user(1, null), user(2, null)]).text).not.toContain('by school');
  });

  it('a held delta is fixed by its rejection and the corrected changes: a file with an action column replaces no held one', () => {
    const id = '6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60';
    const mail = renderReport(
      input({
        status: 'held',
        mode: 'delta',
        message: holdReason(57, 400, { uploadId: id, tenantId: 1, thresholdPercent: 10, thresholdCount: null }),
        counts: { ...emptyCounts(), rows: 57, deactivated: 57 },
      }),
    );
    const flat = mail.text.replace(/\s+/g, ' ');
    expect(flat).toContain(
      `If not, ask the operator to reject this one (rosterd import reject ${id}) and upload the corrected changes: a users.csv ` +
        'with an action column does not replace a held one. A whole users.csv without an action column does, when it is imported, ' +
        'and this one is then never applied.',
    );
    expect(flat).not.toContain('fix the export');
  });

  it('shows the first 20 errors in the body and attaches all of them', () => {
    const errors = Array.from({ length: 45 }, (_, i) => ({
      line: i + 2,
      column: 'email',
      value: `bad${i}`,
      message: 'not a valid email address',
    }));
    const mail = renderReport(input({ status: 'completed_with_errors', errors, counts: { ...emptyCounts(), rows: 45, errors: 45 } }));
    expect(mail.text).toContain('Errors (first 20 of 45)');
    expect(mail.text).toContain('"bad19"');
    expect(mail.text).not.toContain('"bad20"');
    expect(mail.attachments[0]?.content.split('\r\n')).toHaveLength(47); // header + 45 + trailing empty
  });

  it('counts skipped rows, not errors: one row can have several', () => {
    const errors: ImportIssue[] = [
      { line: 4, column: 'username', value: 'abc', message: 'Username must be at least 4 characters' },
      { line: 4, column: 'email', value: 'nope', message: 'Email address is not valid' },
      { line: 9, column: 'role', value: 'alien', message: 'Role must be student, teacher, staff, parent or other' },
    ];
    const { text } = renderReport(
      input({ status: 'completed_with_errors', errors, counts: { ...emptyCounts(), rows: 10, created: 8, errors: 3 } }),
    );
    expect(text).toContain('users.csv was imported, but 2 rows with errors were skipped (3 errors)');
  });

  it('one error is singular; control characters from the file do not break lines', () => {
    const mail = renderReport(
      input({
        status: 'completed_with_errors',
        errors: [{ line: 4, column: 'username', value: 'a\r\nBcc: x@evil', message: 'invalid' }],
        counts: { ...emptyCounts(), rows: 1, errors: 1 },
      }),
    );
    expect(mail.subject).toContain('imported with 1 error —');
    expect(mail.text).toContain('"a Bcc: x@evil"');
    expect(mail.attachments[0]?.content).toContain('"a\r\nBcc: x@evil"');
  });

  it('never puts a password in any part, whatever the column spelling', () => {
    const errors = ['password', 'Password', 'pass_word', 'PASS-WORD'].map((column, i) => ({
      line: i + 2,
      column,
      value: SECRET,
      message: 'too short',
    }));
    const mail = renderReport(
      input({ status: 'completed_with_errors', errors, warnings: [{ line: 2, column: 'password', value: SECRET, message: 'x' }] }),
    );
    expect(JSON.stringify(mail)).not.toContain(SECRET);
  });

  it('refuses to report an import that has not run', () => {
    expect(() => renderReport(input({ status: 'pending' }))).toThrow(/pending/);
  });
});

describe('csvCell', () => {
  it.each([
    ['plain', 'plain'],
    ['=1+1', "'=1+1"],
    ['+1', "'+1"],
    ['-1', "'-1"],
    ['@SUM(A1)', "'@SUM(A1)"],
    ['\t=1', "'\t=1"],
    ['\r=1', `"'\r=1"`],
    [' =1', "' =1"],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['two\nlines', '"two\nlines"'],
    ['', ''],
  ])('%j → %j', (value, cell) => {
    expect(csvCell(value)).toBe(cell);
  });

  it('numbers and blanks', () => {
    expect(
      toCsv(
        ['a', 'b'],
        [
          [1, null],
          [undefined, 'x'],
        ],
      ),
    ).toBe('\uFEFFa,b\r\n1,\r\n,x\r\n');
  });
});

describe('formatting', () => {
  it('escapes HTML', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;');
  });
  it('bytes, durations, instants', () => {
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MiB (5,242,880 bytes)');
    expect(formatDuration(250)).toBe('250 ms');
    expect(formatDuration(125_000)).toBe('2 min 5 s');
    expect(formatInstant(new Date('2026-11-21T05:00:00Z'), 'Pacific/Auckland')).toBe(
      'Saturday, November 21, 2026, 6:00:00 PM GMT+13 (Pacific/Auckland)',
    );
    expect(formatInstant('2026-07-01T12:00:00Z', 'America/New_York')).toBe('Wednesday, July 1, 2026, 8:00:00 AM EDT (America/New_York)');
  });
});
