import type { ReportModel } from './model.js';

/** The plain-text body. */
export function renderText(model: ReportModel): string {
  const out: string[] = [model.headline, ''];
  const width = Math.max(...model.facts.map(([label]) => label.length)) + 2;
  for (const [label, value] of model.facts) out.push(`${`${label}:`.padEnd(width)}${value}`);

  out.push('', 'Counts');
  const countWidth = Math.max(...model.counts.map(([label]) => label.length)) + 2;
  for (const [label, n] of model.counts) out.push(`  ${label.padEnd(countWidth)}${n.toLocaleString('en-US')}`);

  if (model.errors.length > 0) {
    const shown = model.errors.length < model.totalErrors ? `first ${model.errors.length} of ${model.totalErrors}` : `${model.totalErrors}`;
    out.push('', `Errors (${shown})`);
    for (const e of model.errors) {
      const where = e.line > 0 ? `line ${e.line}` : 'file';
      const value = e.value !== undefined && e.value !== '' ? ` "${e.value}"` : '';
      out.push(`  ${where}, ${e.column || '-'}${value}: ${e.message}`);
    }
    if (model.errorsAttachment) out.push(`  All errors: ${model.errorsAttachment} (attached).`);
  }
  if (model.warnings.length > 0) {
    out.push('', 'Warnings');
    for (const w of model.warnings) out.push(`  ${w.line > 0 ? `line ${w.line}, ` : ''}${w.column ? `${w.column}: ` : ''}${w.message}`);
  }

  out.push('', 'What to do next');
  for (const paragraph of model.next) out.push(`  ${paragraph}`);
  out.push('', '-- ', 'rosterd, the nightly roster import. Reply to your rosterd operator, not to this address.', '');
  return out.join('\n');
}
