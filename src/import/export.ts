/**
 * `rosterd export users` (PRODUCT.md §7): the tenant's roster as users.csv with the canonical
 * header, no passwords, streamed from Postgres with COPY TO so memory stays flat at any size.
 */
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import type { Pool } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { withClient } from '../store/db.js';
import { getTenant } from '../store/tenants.js';

export const EXPORT_HEADER = 'username,email,first name,last name,school,graduation year,access type,role,sis id,status';

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
        SELECT u.username, u.email, u.first_name, u.last_name, s.name, u.graduation_year,
               CASE u.access_type WHEN 'administrator' THEN 'Administrator'
                                  WHEN 'school_administrator' THEN 'School Administrator'
                                  WHEN 'manager' THEN 'Manager' END,
               u.role, u.sis_id, CASE WHEN u.active THEN 'active' ELSE 'inactive' END
          FROM users u LEFT JOIN schools s ON s.id = u.school_id
         WHERE u.tenant_id = ${tenantId}
         ORDER BY lower(u.username)
      ) TO STDOUT WITH (FORMAT csv)`),
    );
    await pipeline(stream, out, { end: opts.keepOpen !== true });
    return stream.rowCount;
  });
}
