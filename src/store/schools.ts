import type { SchoolRef } from '../import/types.js';
import { RosterdError, pgCode, pgConstraint, PG } from '../errors.js';
import type { Queryable } from './db.js';
import { getTenant, type Tenant } from './tenants.js';

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

/** One of a school's name and IDs, as users.csv's school column is compared with it (case-insensitive). */
export interface SchoolKey {
  kind: 'name' | 'NCES ID' | 'state ID';
  value: string;
  /** for messages: `name "Lincoln High"`, `NCES ID 062271003230` */
  label: string;
}

export function schoolKeys(s: SchoolKeys): SchoolKey[] {
  const out: SchoolKey[] = [{ kind: 'name', value: s.name.toLowerCase(), label: `name "${s.name}"` }];
  if (s.ncesId) out.push({ kind: 'NCES ID', value: s.ncesId, label: `NCES ID ${s.ncesId}` });
  if (s.stateId) out.push({ kind: 'state ID', value: s.stateId.toLowerCase(), label: `state ID ${s.stateId}` });
  return out;
}

/**
 * The names and IDs of a tenant's schools (and of a schools file's lines, as they are checked),
 * each with the schools that have it, in the order they were added.
 */
export class SchoolKeyIndex {
  private readonly holders = new Map<string, Array<{ kind: SchoolKey['kind']; school: string; line: number }>>();

  /** `line`: the schools file's line that gives the school; 0 for a school the tenant has. */
  add(school: SchoolKeys, line = 0): void {
    for (const { kind, value } of schoolKeys(school)) {
      const list = this.holders.get(value);
      if (list === undefined) this.holders.set(value, [{ kind, school: school.name, line }]);
      else list.push({ kind, school: school.name, line });
    }
  }

  /** The line that first gave `key` as the same kind of name or ID (0: a school the tenant has), if one did. */
  earlier(key: SchoolKey): number | undefined {
    return this.holders.get(key.value)?.find((h) => h.kind === key.kind)?.line;
  }

  /**
   * Why `school` cannot join: one of its name and IDs is another school's name or ID of another
   * kind (a name that is another school's NCES ID), so a users.csv school value would name both,
   * and every user given it would be an error. Null if none is. The same kind twice is left to
   * `earlier` and the unique indexes.
   */
  clash(school: SchoolKeys): string | null {
    for (const mine of schoolKeys(school)) {
      const theirs = this.holders.get(mine.value)?.find((h) => h.kind !== mine.kind);
      if (theirs !== undefined) {
        const value = mine.kind === 'name' ? school.name : mine.value;
        return (
          `the ${mine.kind} "${value}" is the ${theirs.kind} of the school "${theirs.school}", so a users.csv school value "${value}" ` +
          `would match both schools; give a ${mine.kind} that no other school has as a name or ID`
        );
      }
    }
    return null;
  }
}

export async function addSchool(db: Queryable, subdomain: string, input: SchoolInput): Promise<SchoolRef> {
  const school = validateSchoolInput(input);
  const tenant = await getTenant(db, subdomain);
  const index = new SchoolKeyIndex();
  for (const other of await listSchools(db, tenant.id)) index.add(other);
  const clash = index.clash(school);
  if (clash !== null) throw new RosterdError('SCHOOL_AMBIGUOUS', `${subdomain} cannot take this school: ${clash}`);
  return insertSchool(db, tenant, school);
}

/** What `school update` changes: a field left out keeps its value; null removes an ID. */
export interface SchoolChange {
  name?: string;
  ncesId?: string | null;
  stateId?: string | null;
}

/**
 * Changes one of a tenant's schools (a typo in its name, an NCES ID added or corrected). The
 * school keeps its id, so the users an import put in it stay there; users.csv must name it by
 * what it now has. `others` are the tenant's other schools, read in the caller's transaction.
 */
export async function updateSchool(
  db: Queryable,
  tenant: Pick<Tenant, 'id' | 'subdomain'>,
  school: SchoolRef,
  others: readonly SchoolRef[],
  change: SchoolChange,
): Promise<SchoolRef> {
  const after = validateSchoolInput({
    name: change.name ?? school.name,
    ncesId: change.ncesId === undefined ? school.ncesId : change.ncesId,
    stateId: change.stateId === undefined ? school.stateId : change.stateId,
  });
  const index = new SchoolKeyIndex();
  for (const other of others) index.add(other);
  const clash = index.clash(after);
  if (clash !== null) throw new RosterdError('SCHOOL_AMBIGUOUS', `${tenant.subdomain} cannot take this change: ${clash}`);
  const taken = schoolKeys(after).find((key) => index.earlier(key) === 0);
  if (taken !== undefined) {
    throw new RosterdError(
      'SCHOOL_EXISTS',
      `${tenant.subdomain} already has another school with ${taken.label}; "rosterd school list ${tenant.subdomain}" shows them`,
    );
  }
  let r: SchoolRow | undefined;
  try {
    const { rows } = await db.query<SchoolRow>(
      `UPDATE schools SET name = $3, nces_id = $4, state_id = $5 WHERE tenant_id = $1 AND id = $2
       RETURNING ${SCHOOL_COLUMNS}`,
      [tenant.id, school.id, after.name, after.ncesId ?? null, after.stateId ?? null],
    );
    r = rows[0];
  } catch (err) {
    throw schoolExists(err, tenant.subdomain, after);
  }
  if (!r) throw new Error(`school ${school.id} of ${tenant.subdomain} is gone`);
  return schoolOf(r);
}

interface SchoolRow {
  id: number;
  name: string;
  nces_id: string | null;
  state_id: string | null;
}

const SCHOOL_COLUMNS = 'id, name, nces_id, state_id';

const schoolOf = (r: SchoolRow): SchoolRef => ({ id: String(r.id), name: r.name, ncesId: r.nces_id, stateId: r.state_id });

/** Inserts a school validated (validateSchoolInput) and checked against the tenant's others (SchoolKeyIndex). */
export async function insertSchool(db: Queryable, tenant: Pick<Tenant, 'id' | 'subdomain'>, school: SchoolInput): Promise<SchoolRef> {
  const subdomain = tenant.subdomain;
  try {
    const { rows } = await db.query<SchoolRow>(
      `INSERT INTO schools (tenant_id, name, nces_id, state_id) VALUES ($1, $2, $3, $4)
       RETURNING ${SCHOOL_COLUMNS}`,
      [tenant.id, school.name, school.ncesId ?? null, school.stateId ?? null],
    );
    const r = rows[0];
    if (!r) throw new Error('insert returned no row');
    return schoolOf(r);
  } catch (err) {
    throw schoolExists(err, subdomain, school);
  }
}

/** A unique index's violation as the school it met (a school added meanwhile by someone else); other errors as they are. */
function schoolExists(err: unknown, subdomain: string, school: SchoolInput): unknown {
  if (pgCode(err) !== PG.UNIQUE_VIOLATION) return err;
  const which =
    pgConstraint(err) === 'schools_nces_uq'
      ? `NCES ID ${school.ncesId}`
      : pgConstraint(err) === 'schools_state_uq'
        ? `state ID ${school.stateId}`
        : `name "${school.name}"`;
  return new RosterdError(
    'SCHOOL_EXISTS',
    `${subdomain} already has a school with ${which}; "rosterd school list ${subdomain}" shows them`,
  );
}

/** `forUpdate`: inside a transaction, locks the schools against a concurrent change until it ends. */
export async function listSchools(db: Queryable, tenantId: number, opts: { forUpdate?: boolean } = {}): Promise<SchoolRef[]> {
  const { rows } = await db.query<SchoolRow>(
    `SELECT ${SCHOOL_COLUMNS} FROM schools WHERE tenant_id = $1 ORDER BY lower(name)${opts.forUpdate ? ' FOR UPDATE' : ''}`,
    [tenantId],
  );
  return rows.map(schoolOf);
}
