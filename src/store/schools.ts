import type { SchoolRef } from '../import/types.js';
import { RosterdError, pgCode, pgConstraint, PG } from '../errors.js';
import type { Queryable } from './db.js';
import { getTenant } from './tenants.js';

export interface SchoolInput {
  name: string;
  ncesId?: string | null;
  stateId?: string | null;
}

export function validateSchoolInput(input: SchoolInput): SchoolInput {
  // Composed (NFC), as users.csv's school column is read: one spelling per name in the unique index.
  const name = input.name.trim().normalize('NFC');
  if (name === '' || name.length > 200) {
    throw new RosterdError('INVALID_SCHOOL', 'a school needs a name of 1 to 200 characters (--name)');
  }
  if (/\p{Cc}/u.test(name)) {
    // users.csv names it on one line; a line break pasted in would match no row.
    throw new RosterdError(
      'INVALID_SCHOOL',
      `the school name "${JSON.stringify(name).slice(1, -1)}" holds a line break, tab or other control character; give it on one line (--name)`,
    );
  }
  const ncesId = input.ncesId?.trim() || null;
  if (ncesId !== null && !/^\d{12}$/.test(ncesId)) {
    throw new RosterdError('INVALID_SCHOOL', `NCES school ID "${ncesId}" must be exactly 12 digits (e.g. 062271003230)`);
  }
  const stateId = input.stateId?.trim().normalize('NFC') || null;
  if (stateId !== null && stateId.length > 64) {
    throw new RosterdError('INVALID_SCHOOL', `state school ID "${stateId}" is longer than 64 characters`);
  }
  return { name, ncesId, stateId };
}

type SchoolKeys = Pick<SchoolInput, 'name' | 'ncesId' | 'stateId'>;

/** A school's name and IDs, as users.csv's school column is compared with them (case-insensitive). */
function keysOf(s: SchoolKeys): Array<{ kind: string; value: string }> {
  const out = [{ kind: 'name', value: s.name.toLowerCase() }];
  if (s.ncesId) out.push({ kind: 'NCES ID', value: s.ncesId });
  if (s.stateId) out.push({ kind: 'state ID', value: s.stateId.toLowerCase() });
  return out;
}

/**
 * Why `school` cannot join `others`: one of its name and IDs is another school's name or ID of
 * another kind (a name that is another school's NCES ID), so a users.csv school value would name
 * both, and every user given it would be an error. Null if none is. The same kind twice is left
 * to the unique indexes.
 */
export function schoolClash(school: SchoolKeys, others: readonly SchoolKeys[]): string | null {
  for (const mine of keysOf(school)) {
    for (const other of others) {
      const theirs = keysOf(other).find((k) => k.kind !== mine.kind && k.value === mine.value);
      if (theirs !== undefined) {
        const value = mine.kind === 'name' ? school.name : mine.value;
        return (
          `the ${mine.kind} "${value}" is the ${theirs.kind} of the school "${other.name}", so a users.csv school value "${value}" ` +
          `would match both schools; give a ${mine.kind} that no other school has as a name or ID`
        );
      }
    }
  }
  return null;
}

export async function addSchool(db: Queryable, subdomain: string, input: SchoolInput): Promise<SchoolRef> {
  const school = validateSchoolInput(input);
  const tenant = await getTenant(db, subdomain);
  const clash = schoolClash(school, await listSchools(db, tenant.id));
  if (clash !== null) throw new RosterdError('SCHOOL_AMBIGUOUS', `${subdomain} cannot take this school: ${clash}`);
  try {
    const { rows } = await db.query<{ id: number; name: string; nces_id: string | null; state_id: string | null }>(
      `INSERT INTO schools (tenant_id, name, nces_id, state_id) VALUES ($1, $2, $3, $4)
       RETURNING id, name, nces_id, state_id`,
      [tenant.id, school.name, school.ncesId ?? null, school.stateId ?? null],
    );
    const r = rows[0];
    if (!r) throw new Error('insert returned no row');
    return { id: String(r.id), name: r.name, ncesId: r.nces_id, stateId: r.state_id };
  } catch (err) {
    if (pgCode(err) === PG.UNIQUE_VIOLATION) {
      const which =
        pgConstraint(err) === 'schools_nces_uq'
          ? `NCES ID ${school.ncesId}`
          : pgConstraint(err) === 'schools_state_uq'
            ? `state ID ${school.stateId}`
            : `name "${school.name}"`;
      throw new RosterdError(
        'SCHOOL_EXISTS',
        `${subdomain} already has a school with ${which}; "rosterd school list ${subdomain}" shows them`,
      );
    }
    throw err;
  }
}

export async function listSchools(db: Queryable, tenantId: number): Promise<SchoolRef[]> {
  const { rows } = await db.query<{ id: number; name: string; nces_id: string | null; state_id: string | null }>(
    'SELECT id, name, nces_id, state_id FROM schools WHERE tenant_id = $1 ORDER BY lower(name)',
    [tenantId],
  );
  return rows.map((r) => ({ id: String(r.id), name: r.name, ncesId: r.nces_id, stateId: r.state_id }));
}
