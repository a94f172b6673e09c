/**
 * Keys (a string, or a tuple of strings) remembered by a 64-bit hash rather than by their text, in
 * an open-addressed table of typed arrays: 16 bytes a key at most (24 with a number), where a Set
 * of strings would hold every key, so a million usernames or groups.csv lines cost tens of
 * megabytes, not hundreds.
 * Two different keys share a hash with a probability of about n²/2^65 (3e-8 for a million keys):
 * good enough for "maybe a duplicate" (fold-set.ts) and for a warning (repeated-lines.ts), never
 * for a decision that loses data.
 *
 * A key may keep a number given when it was first added (a line number).
 */
export class HashedKeys {
  private capacity = 1 << 10;
  private count = 0;
  /** Per slot, side by side so that a probe reads one cache line: the hash's two halves (the first never 0; 0 = empty slot). */
  private slots = new Uint32Array(this.capacity * 2);
  /** The number kept with each slot's key, when the caller keeps numbers (apart: a set need not pay for them). */
  private values: Uint32Array | undefined;

  /** `withValues`: keep a number with each key (seenOrAdd's `value`); without, every key keeps 1. */
  constructor(withValues = false) {
    if (withValues) this.values = new Uint32Array(this.capacity);
  }

  /** Keys remembered. */
  get size(): number {
    return this.count;
  }

  /**
   * The number kept with `key` if it was added before; else undefined, and `key` is remembered with
   * `value`, unless `remember` is false.
   */
  seenOrAdd(key: string | readonly string[], value = 1, remember = true): number | undefined {
    let a = 0x811c9dc5;
    let b = 0x9747b28c;
    const parts = typeof key === 'string' ? 1 : key.length;
    for (let k = 0; k < parts; k++) {
      const part = typeof key === 'string' ? key : (key[k] as string);
      for (let i = 0; i < part.length; i++) {
        const c = part.charCodeAt(i);
        a = Math.imul(a ^ c, 0x01000193);
        b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
      }
      // A separator no string holds, so that ("ab", "c") and ("a", "bc") differ.
      a = Math.imul(a ^ 0xffff, 0x01000193);
      b = Math.imul(b ^ 0xffff, 0x5bd1e995) ^ (b >>> 15);
    }
    a = (a | 1) >>> 0;
    b >>>= 0;
    const slots = this.slots;
    const mask = this.capacity - 1;
    let slot = (a ^ b) & mask;
    while (slots[2 * slot] !== 0) {
      if (slots[2 * slot] === a && slots[2 * slot + 1] === b) return this.values?.[slot] ?? 1;
      slot = (slot + 1) & mask;
    }
    if (!remember) return undefined;
    slots[2 * slot] = a;
    slots[2 * slot + 1] = b;
    if (this.values) this.values[slot] = value;
    if (++this.count * 2 > this.capacity) this.grow();
    return undefined;
  }

  private grow(): void {
    const [old, oldValues] = [this.slots, this.values];
    this.capacity *= 2;
    this.slots = new Uint32Array(this.capacity * 2);
    if (oldValues) this.values = new Uint32Array(this.capacity);
    const mask = this.capacity - 1;
    for (let i = 0; i < old.length / 2; i++) {
      const a = old[2 * i] as number;
      if (a === 0) continue;
      const b = old[2 * i + 1] as number;
      let slot = (a ^ b) & mask;
      while (this.slots[2 * slot] !== 0) slot = (slot + 1) & mask;
      this.slots[2 * slot] = a;
      this.slots[2 * slot + 1] = b;
      if (this.values && oldValues) this.values[slot] = oldValues[i] as number;
    }
  }
}
