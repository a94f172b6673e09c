import { PG, RosterdError, pgCode } from '../errors.js';
import { parsePublicKey } from '../sftp/public-key.js';
import type { Queryable } from './db.js';
import { getTenant } from './tenants.js';

export interface SshKey {
  id: number;
  tenant: string;
  /** the tenant's IANA zone, in which the key commands show its times */
  timezone: string;
  fingerprint: string;
  type: string;
  bits: number;
  comment: string;
  publicKey: string;
  addedAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** What the SFTP server needs to check a login: the registered key blobs of an active tenant. */
export interface LoginKey {
  fingerprint: string;
  keyType: string;
  blob: Buffer;
}

interface KeyRow {
  id: number;
  subdomain: string;
  timezone: string;
  fingerprint: string;
  key_type: string;
  key_bits: number;
  comment: string;
  public_key: string;
  added_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const toKey = (r: KeyRow): SshKey => ({
  id: r.id,
  tenant: r.subdomain,
  timezone: r.timezone,
  fingerprint: r.fingerprint,
  type: r.key_type,
  bits: r.key_bits,
  comment: r.comment,
  publicKey: r.public_key,
  addedAt: r.added_at,
  lastUsedAt: r.last_used_at,
  revokedAt: r.revoked_at,
});

const SELECT = `SELECT k.*, t.subdomain, t.timezone FROM ssh_keys k JOIN tenants t ON t.id = k.tenant_id`;

/**
 * Registers a key. Adding a key the tenant already holds (unrevoked) changes nothing and is not an
 * error, as revoking a revoked key is not: an operator's script can run `key add` again;
 * `alreadyRegistered` says so.
 */
export async function addKey(db: Queryable, subdomain: string, keyText: string): Promise<SshKey & { alreadyRegistered: boolean }> {
  const key = parsePublicKey(keyText);
  const tenant = await getTenant(db, subdomain);
  const existing = await db.query<KeyRow>(`${SELECT} WHERE k.fingerprint = $1`, [key.fingerprint]);
  const clash = existing.rows[0];
  if (clash) return sameKey(clash, subdomain);
  try {
    const { rows } = await db.query<{ id: number }>(
      `INSERT INTO ssh_keys (tenant_id, fingerprint, key_type, key_bits, public_key, comment)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
      [tenant.id, key.fingerprint, key.type, key.bits, key.authorizedKey, key.comment],
    );
    const inserted = await db.query<KeyRow>(`${SELECT} WHERE k.id = $1`, [rows[0]?.id]);
    return { ...toKey(inserted.rows[0] as KeyRow), alreadyRegistered: false };
  } catch (err) {
    if (pgCode(err) === PG.UNIQUE_VIOLATION) {
      const again = await db.query<KeyRow>(`${SELECT} WHERE k.fingerprint = $1`, [key.fingerprint]);
      if (again.rows[0]) return sameKey(again.rows[0], subdomain);
    }
    throw err;
  }
}

/**
 * The key is registered already: to this tenant and in use, which is nothing to do; to another
 * tenant, or revoked, which is an error.
 */
function sameKey(row: KeyRow, subdomain: string): SshKey & { alreadyRegistered: true } {
  if (row.subdomain !== subdomain) {
    throw new RosterdError(
      'KEY_EXISTS',
      `key ${row.fingerprint} is already registered to another tenant; a key belongs to one tenant only. Ask the district to generate a new key (ssh-keygen -t ed25519)`,
    );
  }
  if (row.revoked_at) {
    throw new RosterdError(
      'KEY_EXISTS',
      `key ${row.fingerprint} was revoked for ${subdomain}; a revoked key cannot be added again. Ask for a new key`,
    );
  }
  return { ...toKey(row), alreadyRegistered: true };
}

export async function listKeys(db: Queryable, subdomain?: string): Promise<SshKey[]> {
  if (subdomain !== undefined) await getTenant(db, subdomain);
  const { rows } = await db.query<KeyRow>(`${SELECT} WHERE ($1::text IS NULL OR t.subdomain = $1) ORDER BY t.subdomain, k.added_at, k.id`, [
    subdomain ?? null,
  ]);
  return rows.map(toKey);
}

/**
 * The `SHA256:` fingerprint an operator typed, as stored: the prefix in any case or left out, the
 * `=` padding some tools print dropped. An MD5 fingerprint (old ssh-keygen, PuTTYgen) cannot be
 * matched: the message says which one to use.
 */
export function normaliseFingerprint(fingerprint: string): string {
  // A whole line pasted from ssh-keygen -lf ("256 SHA256:… comment (ED25519)") or from key add's
  // output: the fingerprint is its one SHA256: word (a fingerprint has no spaces).
  const trimmed = fingerprint.trim();
  const text = /(?:^|\s)(sha256:\S+)/i.exec(trimmed)?.[1] ?? trimmed;
  if (text === '') {
    throw new RosterdError('USAGE', 'give the key\'s SHA256: fingerprint, as "rosterd key list" shows it');
  }
  if (/^md5:/i.test(text) || /^[0-9a-f]{2}(:[0-9a-f]{2}){15}$/i.test(text)) {
    throw new RosterdError(
      'USAGE',
      `${text} is an MD5 fingerprint; rosterd knows keys by their SHA256: fingerprint, which "rosterd key list" shows (and ssh-keygen -lf KEY.pub prints)`,
    );
  }
  return `SHA256:${text.replace(/^sha256:/i, '').replace(/=+$/, '')}`;
}

/** Revokes a key; `alreadyRevoked` says it was revoked before (its revokedAt is then unchanged). */
export async function revokeKey(db: Queryable, fingerprint: string): Promise<SshKey & { alreadyRevoked: boolean }> {
  const normalized = normaliseFingerprint(fingerprint);
  // FROM reads the row as it was before this UPDATE changed it.
  const { rows } = await db.query<{ id: number; was_revoked: boolean }>(
    `UPDATE ssh_keys k SET revoked_at = COALESCE(k.revoked_at, now())
       FROM ssh_keys before
      WHERE k.fingerprint = $1 AND before.id = k.id
      RETURNING k.id, before.revoked_at IS NOT NULL AS was_revoked`,
    [normalized],
  );
  if (!rows[0]) {
    throw new RosterdError('KEY_NOT_FOUND', `no key has fingerprint ${normalized}; "rosterd key list" shows them`);
  }
  const updated = await db.query<KeyRow>(`${SELECT} WHERE k.id = $1`, [rows[0].id]);
  return { ...toKey(updated.rows[0] as KeyRow), alreadyRevoked: rows[0].was_revoked };
}

/** Where a tenant's key stands now: logins are decided once, but keys and tenants change after. */
export type KeyStanding = 'ok' | 'unknown-tenant' | 'tenant-suspended' | 'key-revoked' | 'key-unknown';

export async function keyStanding(db: Queryable, tenant: string, fingerprint: string): Promise<KeyStanding> {
  const { rows } = await db.query<{ status: string; key_id: string | null; revoked_at: Date | null }>(
    `SELECT t.status, k.id AS key_id, k.revoked_at FROM tenants t LEFT JOIN ssh_keys k ON k.tenant_id = t.id AND k.fingerprint = $2
      WHERE t.subdomain = $1`,
    [tenant, fingerprint],
  );
  const row = rows[0];
  if (row === undefined) return 'unknown-tenant';
  if (row.status !== 'active') return 'tenant-suspended';
  if (row.key_id === null) return 'key-unknown';
  return row.revoked_at === null ? 'ok' : 'key-revoked';
}

/** Unrevoked keys of an active tenant; [] for an unknown or suspended tenant. */
export async function findLoginKeys(db: Queryable, subdomain: string): Promise<LoginKey[]> {
  const { rows } = await db.query<{ fingerprint: string; key_type: string; public_key: string }>(
    `SELECT k.fingerprint, k.key_type, k.public_key
       FROM ssh_keys k JOIN tenants t ON t.id = k.tenant_id
      WHERE t.subdomain = $1 AND t.status = 'active' AND k.revoked_at IS NULL`,
    [subdomain],
  );
  return rows.map((r) => ({
    fingerprint: r.fingerprint,
    keyType: r.key_type,
    blob: Buffer.from(r.public_key.split(' ')[1] ?? '', 'base64'),
  }));
}

export async function touchKeyLastUsed(db: Queryable, fingerprint: string, at: Date): Promise<void> {
  await db.query('UPDATE ssh_keys SET last_used_at = $2 WHERE fingerprint = $1', [fingerprint, at]);
}
