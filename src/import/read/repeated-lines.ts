/**
 * Which lines of a file repeat an earlier one, in bounded memory: each line is kept as a 64-bit
 * hash and its line number (hashed-keys.ts), not as its text, so a 1,000,000-line groups.csv costs
 * tens of MB rather than the hundreds a Set of strings would; the answer is only ever used for a
 * warning. Past MAX_LINES distinct lines, new ones are not kept (a repeat of one of the first
 * MAX_LINES is still found).
 */
import { HashedKeys } from '../hashed-keys.js';

const MAX_LINES = 1 << 20;

export class RepeatedLines {
  private readonly lines = new HashedKeys(true);

  /** The line that `parts` first appeared on, or undefined (and it is remembered as `line`'s). */
  seen(parts: readonly string[], line: number): number | undefined {
    return this.lines.seenOrAdd(parts, line, this.lines.size < MAX_LINES);
  }
}
