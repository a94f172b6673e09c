/**
 * What the report tells the district administrator in the cases a reviewer found it wrong: many
 * warnings, capped issue lists, held and rejected counts, groups.csv, failures after repeated
 * attempts, delta files, approvals, and number formatting.
 */
import { describe, expect, it } from 'vitest';
import { wasHeld } from '../../src/import/hold.js';
import { emptyCounts, type ImportIssue, type WarningCode } from '../../src/import/types.js';
import { renderReport } from '../../src/report/render.js';
import type { ReportImport } from '../../src/report/types.js';
import { readUsersText } from '../fixtures/csv/helpers.js';
import { reportInput } from '../support/report-input.js';

const input = reportInput;

const count = (text: string, part: string): number => text.split(part).length - 1;

const ENCODING_WARNING: ImportIssue = {
  line: 0,
  column: '',
  code: 'ENCODING_WINDOWS_1252',
  message: 'The file is not valid UTF-8, so it was read as Windows-1252 (Western European).',
};
const COLUMN_WARNING: ImportIssue = {
  line: 1,
  column: 'favorite color',
  code: 'UNKNOWN_COLUMN',
  message: "Column 'favorite color' is not a known column",
};
const trimmed = (line: number): ImportIssue => ({
  line,
  column: 'password',
  value: '******',
  code: 'PASSWORD_TRIMMED',
  message: 'The password starts or ends with spaces; they were removed, so the user signs in without them',
});

describe('warnings in the body are capped; all of them are attached', () => {
  const rowWarnings = Array.from({ length: 3000 }, (_, i) => trimmed(i + 2));
  const mail = renderReport(
    input({
      encoding: 'windows-1252',
      counts: { ...emptyCounts(), rows: 3000, created: 3000, warnings: 3002 },
      warnings: [ENCODING_WARNING, COLUMN_WARNING, ...rowWarnings],
    }),
  );

  it('the text body lists the file warnings and the first row warnings, and says how many more', () => {
    expect(mail.text.split('\n').length).toBeLessThan(120);
    expect(mail.text).toContain('Warnings (first 22 of 3,002)');
    expect(mail.text).toContain('read as Windows-1252');
    expect(mail.text).toContain("Column 'favorite color'");
    expect(mail.text).toContain('line 21, password:');
    expect(mail.text).not.toContain('line 22, password:');
    expect(mail.text).toContain('2,980 more in users-warnings.csv (attached)');
  });

  it('so does the HTML body', () => {
    expect(mail.html.length).toBeLessThan(20_000);
    expect(mail.html).toContain('Warnings (first 22 of 3,002)');
    expect(mail.html).toContain('read as Windows-1252');
    expect(mail.html).not.toContain('line 22, password:');
    expect(mail.html).toContain('users-warnings.csv');
  });

  it('attaches every warning in its own CSV, passwords masked', () => {
    const csv = mail.attachments.find((a) => a.filename === 'users-warnings.csv');
    expect(csv?.contentType).toBe('text/csv; charset=utf-8');
    const lines = csv?.content.split('\r\n') ?? [];
    expect(lines[0]).toBe('\uFEFFline,username,column,value,message');
    expect(lines).toHaveLength(3002 + 2); // header + warnings + trailing empty
    // A warning without a username (recorded before usernames were) leaves its cell empty.
    expect(lines[3]).toBe(
      '2,,password,******,"The password starts or ends with spaces; they were removed, so the user signs in without them"',
    );
  });

  it('a few warnings are all in the body and need no attachment', () => {
    const few = renderReport(input({ counts: { ...emptyCounts(), rows: 3, created: 3, warnings: 2 }, warnings: [trimmed(2), trimmed(3)] }));
    expect(few.text).toContain('Warnings (2)');
    expect(few.attachments).toEqual([]);
  });
});

describe('capped issue lists', () => {
  it('says the errors attachment holds the first N of M when the record kept only some', () => {
    const errors = Array.from({ length: 50_000 }, (_, i) => ({ line: i + 2, column: 'email', value: `bad${i}`, message: 'not valid' }));
    const mail = renderReport(
      input({
        status: 'completed_with_errors',
        counts: { ...emptyCounts(), rows: 70_000, created: 10_000, errors: 60_000 },
        errors,
        issuesTruncated: true,
      }),
    );
    expect(mail.text).toContain('Errors (first 20 of 60,000)');
    expect(mail.text).toContain('users-errors.csv (attached) has the first 50,000 of 60,000 errors');
    expect(mail.html).toContain('has the first 50,000 of 60,000 errors');
    expect(mail.text).not.toContain('All errors');
    expect(mail.text).not.toContain('has all of them');
    expect(mail.html).not.toContain('All errors');
  });

  it('says the same of warnings', () => {
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 60_000, created: 60_000, warnings: 60_000 },
        warnings: Array.from({ length: 50_000 }, (_, i) => trimmed(i + 2)),
        issuesTruncated: true,
      }),
    );
    // 50,000 kept warnings are 5.9 MB of CSV: the attachment holds what keeps the email under mail servers' limits.
    const csv = mail.attachments.find((a) => a.filename === 'users-warnings.csv')?.content ?? '';
    expect(Buffer.byteLength(csv)).toBeLessThanOrEqual(2_000_000);
    const rows = csv.trimEnd().split('\r\n').length - 1;
    expect(rows).toBeGreaterThan(10_000);
    expect(mail.text).toContain(
      `users-warnings.csv (attached) has the first ${rows.toLocaleString('en-US')} of 60,000 warnings (an email cannot hold more; your rosterd operator can list the first 50,000 with "rosterd import show").`,
    );
  });

  it('a report of millions of problems stays a size mail servers accept', () => {
    const many = Array.from({ length: 50_000 }, (_, i) => ({
      line: i + 2,
      column: 'email',
      value: `someone${i}@district.example.org`,
      message: 'Email address is not valid: it has no domain after the @',
    }));
    const mail = renderReport(
      input({
        status: 'completed_with_errors',
        counts: { ...emptyCounts(), rows: 3_000_000, created: 10, errors: 2_500_000, warnings: 2_000_000 },
        errors: many,
        warnings: Array.from({ length: 50_000 }, (_, i) => trimmed(i + 2)),
        issuesTruncated: true,
      }),
    );
    const size = mail.attachments.reduce((n, a) => n + Buffer.byteLength(a.content), 0) + mail.text.length + mail.html.length;
    expect(size).toBeLessThan(5_000_000);
    expect(mail.text).toMatch(/users-errors\.csv \(attached\) has the first [\d,]+ of 2,500,000 errors \(an email cannot hold more/);
  });
});

describe('held and rejected imports show what the file would have done', () => {
  const counts = { ...emptyCounts(), rows: 1, unchanged: 1, deactivated: 4 };
  for (const status of ['held', 'rejected'] as const) {
    it(status, () => {
      const mail = renderReport(input({ status, counts }));
      expect(mail.text).toMatch(/Would deactivate\s+4/);
      expect(mail.text).not.toMatch(/^\s+Deactivated\s/m);
      expect(mail.text).not.toMatch(/^Counts$/m);
      expect(mail.html).toContain('Would deactivate');
      expect(mail.html).not.toContain('>Deactivated<');
    });
  }

  it('a rejected report says who rejected it', () => {
    const mail = renderReport(
      input({ status: 'rejected', counts, rejectedBy: 'ops@nyc.example', rejectedAt: '2026-11-22T08:00:00-05:00' }),
    );
    expect(mail.text).toContain('rejected by ops@nyc.example');
  });

  it('a rejected report says again why the file was held, and asks for the whole roster', () => {
    const message = wasHeld(
      "this file would deactivate 1200 of 4000 active users (30%), more than the district's threshold of 5% of active users.",
      'rejected',
      'users.csv',
    );
    const mail = renderReport(input({ status: 'rejected', counts, message, rejectedBy: 'ops@nyc.example' }));
    expect(mail.text.replace(/\s+/g, ' ')).toContain(
      "users.csv was held because it would deactivate 1,200 of 4,000 active users (30%), more than the district's threshold " +
        'of 5% of active users, and then rejected by ops@nyc.example. Nothing was changed.',
    );
    expect(mail.text.replace(/\s+/g, ' ')).toContain('Upload a corrected users.csv, the whole roster');
    expect(mail.html).toContain('held because it would deactivate 1,200 of 4,000');
    // A message of another kind is not quoted as a reason.
    const bare = renderReport(input({ status: 'rejected', counts, message: 'something else' }));
    expect(bare.text).toContain('users.csv was held and then rejected by the operator.');
  });
});

describe('groups.csv speaks of memberships', () => {
  const groups = (over: Partial<ReportImport>) => renderReport(input({ file: 'groups.csv', ...over }));

  it('subject, headline, counts and mode', () => {
    const mail = groups({ counts: { ...emptyCounts(), rows: 2, unchanged: 2, deactivated: 1 } });
    expect(mail.subject).toBe('[rosterd] nyc-usd: groups.csv imported — 0 memberships added, 1 membership removed');
    expect(mail.text).toContain('groups.csv was imported: 0 memberships added, 1 membership removed.');
    expect(mail.text).toMatch(/Memberships removed\s+1/);
    expect(mail.text).toMatch(/Memberships already there\s+2/);
    expect(mail.text).not.toMatch(/^\s+(Created|Deactivated|Reactivated)\s/m);
    expect(mail.text).not.toContain('whole roster');
    expect(mail.text).toContain('the file lists every group membership');
    expect(mail.html).toContain('Memberships removed');
  });

  it('with errors', () => {
    const mail = groups({
      status: 'completed_with_errors',
      counts: { ...emptyCounts(), rows: 3, created: 2, errors: 1 },
      errors: [{ line: 3, column: 'username', value: 'ghost', message: 'no such user' }],
    });
    expect(mail.subject).toBe('[rosterd] nyc-usd: groups.csv imported with 1 error — 2 memberships added, 0 memberships removed');
  });
});

describe('failed imports', () => {
  const attemptsMessage =
    'rosterd could not finish importing this file after 3 attempts (last: review: simulated storage failure at 0x7f). ' +
    'Nothing was changed. Upload the file again, or ask your rosterd operator to look at the logs.';

  it('after repeated attempts: no internal error, no repetition, no blame on the file', () => {
    const mail = renderReport(
      input({
        status: 'failed',
        counts: emptyCounts(),
        message: attemptsMessage,
        attempts: 3,
        lastAttemptError: 'review: simulated storage failure at 0x7f',
      }),
    );
    const all = `${mail.subject}\n${mail.text}\n${mail.html}`;
    expect(all).not.toContain('simulated storage failure');
    expect(count(mail.text, 'Nothing was changed')).toBe(1);
    expect(count(mail.html, 'Nothing was changed')).toBe(1);
    expect(mail.text).toContain('after 3 attempts');
    expect(mail.text).not.toContain('Correct the file');
    expect(mail.text).toMatch(/What to do next\n {2}Upload the file again.*rosterd operator/);
  });

  it('a file-level failure that already says nothing was changed does not say it twice', () => {
    const mail = renderReport(
      input({
        status: 'failed',
        counts: emptyCounts(),
        message:
          'The received copy of this file was damaged on the server after it arrived (its SHA-256 no longer matches). ' +
          'Nothing was changed. Please upload the file again.',
      }),
    );
    expect(count(mail.text, 'Nothing was changed')).toBe(1);
    expect(mail.text).toContain('users.csv was not imported. The received copy of this file was damaged');
  });

  it('a file-level failure after an attempt that crashed still shows the file message', () => {
    const mail = renderReport(
      input({
        status: 'failed',
        counts: emptyCounts(),
        message: 'The file has no username column.',
        attempts: 1,
        lastAttemptError: 'connection terminated unexpectedly',
      }),
    );
    expect(mail.text).toContain('users.csv was not imported. The file has no username column. Nothing was changed.');
    expect(mail.text).not.toContain('connection terminated');
  });

  it('joins the message as its own sentence, not after a colon', () => {
    const mail = renderReport(
      input({ status: 'failed', counts: emptyCounts(), message: 'The file is separated by semicolons, not by commas.' }),
    );
    expect(mail.text).toContain('users.csv was not imported. The file is separated by semicolons, not by commas. Nothing was changed.');
    expect(mail.text).not.toContain('imported: The');
  });

  it('titles its counts as not applied: a file refused whole may have rows and errors counted, and no change', () => {
    const mail = renderReport(
      input({
        status: 'failed',
        counts: { ...emptyCounts(), rows: 3, errors: 3 },
        message: 'None of the 3 rows of users.csv could be used, so nothing was changed.',
      }),
    );
    expect(mail.text).toMatch(/^Counts \(the file was not applied\)\n {2}Rows read {4}3$/m);
    expect(mail.html).toContain('Counts (the file was not applied)');
  });
});

describe('what to do next', () => {
  const oneError = [{ line: 3, column: 'email', value: 'x', message: 'not valid' }];

  it('for a delta file: send only the corrected rows', () => {
    const mail = renderReport(
      input({
        status: 'completed_with_errors',
        mode: 'delta',
        counts: { ...emptyCounts(), rows: 3, created: 2, errors: 1 },
        errors: oneError,
      }),
    );
    expect(mail.text).toContain('only the corrected rows');
    expect(mail.text).not.toContain('rows that are already right are left as they are');
  });

  it('for a delta file where every row failed: nothing was applied, so the whole file goes again', () => {
    const mail = renderReport(
      input({ status: 'completed_with_errors', mode: 'delta', counts: { ...emptyCounts(), rows: 1, errors: 1 }, errors: oneError }),
    );
    expect(mail.text).toContain('No row could be applied: every row has an error.');
    expect(mail.text).not.toContain('the other rows were applied');
  });

  it('for a full sync: upload the whole file again', () => {
    const mail = renderReport(
      input({ status: 'completed_with_errors', counts: { ...emptyCounts(), rows: 3, created: 2, errors: 1 }, errors: oneError }),
    );
    expect(mail.text).toContain('rows that are already right are left as they are');
  });

  it('not "Nothing to do." when a warning asks for something', () => {
    const encoding = renderReport(
      input({ encoding: 'windows-1252', counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 }, warnings: [ENCODING_WARNING] }),
    );
    expect(encoding.text).not.toContain('Nothing to do');
    expect(encoding.text).toContain('UTF-8');
    const passwords = renderReport(input({ counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 }, warnings: [trimmed(4)] }));
    expect(passwords.text).not.toContain('Nothing to do');
    expect(passwords.html).not.toContain('Nothing to do');
    expect(passwords.text).toContain('without the spaces');
  });

  it('a UTF-16 file (read whole and exactly) is named as such, with nothing to do about it', () => {
    const mail = renderReport(input({ encoding: 'utf-16le', counts: { ...emptyCounts(), rows: 5, created: 5 } }));
    expect(mail.text).toMatch(/Encoding: +UTF-16 \(little-endian\), read as such/);
    expect(mail.text).not.toContain('Windows-1252');
    expect(mail.text).toContain('Nothing to do.');
  });

  it('names an ASCII export wrote with question marks: how to export the file, said once for them all', () => {
    const lost = (line: number, column: string, value: string): ImportIssue => ({
      line,
      column,
      value,
      code: 'LETTERS_LOST',
      message: 'The name has a question mark where a letter should be.',
    });
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 2 },
        warnings: [lost(2, 'first name', 'Jos?'), lost(3, 'last name', 'Mu?oz')],
      }),
    );
    const text = mail.text.replace(/\s+/g, ' ');
    expect(text).toContain('Some names have a question mark where an accented letter should be (Mu?oz for Muñoz)');
    expect(text.match(/Export-Csv -Encoding UTF8/g)).toHaveLength(1);
    expect(text).not.toContain('Check the');
  });

  it('update rows that cleared values, and new users with a taken SIS ID, each get what to do once', () => {
    const warning = (line: number, code: WarningCode): ImportIssue => ({
      line,
      column: 'username',
      value: 'x',
      code,
      message: 'm',
    });
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 3 },
        warnings: [warning(2, 'UPDATE_CLEARS'), warning(3, 'UPDATE_CLEARS'), warning(4, 'NEW_USER_SIS_ID_TAKEN')],
      }),
    );
    const text = mail.text.replace(/\s+/g, ' ');
    expect(text.match(/send whole rows instead, or leave out the columns it does not fill/g)).toHaveLength(1);
    expect(text).toContain('usually a username your system changed');
    expect(text).not.toContain('Check the');
  });

  it('values Excel changed: how to keep Excel from doing it; a new user without a password is not a password with spaces', () => {
    const excel = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 2 },
        warnings: [
          {
            line: 3,
            column: 'password',
            value: '******',
            code: 'EXCEL_CHANGED_PASSWORD',
            message: 'Excel changed this password: the cell holds only # signs.',
          },
          {
            line: 4,
            column: 'sis id',
            value: '1.23457E+17',
            code: 'EXCEL_CHANGED_SIS_ID',
            message: 'Excel changed this SIS ID: the cell holds a number.',
          },
        ],
      }),
    );
    expect(excel.text).toContain(
      'Excel changed some values (see the warnings); they were not used, and those users keep their current ones. Format those columns as Text in Excel ' +
        'before typing or pasting the values, or export the file from your SIS directly, without opening and saving it in Excel.',
    );
    expect(excel.text).not.toContain('without the spaces');
    expect(excel.text).not.toContain('Check the');
    const unset = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 },
        warnings: [
          {
            line: 6,
            column: 'password',
            code: 'NEW_USER_WITHOUT_PASSWORD',
            message: 'New user "nopass01" has no password, so it cannot sign in with one until a password is set.',
          },
        ],
      }),
    );
    expect(unset.text).not.toContain('without the spaces');
    expect(unset.text).toContain('Check the warnings above.');
  });

  it("the reader's messages and the report's advice keep Excel from changing values in one wording", async () => {
    const { summary } = await readUsersText('username,school,sis id\nbob1,60000100001,1.23457E+17\n');
    const mail = renderReport(
      input({
        status: 'completed_with_errors',
        counts: { ...emptyCounts(), rows: 1, errors: summary.errorCount, warnings: summary.warningCount },
        errors: summary.errors,
        warnings: summary.warnings,
      }),
    );
    const advice =
      'as Text in Excel before typing or pasting the values, or export the file from your SIS directly, without opening and saving it in Excel';
    expect(summary.errors.map((e) => e.message)).toEqual([expect.stringMatching(/without its leading zero, which a spreadsheet drops: /)]);
    expect(summary.errors[0]?.message).toContain(`: format the column ${advice}`);
    expect(summary.warnings[0]?.message).toContain(`. Format the column ${advice}`);
    expect(mail.text.replace(/\s+/g, ' ')).toContain(
      `they were not used, and those users keep their current ones. Format those columns ${advice}.`,
    );
  });

  it('"Nothing to do." when there is nothing', () => {
    expect(renderReport(input()).text).toContain('Nothing to do.');
  });
});

describe('approvals and numbers', () => {
  it('an import applied after approval says who approved it, and when', () => {
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 1, deactivated: 57 },
        approvedBy: 'ops@nyc.example',
        approvedAt: '2026-11-22T08:00:00-05:00',
      }),
    );
    expect(mail.text).toContain('approved by ops@nyc.example');
    expect(mail.text).toContain('Sunday, November 22, 2026, 8:00:00 AM EST');
    expect(mail.html).toContain('approved by ops@nyc.example');
  });

  it('an import an operator ran at once says so, without naming the operator; a scheduled one says nothing of it', () => {
    const mail = renderReport(input({ counts: { ...emptyCounts(), rows: 1, created: 1 }, requestedBy: 'root@ops-host' }));
    expect(mail.text).toMatch(/Run:\s+at once, at your rosterd operator's request, not by the nightly schedule/);
    expect(mail.html).toContain('at once, at your rosterd operator&#39;s request');
    expect(mail.text + mail.html).not.toContain('root@ops-host');
    expect(renderReport(input({ counts: { ...emptyCounts(), rows: 1, created: 1 } })).text).not.toContain('at once');
  });

  it('formats every number with thousands separators', () => {
    const mail = renderReport(
      input({ counts: { ...emptyCounts(), rows: 3005, created: 3000, updated: 1234, deactivated: 12_000, reactivated: 1500 } }),
    );
    expect(mail.subject).toBe(
      '[rosterd] nyc-usd: users.csv imported — 3,000 created, 1,234 updated, 12,000 deactivated, 1,500 reactivated',
    );
    expect(mail.text).toContain('3,000 created, 1,234 updated, 12,000 deactivated, 1,500 reactivated.');
    expect(mail.text).toMatch(/Rows read\s+3,005/);
  });

  it('the held reason from the import uses the same format', () => {
    const mail = renderReport(
      input({
        status: 'held',
        counts: { ...emptyCounts(), rows: 30_000, deactivated: 10_000 },
        message:
          "Held: this file would deactivate 10000 of 40000 active users (25%), more than the district's limit of 1000 deactivations. " +
          'Nothing was applied. If the file is right, approve it.',
      }),
    );
    expect(mail.text).toContain(
      "would deactivate 10,000 of 40,000 active users (25%), more than the district's limit of 1,000 deactivations.",
    );
  });
});

describe('advice for columns that were not read', () => {
  it('says how to have them read next time, naming the columns rosterd knows', () => {
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 },
        warnings: [
          {
            line: 1,
            column: 'Grad Year',
            code: 'UNKNOWN_COLUMN',
            message:
              "Column 'Grad Year' is not a known column; its values were ignored. If it holds the graduation year, rename it 'graduation year'",
          },
        ],
      }),
    );
    expect(mail.text).toContain(
      'Columns with names rosterd does not know were ignored (see the warnings). If one of them was meant to be read, rename it as its warning ' +
        'says, or to one of username, password, email, first name, last name, school, graduation year, access type, role, sis id, status, action, ' +
        'and upload the file again: its values are read then.',
    );
    expect(mail.text).not.toContain('Check the warnings above');
  });

  it('columns without a name have nothing to rename', () => {
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 },
        warnings: [
          {
            line: 1,
            column: '',
            code: 'UNNAMED_COLUMNS',
            message: '16,000 columns have no name in the header row (the first is column 10); their values were ignored',
          },
        ],
      }),
    );
    expect(mail.text).not.toContain('Columns with names rosterd does not know');
    expect(mail.text).toContain('Check the warnings above.');
  });

  it("groups.csv names its own columns; an unread column's warning needs no advice of its own", () => {
    const groups = renderReport(
      input({ file: 'groups.csv', counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 }, warnings: [COLUMN_WARNING] }),
    );
    expect(groups.text).toContain('or to one of username, owner, group, and upload');
    const status = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 },
        warnings: [{ line: 1, column: 'Active', code: 'UNREAD_COLUMN', message: "Column 'Active' is not read" }],
      }),
    );
    expect(status.text).not.toContain('Columns with names rosterd does not know');
    expect(status.text).toContain('Check the warnings above.');
  });
});

describe('advice follows what a warning is about, not how it is worded', () => {
  const reworded: ImportIssue[] = [
    { line: 0, column: '', code: 'ENCODING_MIXED', message: 'Some lines were in another encoding.' },
    { line: 1, column: 'Grad Yr', code: 'UNKNOWN_COLUMN', message: 'Unknown heading' },
    { line: 2, column: 'password', value: '******', code: 'PASSWORD_TRIMMED', message: 'Blanks around the password were dropped' },
    { line: 3, column: 'sis id', value: '1E+15', code: 'EXCEL_CHANGED_SIS_ID', message: 'This ID looks mangled' },
  ];
  it('a reworded message keeps its advice', () => {
    const mail = renderReport(input({ counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 4 }, warnings: reworded }));
    const next = mail.text.slice(mail.text.indexOf('What to do next'));
    expect(next).toContain('Save the file as UTF-8');
    expect(next).toContain('Columns with names rosterd does not know were ignored');
    expect(next).toContain('tell those users to sign in without the spaces');
    expect(next).toContain('Excel changed some values');
    expect(next).not.toContain('Check the');
  });
  it('a message worded like another warning does not take its advice', () => {
    // The database's warning about a new user's password, worded to look like the reader's.
    const mail = renderReport(
      input({
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 },
        warnings: [
          {
            line: 4,
            column: 'password',
            code: 'NEW_USER_WITHOUT_PASSWORD',
            message: 'The password starts or ends with spaces? No: Excel changed this user, who has no password',
          },
        ],
      }),
    );
    expect(mail.text).not.toContain('without the spaces');
    expect(mail.text).not.toContain('Excel changed some values');
    expect(mail.text).toContain('Check the warnings above.');
  });
});

describe('uploads replaced beyond the five listed', () => {
  const replaced = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      id: `r${i}`,
      receivedAt: new Date(Date.UTC(2026, 10, 21, 20, i)),
      bytes: 100 + i,
      sha256: String(i).repeat(64).slice(0, 64),
      wasHeld: false,
    }));

  it('counts the one left over as one, and many as many', () => {
    expect(renderReport(input({}, { replaced: replaced(6) })).text).toMatch(/Replaces: +1 earlier one, not imported/);
    expect(renderReport(input({}, { replaced: replaced(8) })).text).toMatch(/Replaces: +3 earlier ones, not imported/);
  });
});
