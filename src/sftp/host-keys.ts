import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { parsePublicKey } from './public-key.js';

const { utils } = ssh2;

/** A host key as operators see it: never the private part (that is kept apart, see HostKeyPair). */
export interface HostKeyInfo {
  type: 'ssh-ed25519' | 'ssh-rsa';
  bits: number;
  /** `SHA256:…` exactly as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  path: string;
}

export interface HostKeyPair {
  info: HostKeyInfo;
  privateKey: Buffer;
}

const HOST_KEYS: ReadonlyArray<{ type: HostKeyInfo['type']; file: string; generate: () => Promise<string> }> = [
  { type: 'ssh-ed25519', file: 'ssh_host_ed25519_key', generate: () => generate('ed25519') },
  { type: 'ssh-rsa', file: 'ssh_host_rsa_key', generate: () => generate('rsa', 3072) },
];

export function hostKeysDir(dataDir: string): string {
  return path.join(dataDir, 'host_keys');
}

/**
 * Host keys live in DATA_DIR/host_keys, mode 0600. They are generated once, on first use, and
 * reused forever after, so clients never see the host key change (PRODUCT.md §2). Two processes
 * starting at once on one data directory end up with the same keys: a key file appears whole or
 * not at all (written aside, then hard-linked into place), and the loser reads the winner's.
 */
export async function loadOrCreateHostKeyPairs(dataDir: string): Promise<HostKeyPair[]> {
  const dir = hostKeysDir(dataDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const pairs: HostKeyPair[] = [];
  for (const spec of HOST_KEYS) {
    const file = path.join(dir, spec.file);
    let privateKey = await readIfExists(file);
    if (privateKey === null) {
      await writeOnce(file, await spec.generate());
      privateKey = await fs.readFile(file);
    }
    pairs.push({ info: describe(privateKey, spec.type, file), privateKey });
  }
  return pairs;
}

/** Fingerprints of the host keys (creating them if this is the first use of the data directory). */
export async function loadOrCreateHostKeys(dataDir: string): Promise<HostKeyInfo[]> {
  return (await loadOrCreateHostKeyPairs(dataDir)).map((pair) => pair.info);
}

function describe(privateKey: Buffer, expected: HostKeyInfo['type'], file: string): HostKeyInfo {
  const parsed = utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error || key.type !== expected) {
    throw new Error(`host key ${file} is not a readable ${expected} private key; move it away and start again to generate a new one`);
  }
  const pub = parsePublicKey(`${key.type} ${key.getPublicSSH().toString('base64')}`);
  return { type: expected, bits: pub.bits, fingerprint: pub.fingerprint, path: file };
}

async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

async function writeOnce(file: string, content: string): Promise<void> {
  const aside = `${file}.${randomBytes(6).toString('hex')}.new`;
  try {
    // Inside the try: a write that fails once the file exists (a full disk) must not leave part
    // of a private key lying beside the host keys at every start.
    await fs.writeFile(aside, content, { mode: 0o600, flag: 'wx' });
    await fs.link(aside, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await fs.rm(aside, { force: true });
  }
}

/**
 * ssh2's generator now and then writes an ed25519 key it cannot read back (about 1 in 200: the
 * public part loses a leading zero byte). A host key is generated once and kept forever, so
 * every key is parsed before it is kept, and a malformed one is generated again.
 */
export async function generate(type: 'ed25519' | 'rsa', bits?: number): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const key = await generateOnce(type, bits);
    const parsed = utils.parseKey(key);
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    if (first !== undefined && !(first instanceof Error)) return key;
    if (attempt >= 20) throw new Error(`could not generate a readable ${type} host key`);
  }
}

function generateOnce(type: 'ed25519' | 'rsa', bits?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, pair: { private: string }) => (err ? reject(err) : resolve(pair.private));
    if (type === 'rsa') utils.generateKeyPair('rsa', { bits: bits ?? 3072 }, done);
    else utils.generateKeyPair('ed25519', done);
  });
}
