/**
 * How the HTML body lays out what comes from the file: read on a phone, in a narrow window.
 */
import { describe, expect, it } from 'vitest';
import { emptyCounts, type ImportIssue } from '../../src/import/types.js';
import { renderReport } from '../../src/report/render.js';
import type { ReportImport, ReportInput } from '../../src/report/types.js';
import { reportInput } from '../support/report-input.js';

function input(over: Partial<ReportImport> = {}): ReportInput {
  return reportInput({ status: 'completed_with_errors', counts: { ...emptyCounts(), rows: 5, created: 3, errors: 2 }, ...over });
}

/** The style of the cell whose content is exactly `content`. */
function cellStyle(html: string, content: string): string | undefined {
  const cells = [...html.matchAll(/<t[dh] style="([^"]*)"[^>]*>([^<]*)<\/t[dh]>/g)];
  return cells.find((m) => m[2] === content)?.[1];
}

const BREAKS = /overflow-wrap:anywhere/;

describe('the HTML body in a narrow window', () => {
  // One long word from the file (a name pasted twice, an ID run together) used to set the width of
  // the whole error table: wider than a phone's screen, even than a 900-pixel window, with the
  // Message column, the one that says what to fix, pushed out of sight and squeezed to a word a line.
  const long = 'A'.repeat(200);
  const school = `S${'x'.repeat(150)}`;
  const errors: ImportIssue[] = [
    { line: 2, column: 'first name', value: long, username: 'ann.lee', message: 'First name must be at most 64 characters' },
    {
      line: 3,
      column: 'school',
      value: school,
      username: `u${'n'.repeat(120)}`,
      message: `School '${school}' does not match any school of this district (by NCES ID, state ID or name)`,
    },
  ];
  const { html } = renderReport(input({ errors }));

  it('lets a long value, username or message break anywhere, so it cannot widen the table', () => {
    expect(cellStyle(html, `${'A'.repeat(79)}…`)).toMatch(BREAKS);
    expect(cellStyle(html, `u${'n'.repeat(78)}…`)).toMatch(BREAKS);
    expect(cellStyle(html, 'First name must be at most 64 characters')).toMatch(BREAKS);
    expect(
      cellStyle(html, `School &#39;${school.slice(0, 79)}…&#39; does not match any school of this district (by NCES ID, state ID or name)`),
    ).toMatch(BREAKS);
  });

  it('so do the facts: a SHA-256 is one word of 64 characters', () => {
    expect(cellStyle(html, 'a'.repeat(64))).toMatch(BREAKS);
  });

  it('but not the labels, line numbers and column names, which would break needlessly ("Distri" "ct")', () => {
    for (const label of ['District', 'SHA-256', 'Line', 'Column', '2', 'first name', 'school']) {
      expect(cellStyle(html, label), label).toBeDefined();
      expect(cellStyle(html, label), label).not.toMatch(BREAKS);
    }
  });

  it('paragraphs and warnings break a long word too, where it would overflow (outside a table, only there)', () => {
    const warned = renderReport(
      input({
        status: 'succeeded',
        counts: { ...emptyCounts(), rows: 5, created: 5, warnings: 1 },
        warnings: [{ line: 1, column: long, code: 'UNKNOWN_COLUMN', message: `Column '${long}' is not a known column` }],
      }),
    ).html;
    expect(warned).toMatch(/<ul style="[^"]*overflow-wrap:anywhere/);
    expect(warned).toMatch(/<p style="[^"]*overflow-wrap:anywhere[^"]*"><strong>/);
  });
});
