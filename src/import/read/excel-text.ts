/**
 * Cells written as Excel text formulas: `="00123"`.
 *
 * SIS exports meant for Excel write IDs, grades and years this way so that Excel keeps their
 * leading zeros (a plain 00123 becomes the number 123). Excel shows such a cell as 00123, and that
 * is what the administrator means: read as written, an SIS ID would be stored as `="00123"` and a
 * username or graduation year refused. Only this one form is unwrapped, the string literal alone
 * (`""` inside stands for one `"`, as in Excel); any other formula is left as written.
 */
const TEXT_FORMULA = /^[ \t]*="((?:[^"]|"")*)"[ \t]*$/s;

/** Replaces, in place, each cell of `fields` that is an Excel text formula with the text it shows. */
export function unwrapExcelText(fields: string[]): void {
  for (let i = 0; i < fields.length; i++) {
    const cell = fields[i] as string;
    // Nearly every cell is rejected by its first character, at no cost to a large file.
    const first = cell.charCodeAt(0);
    if (first !== 61 /* = */ && first !== 32 /* space */ && first !== 9 /* tab */) continue;
    const text = TEXT_FORMULA.exec(cell)?.[1];
    if (text !== undefined) fields[i] = text.replace(/""/g, '"');
  }
}
