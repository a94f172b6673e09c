import type { AcceptedFileName, UploadStatus } from '../types.js';
import type { Queryable } from './db.js';
import { getTenant } from './tenants.js';

export interface NewUpload {
  tenantSubdomain: string;
  fileName: AcceptedFileName;
  bytes: number;
  sha256: string;
  /** the immutable copy, relative to DATA_DIR */
  storedPath: string;
  keyFingerprint: string | null;
  remoteAddress: string | null;
  receivedAt: Date;
  source?: 'sftp' | 'cli' | 'validate';
  status?: UploadStatus;
}

export interface Upload {
  id: string;
  tenantId: number;
  tenant: string;
  fileName: string;
  source: string;
  bytes: number;
  sha256: string;
  storedPath: string;
  keyFingerprint: string | null;
  remoteAddress: string | null;
  receivedAt: Date;
  status: UploadStatus;
  statusChangedAt: Date;
}

interface UploadRow {
  id: string;
  tenant_id: number;
  subdomain: string;
  file_name: string;
  source: string;
  bytes: number;
  sha256: string;
  stored_path: string;
  key_fingerprint: string | null;
  remote_address: string | null;
  received_at: Date;
  status: UploadStatus;
  status_changed_at: Date;
}

export const toUpload = (r: UploadRow): Upload => ({
  id: r.id,
  tenantId: r.tenant_id,
  tenant: r.subdomain,
  fileName: r.file_name,
  source: r.source,
  bytes: r.bytes,
  sha256: r.sha256,
  storedPath: r.stored_path,
  keyFingerprint: r.key_fingerprint,
  remoteAddress: r.remote_address,
  receivedAt: r.received_at,
  status: r.status,
  statusChangedAt: r.status_changed_at,
});

const SELECT = `SELECT u.*, t.subdomain FROM uploads u JOIN tenants t ON t.id = u.tenant_id`;

export async function insertUpload(db: Queryable, u: NewUpload): Promise<Upload> {
  const tenant = await getTenant(db, u.tenantSubdomain);
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO uploads (tenant_id, file_name, source, bytes, sha256, stored_path, key_fingerprint, remote_address,
                          received_at, status, status_changed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9) RETURNING id`,
    [
      tenant.id,
      u.fileName,
      u.source ?? 'sftp',
      u.bytes,
      u.sha256,
      u.storedPath,
      u.keyFingerprint,
      u.remoteAddress,
      u.receivedAt,
      u.status ?? 'pending',
    ],
  );
  return getUpload(db, rows[0]?.id ?? '') as Promise<Upload>;
}

export async function getUpload(db: Queryable, id: string): Promise<Upload | undefined> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
  const { rows } = await db.query<UploadRow>(`${SELECT} WHERE u.id = $1`, [id]);
  return rows[0] ? toUpload(rows[0]) : undefined;
}

/** Newest first. */
export async function listUploads(db: Queryable, opts: { tenant?: string; limit?: number } = {}): Promise<Upload[]> {
  const { rows } = await db.query<UploadRow>(`${SELECT} WHERE ($1::text IS NULL OR t.subdomain = $1) ORDER BY u.arrival DESC LIMIT $2`, [
    opts.tenant ?? null,
    opts.limit ?? 1000,
  ]);
  return rows.map(toUpload);
}
