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
 * agree). It keeps each folded name as a 64-bit hash (hashed-keys.ts); a hash collision is one
 * more "maybe".
 */
import { HashedKeys } from './hashed-keys.js';

export class UsernameFoldSet {
  private readonly keys = new HashedKeys();

  /** Adds `username`; true if an earlier one might be the same user. */
  addAndCheck(username: string): boolean {
    return this.keys.seenOrAdd(fold(username)) !== undefined;
  }
}

/** Lower case, compatibility-decomposed, without combining marks. ASCII (most names) stays cheap. */
export function fold(username: string): string {
  if (/^[\x00-\x7f]*$/.test(username)) return username.toLowerCase();
  return username.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase().normalize('NFKD').replace(/\p{M}/gu, '');
}
