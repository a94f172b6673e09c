import type { ImportIssue } from '../import/types.js';
import { formatCount, type IssueList, type ReportModel } from './model.js';

/** The plain-text body. */
export function renderText(model: ReportModel): string {
  const out: string[] = [model.headline, ''];
  const width = Math.max(...model.facts.map(([label]) => label.length)) + 2;
  for (const [label, value] of model.facts) out.push(`${`${label}:`.padEnd(width)}${value}`);

  out.push('', model.countsTitle);
  const countWidth = Math.max(...model.counts.map(([label]) => label.length)) + 2;
  for (const [label, n] of model.counts) out.push(`  ${label.padEnd(countWidth)}${formatCount(n)}`);

  list(out, model.errors, (e) => {
    const where = e.line > 0 ? lineOf(e, true) : 'file';
    const value = e.value !== undefined && e.value !== '' ? ` "${e.value}"` : '';
    return `${where}, ${e.column || '-'}${value}: ${e.message}`;
  });
  list(out, model.warnings, (w) => `${w.line > 0 ? `${lineOf(w, false)}, ` : ''}${w.column ? `${w.column}: ` : ''}${w.message}`);

  out.push('', 'What to do next');
  for (const paragraph of model.next) out.push(`  ${paragraph}`);
  out.push('', '-- ', 'rosterd, the nightly roster import. Reply to your rosterd operator, not to this address.', '');
  return out.join('\n');
}

/**
 * "line 7 (jdoe)": the row's username beside its line, as the administrator looks the row up in the
 * SIS; not repeated when the value shown after it is the username itself.
 */
function lineOf(issue: ImportIssue, valueShown: boolean): string {
  const { username } = issue;
  const said = username === undefined || (valueShown && issue.column === 'username' && issue.value === username);
  return `line ${issue.line}${said ? '' : ` (${username})`}`;
}

function list(out: string[], issues: IssueList | null, line: (issue: ImportIssue) => string): void {
  if (!issues) return;
  out.push('', issues.title);
  for (const issue of issues.shown) out.push(`  ${line(issue)}`);
  if (issues.note) out.push(`  ${issues.note}`);
}
