import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import { RosterdError } from '../errors.js';

const { utils } = ssh2;

/** Key types PRODUCT.md §1 accepts, with the minimum size where size matters. */
const ACCEPTED_TYPES = new Set(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa']);
const MIN_RSA_BITS = 2048;
const ECDSA_BITS: Record<string, number> = { 'ecdsa-sha2-nistp256': 256, 'ecdsa-sha2-nistp384': 384, 'ecdsa-sha2-nistp521': 521 };

export interface PublicKey {
  type: string;
  bits: number;
  /** SSH wire-format public key */
  blob: Buffer;
  /** `SHA256:…` exactly as `ssh-keygen -lf` prints it */
  fingerprint: string;
  comment: string;
  /** `TYPE BASE64`, the authorized_keys form without options or comment */
  authorizedKey: string;
}

export function fingerprintOfBlob(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/**
 * Parses one public key in OpenSSH authorized_keys form and enforces the accepted types and sizes.
 * Throws KEY_INVALID or KEY_WEAK with a message that says what to send instead.
 */
export function parsePublicKey(text: string): PublicKey {
  if (/PRIVATE KEY/.test(text)) {
    throw new RosterdError('KEY_INVALID', 'this is a private key; never share it. Send the public key (the .pub file) instead');
  }
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) {
    throw new RosterdError(
      'KEY_INVALID',
      'the key file is empty; send the contents of the .pub file (one line starting with ssh-ed25519, ecdsa-sha2-… or ssh-rsa)',
    );
  }
  if (lines.length > 1) {
    throw new RosterdError('KEY_INVALID', `the key file holds ${lines.length} lines; add one public key at a time`);
  }
  const line = lines[0] ?? '';
  // authorized_keys options (from="…",no-pty …) may precede the type; skip to the type token.
  const match = /(?:^|\s)((?:ssh|ecdsa|sk|rsa)-[\w.@-]+|ssh-dss)\s+([A-Za-z0-9+/=]+)(?:\s+(.*))?$/.exec(line);
  if (!match) {
    throw new RosterdError(
      'KEY_INVALID',
      'not an OpenSSH public key: expected one line like "ssh-ed25519 AAAA… comment" (the .pub file ssh-keygen writes)',
    );
  }
  const type = match[1] ?? '';
  const base64 = match[2] ?? '';
  const comment = (match[3] ?? '').trim();
  if (type === 'ssh-dss') {
    throw new RosterdError(
      'KEY_WEAK',
      'DSA keys are not accepted (they are obsolete and insecure); generate an ed25519 key: ssh-keygen -t ed25519',
    );
  }
  if (!ACCEPTED_TYPES.has(type)) {
    throw new RosterdError(
      'KEY_WEAK',
      `key type ${type} is not accepted; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of at least ${MIN_RSA_BITS} bits (ssh-keygen -t ed25519)`,
    );
  }
  const parsed = utils.parseKey(`${type} ${base64}`);
  if (parsed instanceof Error || Array.isArray(parsed) || parsed.type !== type || parsed.isPrivateKey()) {
    throw new RosterdError('KEY_INVALID', `the ${type} key data is damaged (it does not decode); copy the whole .pub line again`);
  }
  const blob = parsed.getPublicSSH();
  const bits = type === 'ssh-rsa' ? rsaBits(blob) : type === 'ssh-ed25519' ? 256 : (ECDSA_BITS[type] ?? 0);
  if (type === 'ssh-rsa' && bits < MIN_RSA_BITS) {
    throw new RosterdError(
      'KEY_WEAK',
      `this RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required. Generate ssh-keygen -t ed25519 (or -t rsa -b 3072)`,
    );
  }
  return { type, bits, blob, fingerprint: fingerprintOfBlob(blob), comment, authorizedKey: `${type} ${blob.toString('base64')}` };
}

/** Modulus size of an ssh-rsa blob: string type, mpint e, mpint n. */
function rsaBits(blob: Buffer): number {
  let offset = 0;
  const next = (): Buffer => {
    const len = blob.readUInt32BE(offset);
    const value = blob.subarray(offset + 4, offset + 4 + len);
    offset += 4 + len;
    return value;
  };
  next(); // type
  next(); // e
  let n = next();
  while (n.length > 0 && n[0] === 0) n = n.subarray(1); // mpint sign padding
  if (n.length === 0) return 0;
  return (n.length - 1) * 8 + (32 - Math.clz32(n[0] ?? 0));
}
