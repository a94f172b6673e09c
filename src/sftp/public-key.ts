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
 * Parses one public key in OpenSSH authorized_keys form (or the SSH2 file PuTTYgen saves) and
 * enforces the accepted types and sizes. Throws KEY_INVALID or KEY_WEAK with a message that says
 * what to send instead.
 */
export function parsePublicKey(text: string): PublicKey {
  checkWrongFile(text);
  return parseKeyLine(text.includes(RFC4716_BEGIN) ? fromRfc4716(text) : oneLine(text));
}

/**
 * Files people often send instead of an OpenSSH public key, each refused with what it is and
 * how to get the public key from it.
 */
function checkWrongFile(text: string): void {
  if (/^\s*PuTTY-User-Key-File-\d+:/m.test(text)) {
    throw new RosterdError(
      'KEY_INVALID',
      'this is a PuTTY private key (.ppk); never share it. Send its public key instead: in PuTTYgen, load the .ppk and copy ' +
        '"Public key for pasting into OpenSSH authorized_keys file", or run: puttygen key.ppk -O public-openssh -o key.pub',
    );
  }
  if (/PRIVATE KEY/.test(text)) {
    throw new RosterdError('KEY_INVALID', 'this is a private key; never share it. Send the public key (the .pub file) instead');
  }
  if (/-----BEGIN PUBLIC KEY-----/.test(text)) {
    throw new RosterdError(
      'KEY_INVALID',
      'this is a PEM (PKCS#8) public key, not the OpenSSH form; convert it with: ssh-keygen -i -m PKCS8 -f key.pem > key.pub, and add key.pub',
    );
  }
  if (/-----BEGIN RSA PUBLIC KEY-----/.test(text)) {
    throw new RosterdError(
      'KEY_INVALID',
      'this is a PEM (PKCS#1) RSA public key, not the OpenSSH form; convert it with: ssh-keygen -i -m PEM -f key.pem > key.pub, and add key.pub',
    );
  }
  if (/-----BEGIN CERTIFICATE-----/.test(text)) {
    throw new RosterdError(
      'KEY_INVALID',
      'this is an X.509 (TLS) certificate, not an SSH key; send the .pub file of the SSH key the SIS logs in with (ssh-keygen -t ed25519 writes one)',
    );
  }
}

/**
 * The text of a key file. UTF-8 (with or without a BOM) as is; UTF-16, which PowerShell's `>`
 * writes, decoded by its byte-order mark (or, without one, by its zero bytes, since a key is
 * ASCII); anything else holding zero bytes is binary and refused.
 */
export function decodeKeyFile(bytes: Buffer): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return bytes.subarray(2).toString('utf16le');
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return Buffer.from(bytes.subarray(2)).swap16().toString('utf16le');
  if (!bytes.includes(0)) return bytes.toString('utf8').replace(/^\uFEFF/, '');
  const even = bytes.length % 2 === 0;
  const zeroAt = (parity: number) => bytes.every((b, i) => (i % 2 === parity ? b === 0 : b !== 0));
  if (even && zeroAt(1)) return bytes.toString('utf16le');
  if (even && zeroAt(0)) return Buffer.from(bytes).swap16().toString('utf16le');
  throw new RosterdError(
    'KEY_INVALID',
    'the key file is binary, not text; send the .pub file ssh-keygen writes (one line starting with ssh-ed25519, ecdsa-sha2-… or ssh-rsa)',
  );
}

function oneLine(text: string): string {
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
  return lines[0] ?? '';
}

function parseKeyLine(line: string): PublicKey {
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
  checkOptions(line.slice(0, match.index).trim());
  if (type.endsWith('-cert-v01@openssh.com')) {
    throw new RosterdError(
      'KEY_INVALID',
      `this is an SSH certificate (${type}), not a public key; send the plain public key instead: the .pub file without -cert (id_ed25519.pub, not id_ed25519-cert.pub)`,
    );
  }
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
  const declared = typeInBlob(Buffer.from(base64, 'base64'));
  if (declared !== null && declared !== type && /^[\w.@-]+$/.test(declared)) {
    throw new RosterdError(
      'KEY_INVALID',
      `the line says ${type} but its key data is of type ${declared}; copy the whole .pub line again, unedited`,
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

/**
 * authorized_keys options that would restrict the key (who may use it, until when, as what). rosterd
 * does not enforce them, so a key carrying one is refused rather than registered with the
 * restriction silently gone. Every other option either forbids what rosterd never allows (no-pty,
 * restrict, command= — it serves SFTP only) or grants what it never grants; ignoring those is safe.
 */
const RESTRICTING_OPTIONS = new Set(['from', 'expiry-time', 'cert-authority', 'principals']);

function checkOptions(options: string): void {
  if (options === '') return;
  const names = options
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // quoted values may hold commas
    .split(',')
    .map((o) => (o.split('=')[0] ?? '').trim().toLowerCase());
  const restricting = names.filter((n) => RESTRICTING_OPTIONS.has(n));
  if (restricting.length > 0) {
    throw new RosterdError(
      'KEY_INVALID',
      `the key line has the option ${restricting.map((n) => (n === 'cert-authority' ? n : `${n}=`)).join(', ')}, which rosterd does not enforce; ` +
        'remove the options before the key type and add the key alone',
    );
  }
}

const RFC4716_BEGIN = '---- BEGIN SSH2 PUBLIC KEY ----';
const RFC4716_END = '---- END SSH2 PUBLIC KEY ----';

/**
 * A key in the SSH2 format (RFC 4716) that PuTTYgen and WinSCP save, as the one authorized_keys
 * line it stands for, its Comment header as the comment.
 */
function fromRfc4716(text: string): string {
  const body = text.slice(text.indexOf(RFC4716_BEGIN) + RFC4716_BEGIN.length);
  const end = body.indexOf(RFC4716_END);
  if (end < 0) throw new RosterdError('KEY_INVALID', `the key has no "${RFC4716_END}" line; copy the whole file again`);
  // Header lines ("Name: value") may continue on the next line after a trailing backslash.
  const lines = body
    .slice(0, end)
    .replace(/\\\r?\n/g, '')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  let comment = '';
  const data: string[] = [];
  for (const l of lines) {
    const header = /^([\x21-\x39\x3b-\x7e]{1,64}):\s*(.*)$/.exec(l);
    if (header === null) data.push(l);
    else if ((header[1] ?? '').toLowerCase() === 'comment') comment = (header[2] ?? '').replace(/^"(.*)"$/, '$1');
  }
  const base64 = data.join('');
  const type = typeInBlob(Buffer.from(base64, 'base64')) ?? '';
  if (!/^[\w.@-]+$/.test(type))
    throw new RosterdError('KEY_INVALID', 'the SSH2 public key data is damaged (it does not decode); copy the whole file again');
  return `${type} ${base64} ${comment}`.trim();
}

/** The key type a wire-format blob names first (a length-prefixed string), or null if it is too short. */
function typeInBlob(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const length = blob.readUInt32BE(0);
  return length <= blob.length - 4 ? blob.subarray(4, 4 + length).toString('latin1') : null;
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
