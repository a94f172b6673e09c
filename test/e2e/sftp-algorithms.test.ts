/**
 * SFTP_ALGORITHMS: `compatible` (the default) lets old SIS clients in with SHA-1 (ssh-rsa key and
 * host key signatures, hmac-sha1) and compression before login; `modern` refuses all of them,
 * while every current client still logs in. Driven by the real OpenSSH client, and by ssh2's
 * client where OpenSSH cannot be made to ask (compression before login).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { makeClientKey, rejection, sftpBatch, ssh2Connect, startSftpServer, type ClientKey, type TestSftpServer } from '../support/ssh.js';

const TENANT = 'algo-usd';
let db: TestDatabase;
let tmp: string;
let rsa: ClientKey;
let ed25519: ClientKey;
let compatible: TestSftpServer;
let modern: TestSftpServer;

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-algos-'));
  [rsa, ed25519] = await Promise.all([makeClientKey(tmp, 'rsa'), makeClientKey(tmp, 'ed25519')]);
  await createTenant(db.pool, TENANT, { adminEmails: ['it@algo.example'] });
  await addKey(db.pool, TENANT, rsa.publicLine);
  await addKey(db.pool, TENANT, ed25519.publicLine);
  // One data directory: the same host keys, so only the setting differs.
  const dataDir = path.join(tmp, 'data');
  compatible = await startSftpServer({ pool: db.pool, dataDir });
  modern = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_ALGORITHMS: 'modern' } });
});

afterAll(async () => {
  await compatible?.close();
  await modern?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** What an old client insists on, as OpenSSH options. */
const SHA1: Array<[string, () => ClientKey, string[]]> = [
  ['an RSA key signing with SHA-1 (ssh-rsa)', () => rsa, ['-o', 'PubkeyAcceptedAlgorithms=ssh-rsa']],
  ['an ssh-rsa host key signature', () => ed25519, ['-o', 'HostKeyAlgorithms=ssh-rsa']],
  ['hmac-sha1', () => ed25519, ['-o', 'Ciphers=aes128-ctr', '-o', 'MACs=hmac-sha1']],
];

describe('SFTP_ALGORITHMS=compatible (the default)', () => {
  it.each(SHA1)('lets in a client that needs %s', async (_what, key, options) => {
    const r = await sftpBatch(compatible.port, TENANT, key(), ['ls'], options);
    expect(r.code, r.stderr).toBe(0);
  });

  it('logs the signature algorithm of each login, so that an operator can tell who still uses SHA-1', () => {
    const algorithms = compatible.logs.filter((l) => l.event === 'login.accepted').map((l) => l.algorithm);
    expect(algorithms).toContain('ssh-rsa');
    expect(algorithms).toContain('ssh-ed25519');
  });

  it('lets in a client that compresses before login (zlib)', async () => {
    const client = await ssh2Connect({
      port: compatible.port,
      username: TENANT,
      privateKey: ed25519.privateKey,
      algorithms: { compress: ['zlib'] },
    });
    client.end();
  });
});

describe('SFTP_ALGORITHMS=modern', () => {
  it.each(SHA1)('refuses a client that needs %s', async (_what, key, options) => {
    const r = await sftpBatch(modern.port, TENANT, key(), ['ls'], options);
    expect(r.code).not.toBe(0);
  });

  it('logs the SHA-1 signature as the reason, with the key', async () => {
    expect(modern.logs.filter((l) => l.event === 'login.refused' && l.reason === 'sha1-signature')).toEqual([
      expect.objectContaining({ username: TENANT, fingerprint: expect.stringMatching(/^SHA256:/) }),
    ]);
  });

  it('ends the connection of a client that accepts only an ssh-rsa host key, and says why', async () => {
    expect(modern.logs.filter((l) => l.event === 'sftp.sha1_host_key_refused')).toHaveLength(1);
  });

  it('refuses compression before login', async () => {
    const err = await rejection(
      ssh2Connect({ port: modern.port, username: TENANT, privateKey: ed25519.privateKey, algorithms: { compress: ['zlib'] } }),
    );
    expect(err.message).toMatch(/no matching C->S compression/);
  });

  it('lets in current clients: RSA with SHA-2, ed25519, compression after login', async () => {
    for (const [key, options] of [
      [rsa, []],
      [ed25519, []],
      [ed25519, ['-o', 'Compression=yes']],
    ] as const) {
      const r = await sftpBatch(modern.port, TENANT, key, ['ls'], [...options]);
      expect(r.code, `${key.type} ${options.join(' ')}: ${r.stderr}`).toBe(0);
    }
    expect(modern.logs.filter((l) => l.event === 'login.accepted').map((l) => l.algorithm)).toContainEqual(
      expect.stringMatching(/^rsa-sha2-(256|512)$/),
    );
  });
});
