import { mkdtempSync, promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2, { type AuthenticationType } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintOfBlob, parsePublicKey } from '../../src/sftp/public-key.js';
import { addKey, listKeys, revokeKey } from '../../src/store/keys.js';
import { createTenant, setTenantStatus } from '../../src/store/tenants.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  makeClientKey,
  rejection,
  run,
  sftpBatch,
  ssh2Connect,
  ssh2Sftp,
  startSftpServer,
  waitFor,
  type ClientKey,
  type TestSftpServer,
} from '../support/ssh.js';

/** Who may log in, and how every other attempt fails the same way (PRODUCT.md §2 "Authentication"). */

const TENANT = 'lincoln-usd';
let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
let good: ClientKey;
let revoked: ClientKey;
let otherTenants: ClientKey;
let suspended: ClientKey;
let stranger: ClientKey;

const fp = (k: ClientKey) => parsePublicKey(k.publicLine).fingerprint;
const failures = (s: TestSftpServer) => s.logs.filter((l) => l.event === 'login.refused');

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-auth-'));
  dataDir = path.join(tmp, 'data');
  [good, revoked, otherTenants, suspended, stranger] = await Promise.all([
    makeClientKey(tmp, 'ed25519', 'good'),
    makeClientKey(tmp, 'ecdsa', 'revoked'),
    makeClientKey(tmp, 'ed25519', 'other'),
    makeClientKey(tmp, 'ed25519', 'suspended'),
    makeClientKey(tmp, 'ed25519', 'stranger'),
  ]);
  await createTenant(db.pool, TENANT, { adminEmails: ['it@lincoln.example'] });
  await createTenant(db.pool, 'other-usd', { adminEmails: ['it@other.example'] });
  await createTenant(db.pool, 'closed-usd', { adminEmails: ['it@closed.example'] });
  await addKey(db.pool, TENANT, good.publicLine);
  await addKey(db.pool, TENANT, revoked.publicLine);
  await revokeKey(db.pool, fp(revoked));
  await addKey(db.pool, 'other-usd', otherTenants.publicLine);
  await addKey(db.pool, 'closed-usd', suspended.publicLine);
  await setTenantStatus(db.pool, 'closed-usd', 'suspended');
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_MAX_AUTH_FAILURES: '1000' } });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('refused logins', () => {
  // The client is told the same every time; the operator's log says which it was.
  const cases: Array<[string, () => [string, ClientKey], string]> = [
    ['an unknown username', () => ['nobody-usd', good], 'unknown-tenant'],
    ['a suspended tenant', () => ['closed-usd', suspended], 'tenant-suspended'],
    ['a revoked key', () => [TENANT, revoked], 'key-revoked'],
    ["another tenant's key", () => [TENANT, otherTenants], 'key-not-registered'],
    ['an unregistered key', () => [TENANT, stranger], 'key-not-registered'],
    ['a username that is not a subdomain', () => ['../lincoln-usd', good], 'invalid-username'],
  ];

  it.each(cases)('refuses %s with the same failure, and logs it', async (_, which, reason) => {
    const [user, key] = which();
    const before = failures(srv).length;
    const r = await sftpBatch(srv.port, user, key, ['ls'], ['-o', 'LogLevel=INFO']);
    expect(r.code).toBe(255);
    // Word for word what every refusal says: no hint whether the user exists.
    expect(r.stderr.replace(/^Warning: Permanently added .*\n/m, '')).toBe(
      `${user}@127.0.0.1: Permission denied (publickey).\r\nConnection closed\r\n`,
    );
    const logged = failures(srv).slice(before);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ remoteAddress: '127.0.0.1', username: user, fingerprint: fp(key), method: 'publickey' });
    expect(logged[0]?.reason).toBe(reason);
  });

  it('offers only publickey: OpenSSH never falls back to a password prompt', async () => {
    const r = await sftpBatch(srv.port, TENANT, stranger, ['ls'], ['-v', '-o', 'BatchMode=no', '-o', 'NumberOfPasswordPrompts=1']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Authentications that can continue: publickey\r?\n/);
    expect(r.stderr).not.toMatch(/password|keyboard-interactive/i);
  });

  it('refuses password and keyboard-interactive even when a client tries them', async () => {
    const offered: Array<AuthenticationType[] | null> = [];
    const attempts = [
      { type: 'password' as const, username: TENANT, password: 'hunter22' },
      {
        type: 'keyboard-interactive' as const,
        username: TENANT,
        prompt: (_n: string, _i: string, _l: string, _p: unknown, finish: (r: string[]) => void) => finish(['hunter22']),
      },
    ];
    const err = await rejection(
      ssh2Connect({
        port: srv.port,
        username: TENANT,
        authHandler: (methodsLeft, _partial, next) => {
          offered.push(methodsLeft);
          next((attempts.shift() ?? false) as never); // false: no more methods to try
        },
      }),
    );
    expect(err.level).toBe('client-authentication');
    expect(offered.slice(1)).toEqual([['publickey'], ['publickey']]);
    const logged = failures(srv).filter((l) => l.reason === 'method-not-allowed');
    expect(logged.map((l) => l.method).sort()).toEqual(['keyboard-interactive', 'password']);
  });

  it('refuses a registered key whose signature was made by a different key', async () => {
    const registered = ssh2.utils.parseKey(good.privateKey);
    const other = ssh2.utils.parseKey(stranger.privateKey);
    if (registered instanceof Error || other instanceof Error) throw new Error('cannot parse test keys');
    const forged = Array.isArray(registered) ? registered[0] : registered;
    const signer = Array.isArray(other) ? other[0] : other;
    if (!forged || !signer) throw new Error('cannot parse test keys');
    // Offers the registered public key, then signs the session with another private key.
    forged.sign = (data: Buffer | string, algo?: string) => signer.sign(data, algo);
    const before = failures(srv).length;
    const err = await rejection(
      ssh2Connect({ port: srv.port, username: TENANT, authHandler: [{ type: 'publickey', username: TENANT, key: forged }] as never }),
    );
    expect(err.level).toBe('client-authentication');
    expect(failures(srv).slice(before)).toEqual([expect.objectContaining({ reason: 'bad-signature', fingerprint: fp(good) })]);
  });
});

describe('accepted logins', () => {
  it('logs the login and records when the key was last used', async () => {
    const s = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: good.privateKey });
    s.end();
    expect(srv.logs).toContainEqual(
      expect.objectContaining({ event: 'login.accepted', tenant: TENANT, fingerprint: fp(good), remoteAddress: '127.0.0.1' }),
    );
    const key = await waitFor(async () =>
      (await listKeys(db.pool, TENANT)).find((k) => k.fingerprint === fp(good) && k.lastUsedAt !== null),
    );
    expect(key.lastUsedAt).toBeInstanceOf(Date);
  });
});

describe('limits', () => {
  it('blocks an address after SFTP_MAX_AUTH_FAILURES failures, for SFTP_BLOCK_SECONDS', async () => {
    let now = Date.parse('2026-11-21T20:00:00Z');
    const blocking = await startSftpServer({
      pool: db.pool,
      dataDir,
      clock: { now: () => new Date(now) },
      env: { SFTP_MAX_AUTH_FAILURES: '3', SFTP_BLOCK_SECONDS: '60' },
    });
    try {
      for (let i = 0; i < 3; i++) expect((await sftpBatch(blocking.port, TENANT, stranger, ['ls'])).code).toBe(255);
      expect(blocking.logs).toContainEqual(expect.objectContaining({ event: 'login.address_blocked', remoteAddress: '127.0.0.1' }));
      // Blocked: even the right key is turned away before the handshake, told why and until when
      // (a bare close read "Connection reset", like a firewall), with nothing about the tenant.
      const refused = await sftpBatch(blocking.port, TENANT, good, ['ls']);
      expect(refused.code).toBe(255);
      expect(refused.stderr).toMatch(
        /^Received disconnect from 127\.0\.0\.1 port \d+:1: too many failed logins from 127\.0\.0\.1: this address may not connect until 2026-11-21 20:01 UTC \(in about 1 minute\)\. Meanwhile check the username/m,
      );
      expect(refused.stderr).not.toContain(TENANT);
      now += 61_000;
      const ok = await sftpBatch(blocking.port, TENANT, good, ['ls']);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
    } finally {
      await blocking.close();
    }
  });

  it('disconnects a client that does not log in within SFTP_LOGIN_TIMEOUT_SECONDS', async () => {
    const strict = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_LOGIN_TIMEOUT_SECONDS: '1' } });
    try {
      const started = Date.now();
      const socket = net.connect(strict.port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('data', () => undefined); // the server's banner
      await new Promise((resolve) => socket.once('close', resolve));
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(strict.logs).toContainEqual(expect.objectContaining({ event: 'login.refused', reason: 'login-timeout' }));
    } finally {
      await strict.close();
    }
  });
});

describe('host keys', () => {
  it('are generated once (ed25519 and RSA 3072, mode 0600) and the same after a restart', async () => {
    const first = srv.server.hostKeys;
    expect(first.map((k) => [k.type, k.bits])).toEqual([
      ['ssh-ed25519', 256],
      ['ssh-rsa', 3072],
    ]);
    for (const k of first) {
      expect((await fs.stat(k.path)).mode & 0o777).toBe(0o600);
      // ssh-keygen -lf prints the same fingerprint
      expect((await run('ssh-keygen', ['-lf', k.path])).stdout).toContain(` ${k.fingerprint} `);
    }
    const again = await startSftpServer({ pool: db.pool, dataDir });
    try {
      expect(again.server.hostKeys).toEqual(first);
      let seen = '';
      const s = await ssh2Sftp({
        port: again.port,
        username: TENANT,
        privateKey: good.privateKey,
        hostVerifier: (key: Buffer) => {
          seen = fingerprintOfBlob(key);
          return true;
        },
      });
      s.end();
      expect(first.map((k) => k.fingerprint)).toContain(seen);
    } finally {
      await again.close();
    }
  });

  it('are printed by `rosterd host-key`, as ssh-keygen -lf prints them', async () => {
    const json = await runCli(['host-key', '--json'], { DATA_DIR: dataDir });
    expect(json.code, json.stderr).toBe(0);
    expect(json.json()).toEqual(srv.server.hostKeys.map(({ type, bits, fingerprint, path: p }) => ({ type, bits, fingerprint, path: p })));
    const text = await runCli(['host-key'], { DATA_DIR: dataDir });
    for (const k of srv.server.hostKeys) expect(text.stdout).toContain(`${k.bits} ${k.fingerprint} `);
  });

  it('a damaged host key stops them with a message naming the file, and is never replaced by a new one', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-hostkey-'));
    try {
      const made = await runCli(['host-key', '--json'], { DATA_DIR: dir });
      expect(made.code, made.stderr).toBe(0);
      const file = path.join(dir, 'host_keys', 'ssh_host_ed25519_key');
      const damaged = readFileSync(file, 'utf8').slice(0, 120);
      writeFileSync(file, damaged);
      for (const args of [['host-key'], ['serve']]) {
        const r = await runCli(args, { DATA_DIR: dir, DATABASE_URL: db.url, SFTP_PORT: '0', HTTP_PORT: '0' });
        expect(r.code, args[0]).not.toBe(0);
        expect(r.stdout + r.stderr, args[0]).toContain(`host key ${file} is not a readable ssh-ed25519 private key; move it away`);
      }
      // Clients pinned the old key: a new one would lock every district out, so none was made.
      expect(readFileSync(file, 'utf8')).toBe(damaged);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a DATA_DIR that cannot be a folder stops `serve` with one line naming it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-datadir-'));
    try {
      const file = path.join(dir, 'a-file');
      writeFileSync(file, '');
      const r = await runCli(['serve'], { DATA_DIR: path.join(file, 'data'), DATABASE_URL: db.url, SFTP_PORT: '0', HTTP_PORT: '0' });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `DATA_DIR ${path.join(file, 'data')} cannot be used (a part of the path is a file, not a folder); set DATA_DIR to a folder this user can write to`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
