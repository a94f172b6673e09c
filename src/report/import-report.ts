/**
 * The report of one import, queued in the transaction that records its outcome: the glue between
 * the import record (src/import/records.ts) and the renderer and outbox.
 */
import type pg from 'pg';
import type { ImportRecord } from '../import/records.js';
import type { UploadStatus } from '../types.js';
import { enqueueReport } from './outbox.js';
import { renderReport } from './render.js';
import type { DeactivationCandidate, RemovalCandidate, ReplacedUpload, ReportTenant } from './types.js';

/** Outcomes the administrators hear about (PRODUCT.md §6). */
export function isReportable(status: UploadStatus): boolean {
  return status === 'succeeded' || status === 'completed_with_errors' || status === 'failed' || status === 'held' || status === 'rejected';
}

/**
 * Render and queue the report of `record` on `client` (inside the outcome's transaction).
 * Returns the outbox id, or null when the outcome is not reported.
 */
export async function enqueueImportReport(
  client: pg.PoolClient,
  record: ImportRecord,
  opts: { from: string; now: Date },
): Promise<number | null> {
  if (!isReportable(record.status)) return null;
  const tenant = await loadReportTenant(client, record.tenant);
  const wouldDeactivate =
    record.status === 'held' && record.file === 'users.csv' ? await loadHeldDeactivations(client, record.id) : undefined;
  const wouldRemove = record.status === 'held' && record.file === 'groups.csv' ? await loadHeldRemovals(client, record.id) : undefined;
  const replaced = await loadReplaced(client, record.id);
  const waitingGroups =
    record.status === 'held' && record.file === 'users.csv' ? await loadWaitingGroups(client, record.tenant) : undefined;
  const applied = record.status === 'succeeded' || record.status === 'completed_with_errors';
  const stillHeld = applied && record.file === 'users.csv' && record.mode === 'delta' ? await loadStillHeld(client, record) : undefined;
  const message = renderReport({
    import: record,
    tenant,
    from: opts.from,
    wouldDeactivate,
    wouldRemove,
    replaced,
    waitingGroups,
    stillHeld,
  });
  return enqueueReport(client, message, { uploadId: record.id, now: opts.now });
}

async function loadReportTenant(client: pg.PoolClient, subdomain: string): Promise<ReportTenant> {
  const { rows } = await client.query<{ subdomain: string; name: string; timezone: string; admin_emails: string[] }>(
    'SELECT subdomain, name, timezone, admin_emails FROM tenants WHERE subdomain = $1',
    [subdomain],
  );
  const row = rows[0];
  if (!row) throw new Error(`no tenant "${subdomain}" for the report`);
  return { subdomain: row.subdomain, name: row.name, timezone: row.timezone, adminEmails: row.admin_emails };
}

async function loadHeldDeactivations(client: pg.PoolClient, uploadId: string): Promise<DeactivationCandidate[]> {
  const { rows } = await client.query<{
    username: string;
    email: string | null;
    first_name: string | null;
    last_name: string | null;
    school: string | null;
    sis_id: string | null;
  }>(
    `SELECT h.username, u.email, u.first_name, u.last_name, s.name AS school, u.sis_id
       FROM import_hold_deactivations h JOIN users u ON u.id = h.user_id
       LEFT JOIN schools s ON s.id = u.school_id
      WHERE h.upload_id = $1
      ORDER BY lower(h.username)`,
    [uploadId],
  );
  return rows.map((r) => ({
    username: r.username,
    email: r.email,
    firstName: r.first_name,
    lastName: r.last_name,
    school: r.school,
    sisId: r.sis_id,
  }));
}

/** The memberships a held groups.csv would remove, by group. */
async function loadHeldRemovals(client: pg.PoolClient, uploadId: string): Promise<RemovalCandidate[]> {
  const { rows } = await client.query<RemovalCandidate>(
    `SELECT h.group_name AS "group", h.username, o.username AS owner
       FROM import_hold_removals h LEFT JOIN groups g ON g.id = h.group_id LEFT JOIN users o ON o.id = g.owner_id
      WHERE h.upload_id = $1
      ORDER BY lower(h.group_name), lower(h.username)`,
    [uploadId],
  );
  return rows;
}

/** The uploads this one superseded; held ones keep their would-deactivate (would-remove) list. */
async function loadReplaced(client: pg.PoolClient, uploadId: string): Promise<ReplacedUpload[]> {
  const { rows } = await client.query<{ id: string; received_at: Date; bytes: string; sha256: string; was_held: boolean }>(
    `SELECT u.id, u.received_at, u.bytes, u.sha256,
            (EXISTS (SELECT 1 FROM import_hold_deactivations h WHERE h.upload_id = u.id)
             OR EXISTS (SELECT 1 FROM import_hold_removals h WHERE h.upload_id = u.id)) AS was_held
       FROM uploads u
      WHERE u.superseded_by = $1
      ORDER BY u.arrival`,
    [uploadId],
  );
  return rows.map((r) => ({ id: r.id, receivedAt: r.received_at, bytes: Number(r.bytes), sha256: r.sha256, wasHeld: r.was_held }));
}

/** The tenant's pending groups.csv uploads: the scheduler keeps them until the held users.csv is decided. */
async function loadWaitingGroups(client: pg.PoolClient, subdomain: string): Promise<Array<{ id: string; receivedAt: Date }>> {
  const { rows } = await client.query<{ id: string; received_at: Date }>(
    `SELECT u.id, u.received_at FROM uploads u JOIN tenants t ON t.id = u.tenant_id
      WHERE t.subdomain = $1 AND u.file_name = 'groups.csv' AND u.status = 'pending'
      ORDER BY u.arrival`,
    [subdomain],
  );
  return rows.map((r) => ({ id: r.id, receivedAt: r.received_at }));
}

/**
 * The tenant's held users.csv uploads besides this one: a delta leaves them held (only a whole
 * roster replaces them, src/import/run-import.ts), so its report says they still wait.
 */
async function loadStillHeld(client: pg.PoolClient, record: ImportRecord): Promise<Array<{ id: string; receivedAt: Date }>> {
  const { rows } = await client.query<{ id: string; received_at: Date }>(
    `SELECT u.id, u.received_at FROM uploads u JOIN tenants t ON t.id = u.tenant_id
      WHERE t.subdomain = $1 AND u.file_name = 'users.csv' AND u.status = 'held' AND u.id <> $2
      ORDER BY u.arrival`,
    [record.tenant, record.id],
  );
  return rows.map((r) => ({ id: r.id, receivedAt: r.received_at }));
}
