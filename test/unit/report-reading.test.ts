/**
 * The report as the district's administrator reads it: what they see of long values, and how the
 * body says where the rest of the errors are.
 */
import { describe, expect, it } from 'vitest';
import { emptyCounts, type ImportIssue } from '../../src/import/types.js';
import { renderReport } from '../../src/report/render.js';
import type { ReportImport, ReportInput } from '../../src/report/types.js';
import { reportInput } from '../support/report-input.js';

function input(over: Partial<ReportImport> = {}): ReportInput {
  return reportInput({ status: 'completed_with_errors', counts: { ...emptyCounts(), rows: 5, created: 4, errors: 1 }, ...over });
}

describe('a message that quotes a long value', () => {
  // The school rule quotes the whole cell (up to 10,000 characters): the body showed the value
  // shortened in its own column and then all of it again in the message, a screenful of one word
  // before the next error.
  const school = `S${'x'.repeat(1999)}`;
  const error: ImportIssue = {
    line: 4,
    column: 'school',
    value: `${school.slice(0, 300)}…`,
    username: 'ann.lee',
    message: `School '${school}' does not match any school of this district (by NCES ID, state ID or name)`,
  };
  const mail = renderReport(input({ errors: [error] }));

  it('is shortened in the body as the value is, and keeps what it says after the value', () => {
    const line = mail.text.split('\n').find((l) => l.includes('line 4'));
    expect(line).toBeDefined();
    expect(line?.length).toBeLessThan(300);
    expect(line).toContain(`: School '${school.slice(0, 79)}…' does not match any school of this district (by NCES ID, state ID or name)`);
    expect(mail.html).toContain(`School &#39;${school.slice(0, 79)}…&#39; does not match any school`);
    expect(mail.html).not.toContain(school.slice(0, 100));
  });

  it('is whole in the attachment', () => {
    expect(mail.attachments[0]?.content).toContain(`School '${school}' does not match`);
  });

  it('a message of ordinary words is left as it is', () => {
    const message =
      'This username appears more than once in the file (lines 2, 49, 73, 101, 230; usernames are compared ignoring case). List each user once.';
    const text = renderReport(input({ errors: [{ line: 2, column: 'username', value: 'ann.lee', username: 'ann.lee', message }] })).text;
    expect(text).toContain(message);
  });
});

describe('what to do next, when the attachment holds only the first errors', () => {
  const errors = Array.from({ length: 50_000 }, (_, i) => ({
    line: i + 2,
    column: 'graduation year',
    value: '1850',
    username: `gen${i}`,
    message: 'Graduation year must be between 1900 and 2046',
  }));
  const mail = renderReport(
    input({ counts: { ...emptyCounts(), rows: 60_044, unchanged: 44, errors: 60_000 }, errors, issuesTruncated: true }),
  );
  const next = mail.text.slice(mail.text.indexOf('What to do next'));

  it('says how many the attachment has, without repeating in brackets within brackets why (the note above the advice says it)', () => {
    expect(mail.text).toMatch(/users-errors\.csv \(attached\) has the first [\d,]+ of 60,000 errors \(an email cannot hold more; /);
    expect(next).toMatch(
      /\(the first ones are listed above; users-errors\.csv has the first [\d,]+ of 60,000\) and upload the file again; rows that are already right/,
    );
    expect(next).not.toContain('an email cannot hold more');
    expect(next).not.toContain('))');
  });

  it('so does the HTML body', () => {
    expect(mail.html).toMatch(/users-errors\.csv has the first [\d,]+ of 60,000\) and upload the file again/);
  });
});

describe('an issue about the whole file in the attachment', () => {
  it('is on line "file", as the body and `rosterd validate` say, not on a line 0 that no spreadsheet has', () => {
    const message = 'The header row has no username column, which users.csv requires.';
    const failed = renderReport(
      input({
        status: 'failed',
        counts: { ...emptyCounts(), errors: 1, warnings: 1 },
        message,
        errors: [{ line: 0, column: '', message }],
        warnings: [
          { line: 0, column: '', code: 'ENCODING_WINDOWS_1252', message: 'The file is not valid UTF-8' },
          ...Array.from({ length: 30 }, (_, i) => ({ line: i + 2, column: 'password', value: '******', message: 'trimmed' })),
        ],
      }),
    );
    const errors = failed.attachments.find((a) => a.filename === 'users-errors.csv')?.content;
    expect(errors?.split('\r\n')[1]).toBe(`file,,,,"${message}"`);
    const warnings = failed.attachments.find((a) => a.filename === 'users-warnings.csv')?.content;
    expect(warnings?.split('\r\n')[1]).toBe('file,,,,The file is not valid UTF-8');
    expect(warnings?.split('\r\n')[2]).toBe('2,,password,******,trimmed');
    expect(failed.text).toContain(`  file, -: ${message}`);
  });
});
