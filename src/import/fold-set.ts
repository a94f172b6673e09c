/**
 * A set of usernames that answers "might this one equal an earlier one, ignoring case?" without
 * asking Postgres. A tenant's first import copies rows straight into users (apply-users.ts,
 * copyFresh); letting the users unique index find a duplicate there would make Postgres write the
 * username into its server log ("DETAIL: Key (tenant_id, lower(username))=(4, alice01) already
 * exists"), and a roster value never goes in a log. So the copy stops itself, before the index
 * sees the second row, whenever this set says "maybe", and the file takes the ordinary path.
 *
 * "Maybe" must be said for every pair Postgres's lower() folds together, whatever the database's
 * LC_CTYPE or provider; saying it for more pairs costs only speed. Hence the fold: lower case,
 * with compatibility forms and accents taken away (İ and i, Å and å, K and k, José and Jose all
 * agree). It keeps a 64-bit hash of each folded name in an open-addressed table: 16 bytes a name
 * at most, where a Set of strings would hold every name; a hash collision is one more "maybe".
 */
export class UsernameFoldSet {
  private slots = new Uint32Array(2 * 1024);
  private size = 0;

  /** Adds `username`; true if an earlier one might be the same user. */
  addAndCheck(username: string): boolean {
    const folded = fold(username);
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193;
    for (let i = 0; i < folded.length; i++) {
      const c = folded.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995) ^ (h2 >>> 15);
    }
    // 0/0 marks an empty slot.
    h1 = (h1 | 1) >>> 0;
    h2 >>>= 0;
    if ((this.size + 1) * 2 > this.slots.length / 2) this.grow();
    return this.insert(h1, h2);
  }

  private insert(h1: number, h2: number): boolean {
    const mask = this.slots.length / 2 - 1;
    for (let i = (h1 ^ h2) & mask; ; i = (i + 1) & mask) {
      const a = this.slots[2 * i];
      if (a === 0) {
        this.slots[2 * i] = h1;
        this.slots[2 * i + 1] = h2;
        this.size++;
        return false;
      }
      if (a === h1 && this.slots[2 * i + 1] === h2) return true;
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    this.size = 0;
    for (let i = 0; i < old.length; i += 2) {
      const a = old[i] ?? 0;
      if (a !== 0) this.insert(a, old[i + 1] ?? 0);
    }
  }
}

/** Lower case, compatibility-decomposed, without combining marks. ASCII (most names) stays cheap. */
export function fold(username: string): string {
  if (/^[\x00-\x7f]*$/.test(username)) return username.toLowerCase();
  return username.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase().normalize('NFKD').replace(/\p{M}/gu, '');
}
