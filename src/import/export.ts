/**
 * `rosterd export users` (PRODUCT.md §7): the tenant's roster as users.csv with the canonical
 * header, no passwords, streamed from Postgres with COPY TO so memory stays flat at any size.
 */
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import type { Pool } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { once } from 'node:events';
import { withClient } from '../store/db.js';
import { getTenant } from '../store/tenants.js';

export const EXPORT_HEADER = 'username,email,first name,last name,school,graduation year,access type,role,sis id,status';

/**
 * The exported columns, in EXPORT_HEADER's order, named as ExportedUser names them (COPY's CSV has
 * no header, so the names matter to the JSON only), over users and their schools (`u`, `s`).
 */
const EXPORT_COLUMNS = `u.username, u.email, u.first_name AS "firstName", u.last_name AS "lastName", s.name AS school,
  u.graduation_year AS "graduationYear",
  CASE u.access_type WHEN 'administrator' THEN 'Administrator'
                     WHEN 'school_administrator' THEN 'School Administrator'
                     WHEN 'manager' THEN 'Manager' END AS "accessType",
  u.role, u.sis_id AS "sisId", CASE WHEN u.active THEN 'active' ELSE 'inactive' END AS status`;
const EXPORT_FROM = 'users u LEFT JOIN schools s ON s.id = u.school_id';

/** Writes the roster to `out` (not ended when `keepOpen`); returns the number of users. */
export async function exportUsers(pool: Pool, subdomain: string, out: Writable, opts: { keepOpen?: boolean } = {}): Promise<number> {
  const tenant = await getTenant(pool, subdomain);
  // COPY takes no parameters; the id is a number read from the database, never user input.
  const tenantId = Number(tenant.id);
  if (!Number.isSafeInteger(tenantId)) throw new Error(`unexpected tenant id ${String(tenant.id)}`);
  return withClient(pool, async (client) => {
    out.write(EXPORT_HEADER + '\n');
    const stream = client.query(
      copyTo(`COPY (
        SELECT ${EXPORT_COLUMNS}
          FROM ${EXPORT_FROM}
         WHERE u.tenant_id = ${tenantId}
         ORDER BY lower(u.username)
      ) TO STDOUT WITH (FORMAT csv)`),
    );
    await pipeline(stream, out, { end: opts.keepOpen !== true });
    return stream.rowCount;
  });
}

/** One user of `export users --json`: the CSV's columns, named as the JSON of the other commands names things. */
export interface ExportedUser {
  username: string;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  school: string | null;
  graduationYear: number | null;
  accessType: string | null;
  role: string | null;
  sisId: string | null;
  status: 'active' | 'inactive';
}

const JSON_PAGE = 5000;

/**
 * Writes the roster to `out` as a JSON array, one user per line, in the CSV's order; returns the
 * number of users. Read a page at a time along the users index, so memory stays flat at any size.
 */
export async function exportUsersJson(pool: Pool, subdomain: string, out: Writable, opts: { page?: number } = {}): Promise<number> {
  const page = opts.page ?? JSON_PAGE;
  const tenant = await getTenant(pool, subdomain);
  let after: string | null = null;
  let count = 0;
  out.write('[');
  for (;;) {
    const { rows }: { rows: Array<ExportedUser & { key: string }> } = await pool.query(
      `SELECT lower(u.username) AS key, ${EXPORT_COLUMNS}
         FROM ${EXPORT_FROM}
        WHERE u.tenant_id = $1 AND ($2::text IS NULL OR lower(u.username) > $2)
        ORDER BY lower(u.username)
        LIMIT $3`,
      [tenant.id, after, page],
    );
    for (const { key, ...user } of rows) {
      after = key;
      if (!out.write(`${count === 0 ? '\n' : ',\n'}${JSON.stringify(user)}`)) await once(out, 'drain');
      count++;
    }
    if (rows.length < page) break;
  }
  out.write(count === 0 ? ']\n' : '\n]\n');
  return count;
}
