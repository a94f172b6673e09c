/**
 * A delta file whose action column goes by another name (`Operation`, `Change Type`, a typo like
 * `Actoin`) would be read as a full sync: its `delete` rows would keep their users, and every user
 * it does not list would be deactivated, held back only by the safety hold. A column rosterd does
 * not know whose values are all add, update or delete is such a column, so the file fails whole,
 * saying which column to rename.
 */
import { FileRejectedError } from '../types.js';
import type { HeaderMatch } from './headers.js';

const ACTIONS = new Set(['add', 'update', 'delete']);

export class ActionLookalike {
  /** unknown columns still in the running: position, name, lines holding an action */
  private readonly candidates: Array<{ at: number; name: string; actions: number }> = [];
  private rows = 0;
  private readonly headerLine: number;

  /** Only for a file without an action column: with one, the file is a delta as it should be. */
  constructor(header: HeaderMatch<string>) {
    this.headerLine = header.line;
    if (header.index.has('action')) return;
    const known = new Set(header.index.values());
    header.names.forEach((name, at) => {
      if (!known.has(at) && name.trim() !== '') this.candidates.push({ at, name: name.trim(), actions: 0 });
    });
  }

  /** A row with as many values as the header; cheap once no column is left, as in nearly every file. */
  see(fields: readonly string[]): void {
    if (this.candidates.length === 0) return;
    this.rows++;
    for (let k = this.candidates.length - 1; k >= 0; k--) {
      const candidate = this.candidates[k] as (typeof this.candidates)[number];
      const value = (fields[candidate.at] ?? '').trim().toLowerCase();
      if (value === '') continue;
      if (ACTIONS.has(value)) candidate.actions++;
      else this.candidates.splice(k, 1);
    }
  }

  /**
   * After the last row. Actions on at least half of the lines: a column left blank but for one
   * stray "update" is a note, not a delta file's action column.
   */
  check(): void {
    const column = this.candidates.find((c) => c.actions > 0 && c.actions * 2 >= this.rows);
    if (column === undefined) return;
    throw new FileRejectedError(
      `Column '${column.name}' holds add, update or delete on every line that has a value, as the action column of a file of ` +
        "changes does, but it is not named 'action'. So the file would be read as the whole roster, and every user it does " +
        "not list would be deactivated. Nothing was changed. If the file lists changes, rename the column 'action'; if it " +
        'is the whole roster, remove the column. Then upload the file again.',
      this.headerLine,
    );
  }
}
