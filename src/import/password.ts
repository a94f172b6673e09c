/**
 * Password storage (PRODUCT.md §3): a slow salted scrypt hash in a self-describing PHC-style
 * string, plus a keyed "check" that lets a nightly import recognise an unchanged password
 * without hashing it again.
 *
 * Why a keyed check, and what it costs. A re-import of an unchanged roster must do no hashing,
 * so equality has to be decidable without scrypt. Comparing against the stored scrypt hash needs
 * scrypt (that is the point of it); storing a plain fast hash next to it would let anyone with a
 * database dump brute-force passwords at GPU speed, defeating scrypt. Instead we store
 * HMAC-SHA256(K, tenant ‖ username ‖ password) where the key K lives only in
 * DATA_DIR/secrets/password-check.key (mode 0600), never in Postgres. A leaked database (backup,
 * replica, SQL injection) therefore gives an attacker nothing faster than scrypt: without K the
 * check is not computable. Binding tenant and username means two users with the same password
 * get different checks (no spotting of shared passwords). The trade-off: an attacker who holds
 * both the database and K can test guesses at HMAC speed; protecting K (the data volume) is then
 * what stands between them and fast guessing. Losing K is safe: checks stop matching (the key id
 * is part of the stored value) and the next import hashes every password again.
 */
import crypto from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface ScryptParams {
  /** log2 of the CPU/memory cost N */
  ln: number;
  r: number;
  p: number;
}

/** N = 2^15, r = 8: 32 MiB and about 70 ms per hash on a current server core. */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = Object.freeze({ ln: 15, r: 8, p: 1 });

export function scryptMaxmem(params: ScryptParams): number {
  return 128 * 2 ** params.ln * params.r * params.p + 32 * 1024 * 1024;
}

const b64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '');

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** Parse a stored hash; null when it is not one of ours. */
export function parsePasswordHash(stored: string): { params: ScryptParams; salt: Buffer; hash: Buffer } | null {
  const m = PHC.exec(stored);
  if (!m) return null;
  return {
    params: { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) },
    salt: Buffer.from(m[4] ?? '', 'base64'),
    hash: Buffer.from(m[5] ?? '', 'base64'),
  };
}

/** Does `password` match the stored hash? Constant-time comparison. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parsePasswordHash(stored);
  if (!parsed) return false;
  const { params, salt, hash } = parsed;
  const derived = await new Promise<Buffer>((resolve, reject) => {
    crypto.scrypt(
      password.normalize('NFC'),
      salt,
      hash.length,
      { N: 2 ** params.ln, r: params.r, p: params.p, maxmem: scryptMaxmem(params) },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
  return derived.length === hash.length && crypto.timingSafeEqual(derived, hash);
}

/** The server-side key of password checks, and a short id of it stored with each check. */
export interface CheckKey {
  key: Buffer;
  id: string;
}

export function checkKeyFromBytes(key: Buffer): CheckKey {
  return { key, id: crypto.createHash('sha256').update(key).digest('hex').slice(0, 8) };
}

/**
 * Load DATA_DIR/secrets/password-check.key, creating it on first use. Creation is atomic (write a
 * temporary file, then link it into place, which fails if another process won), so replicas
 * sharing a data volume agree on one key.
 */
export async function loadCheckKey(dataDir: string): Promise<CheckKey> {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, 'password-check.key');
  try {
    return checkKeyFromBytes(await readKey(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    // Inside the try: a write that fails once the file exists (a full disk) must not leave a
    // temporary file behind at every import attempt.
    await fs.writeFile(tmp, crypto.randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    await fs.link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
  return checkKeyFromBytes(await readKey(file));
}

async function readKey(file: string): Promise<Buffer> {
  const key = Buffer.from((await fs.readFile(file, 'utf8')).trim(), 'base64');
  if (key.length < 32) throw new Error(`${file} does not hold a 32-byte base64 key; restore it or delete it to start a new one`);
  return key;
}

/** The stored check of a password: `<key id>$<base64 HMAC>`. Fast; see the top of this file. */
export function passwordCheck(key: CheckKey, tenantId: string, usernameKey: string, password: string): string {
  const mac = crypto.createHmac('sha256', key.key);
  mac.update(tenantId);
  mac.update('\0');
  mac.update(usernameKey);
  mac.update('\0');
  mac.update(password.normalize('NFC'));
  return `${key.id}$${b64(mac.digest())}`;
}

/**
 * Passwords travel from the reader to the hashing step through the import's temporary staging
 * table. They are sealed with a key that exists only in this process's memory for this import, so
 * nothing readable ever reaches Postgres (temporary tables spill to disk when large).
 */
export class PasswordSealer {
  readonly #key = crypto.randomBytes(32);

  seal(password: string): Buffer {
    const iv = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([cipher.update(password, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  open(sealed: Buffer): string {
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.#key, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8');
  }
}
