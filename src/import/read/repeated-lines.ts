/**
 * Which lines of a file repeat an earlier one, in bounded memory: each line is kept as a 64-bit
 * hash and its line number (12 bytes in an open-addressing table), not as its text, so a
 * 1,000,000-line groups.csv costs 24 MB rather than the hundreds a Set of strings would. Two
 * different lines share a hash with a probability of about n²/2^65 (3e-8 for a million lines); the
 * answer is only ever used for a warning. Past MAX_LINES distinct lines, new ones are not kept
 * (a repeat of one of the first MAX_LINES is still found).
 */

const MAX_LINES = 1 << 20;

export class RepeatedLines {
  private capacity = 1 << 10;
  private size = 0;
  private hashA = new Uint32Array(this.capacity);
  private hashB = new Uint32Array(this.capacity);
  /** line number of the slot's first occurrence; 0 = empty slot (a file's lines start at 1) */
  private lines = new Uint32Array(this.capacity);

  /** The line that `parts` first appeared on, or undefined (and it is remembered as `line`'s). */
  seen(parts: readonly string[], line: number): number | undefined {
    let a = 0x811c9dc5;
    let b = 0x9747b28c;
    for (const part of parts) {
      for (let i = 0; i < part.length; i++) {
        const c = part.charCodeAt(i);
        a = Math.imul(a ^ c, 0x01000193);
        b = Math.imul(b ^ c, 0x5bd1e995);
        b ^= b >>> 15;
      }
      // A separator no cell holds, so that ("ab", "c") and ("a", "bc") differ.
      a = Math.imul(a ^ 0xffff, 0x01000193);
      b = Math.imul(b ^ 0xffff, 0x5bd1e995);
      b ^= b >>> 15;
    }
    a >>>= 0;
    b >>>= 0;
    const mask = this.capacity - 1;
    let slot = (a ^ Math.imul(b, 0x9e3779b1)) & mask;
    while (this.lines[slot] !== 0) {
      if (this.hashA[slot] === a && this.hashB[slot] === b) return this.lines[slot];
      slot = (slot + 1) & mask;
    }
    if (this.size >= MAX_LINES) return undefined;
    this.hashA[slot] = a;
    this.hashB[slot] = b;
    this.lines[slot] = line;
    if (++this.size * 2 > this.capacity) this.grow();
    return undefined;
  }

  private grow(): void {
    const [hashA, hashB, lines] = [this.hashA, this.hashB, this.lines];
    this.capacity *= 2;
    this.hashA = new Uint32Array(this.capacity);
    this.hashB = new Uint32Array(this.capacity);
    this.lines = new Uint32Array(this.capacity);
    const mask = this.capacity - 1;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as number;
      if (line === 0) continue;
      const a = hashA[i] as number;
      const b = hashB[i] as number;
      let slot = (a ^ Math.imul(b, 0x9e3779b1)) & mask;
      while (this.lines[slot] !== 0) slot = (slot + 1) & mask;
      this.hashA[slot] = a;
      this.hashB[slot] = b;
      this.lines[slot] = line;
    }
  }
}
