import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2, { type AnyAuthMethod, type Channel, type ClientChannel, type ExecOptions, type SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { freePort } from '../support/serve.js';
import {
  makeClientKey,
  randomFile,
  rejection,
  sftpBatch,
  sftpP,
  ssh2Connect,
  ssh2Sftp,
  startSftpServer,
  waitFor,
  whenClosed,
  type ClientKey,
  type Ssh2Session,
  type TestSftpServer,
} from '../support/ssh.js';

/**
 * Broken and hostile connections (PRODUCT.md §2; "handle every client socket error", "limit auth
 * attempts", "one tenant's bad connection never disturbs another's"): bytes that are not SSH, a
 * handshake abandoned halfway, requests for anything but SFTP, too many login attempts, too many
 * handles, made-up handles. All against one server, while another tenant's upload stays open
 * throughout; at the end that upload completes and a third tenant uploads as usual.
 */

const ALPHA = 'alpha-usd'; // the tenant whose client misbehaves
const BETA = 'beta-usd'; // keeps an upload open through all of it
const GAMMA = 'gamma-usd'; // uploads normally at the end
/** Failed logins one connection may make (MAX_ATTEMPTS_PER_CONNECTION, src/sftp/server.ts). */
const MAX_ATTEMPTS = 6;
/** Open handles per SFTP session (MAX_HANDLES, src/sftp/session.ts). */
const MAX_HANDLES = 64;
const STATUS = { OK: 0, EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4 } as const;
const SERVER_IDENT = 'SSH-2.0-rosterd\r\n';
const TOO_MANY_HANDLES = `too many open files (at most ${MAX_HANDLES}); close some first`;

let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
const keys = {} as Record<typeof ALPHA | typeof BETA | typeof GAMMA | 'stranger', ClientKey>;
/** BETA's session, with users.csv open and half written since before the first test. */
let bystander: Ssh2Session;
let bystanderHandle: Buffer;
const BYSTANDER_HEAD = Buffer.from('username,password\n');
const BYSTANDER_TAIL = Buffer.from('beta0001,secret-1\nbeta0002,secret-2\n');

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const spoolFiles = async () => (await fs.readdir(path.join(dataDir, 'spool')).catch(() => [])).filter((n) => n.endsWith('.part'));
/** Spool files other than the bystander's (which stays open until the last tests). */
let bystanderSpool: string[] = [];
const otherSpoolFiles = async () => (await spoolFiles()).filter((n) => !bystanderSpool.includes(n));
const alpha = () => ssh2Sftp({ port: srv.port, username: ALPHA, privateKey: keys[ALPHA].privateKey });

/** Only the bystander's connection is open between tests: a test's connections are all gone. */
const onlyTheBystander = () => waitFor(() => srv.server.connectionCount === 1, 10_000, 'the server to let go of the connection');

/** A bare TCP connection to the SFTP port: what it received, and whether it is closed. */
function rawConnection(): { socket: net.Socket; received(): Buffer; isClosed(): boolean; connected: Promise<void> } {
  const socket = net.connect(srv.port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  return {
    socket,
    received: () => Buffer.concat(chunks),
    isClosed: () => closed,
    connected: new Promise((resolve) => socket.once('connect', () => resolve())),
  };
}

// Requests sftpP does not wrap, each sent as given.
const sftpX = {
  opendir: (s: SFTPWrapper, p: string) => new Promise<Buffer>((res, rej) => s.opendir(p, (e, h) => (e ? rej(e) : res(h)))),
  readdir: (s: SFTPWrapper, h: Buffer) => new Promise<unknown[]>((res, rej) => s.readdir(h, (e, list) => (e ? rej(e) : res(list)))),
  read: (s: SFTPWrapper, h: Buffer, length = 1024) =>
    new Promise<number>((res, rej) => s.read(h, Buffer.alloc(length), 0, length, 0, (e, n) => (e ? rej(e) : res(n)))),
  fstat: (s: SFTPWrapper, h: Buffer) => new Promise<unknown>((res, rej) => s.fstat(h, (e, st) => (e ? rej(e) : res(st)))),
  fsetstat: (s: SFTPWrapper, h: Buffer) => new Promise<void>((res, rej) => s.fsetstat(h, { size: 0 }, (e) => (e ? rej(e) : res()))),
};

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-hostile-'));
  dataDir = path.join(tmp, 'data');
  for (const name of [ALPHA, BETA, GAMMA, 'stranger'] as const) keys[name] = await makeClientKey(tmp, 'ed25519', name);
  for (const t of [ALPHA, BETA, GAMMA] as const) {
    await createTenant(db.pool, t, { adminEmails: [`it@${t}.example`] });
    await addKey(db.pool, t, keys[t].publicLine);
  }
  // Every connection comes from 127.0.0.1: the address blocklist stays out of the way, so what is
  // seen is the per-connection limit. The login deadline is far off, so a connection the server
  // fails to drop is noticed rather than swept up by it.
  srv = await startSftpServer({
    pool: db.pool,
    dataDir,
    env: { SFTP_MAX_AUTH_FAILURES: '10000', SFTP_LOGIN_TIMEOUT_SECONDS: '600' },
  });
  bystander = await ssh2Sftp({ port: srv.port, username: BETA, privateKey: keys[BETA].privateKey });
  bystanderHandle = await sftpP.open(bystander.sftp, '/users.csv', 'w');
  await sftpP.write(bystander.sftp, bystanderHandle, BYSTANDER_HEAD, 0);
  bystanderSpool = await spoolFiles();
  expect(bystanderSpool).toHaveLength(1);
});

afterAll(async () => {
  bystander?.end();
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('bytes that are not SSH', () => {
  it('random bytes: the server answers with its banner only and closes the connection', async () => {
    const c = rawConnection();
    await c.connected;
    c.socket.write(randomBytes(64 * 1024));
    await waitFor(() => c.isClosed(), 10_000, 'the server to close the connection');
    expect(c.received().toString('latin1')).toBe(SERVER_IDENT);
    await onlyTheBystander();
  });

  it('an HTTP request: no HTTP answer, the connection is closed', async () => {
    const c = rawConnection();
    await c.connected;
    c.socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nConnection: keep-alive\r\n\r\n`);
    await waitFor(() => c.isClosed(), 10_000, 'the server to close the connection');
    expect(c.received().toString('latin1')).toBe(SERVER_IDENT);
    await onlyTheBystander();
  });

  it('a connection closed at once, or reset at once', async () => {
    const closed = rawConnection();
    await closed.connected;
    closed.socket.end();
    const reset = rawConnection();
    await reset.connected;
    reset.socket.resetAndDestroy();
    await waitFor(() => closed.isClosed() && reset.isClosed(), 10_000, 'both connections to close');
    await onlyTheBystander();
  });
});

describe('a handshake abandoned halfway', () => {
  /** Sends a valid client banner and waits for the server's KEXINIT (SSH message 20). */
  async function bannerThenKexinit() {
    const c = rawConnection();
    await c.connected;
    c.socket.write('SSH-2.0-OpenSSH_9.6\r\n');
    const at = SERVER_IDENT.length;
    await waitFor(() => c.received().length > at + 5, 10_000, "the server's KEXINIT");
    expect(c.received().subarray(0, at).toString('latin1')).toBe(SERVER_IDENT);
    expect(c.received()[at + 5]).toBe(20); // uint32 length, byte padding, then the message number
    return c;
  }

  it('a valid banner, then the client closes during key exchange', async () => {
    const c = await bannerThenKexinit();
    c.socket.end();
    await waitFor(() => c.isClosed(), 10_000, 'the connection to close');
    await onlyTheBystander();
  });

  it('a valid banner, then the client resets the connection during key exchange', async () => {
    const c = await bannerThenKexinit();
    c.socket.resetAndDestroy();
    await onlyTheBystander();
  });

  it('a valid banner, then a packet claiming 4 GiB: the server closes the connection', async () => {
    const c = await bannerThenKexinit();
    c.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x04, 0x14, 0, 0, 0, 0]));
    await waitFor(() => c.isClosed(), 10_000, 'the server to close the connection');
    await onlyTheBystander();
  });

  it('a client offering no key exchange the server knows is refused', async () => {
    const err = await rejection(
      ssh2Connect({
        port: srv.port,
        username: ALPHA,
        privateKey: keys[ALPHA].privateKey,
        algorithms: { kex: ['diffie-hellman-group1-sha1'] },
      }),
    );
    expect(err.message).toMatch(/no matching key exchange algorithm/i);
    await onlyTheBystander();
  });

  it('a real client that drops the connection when the server has sent its host key', async () => {
    const socket = net.connect(srv.port, '127.0.0.1');
    const client = new ssh2.Client();
    client.on('error', () => undefined);
    let hostKeySeen = false;
    const closed = new Promise((resolve) => socket.once('close', resolve));
    client.connect({
      sock: socket,
      username: ALPHA,
      privateKey: keys[ALPHA].privateKey,
      // Key exchange is under way (the server has signed its reply); the client vanishes here.
      hostVerifier: (_key: Buffer, _verify: (valid: boolean) => void) => {
        hostKeySeen = true;
        socket.resetAndDestroy();
      },
    });
    await closed;
    expect(hostKeySeen).toBe(true);
    await onlyTheBystander();
  });
});

describe('an authenticated client asking for more than SFTP', () => {
  let client: ssh2.Client;
  beforeAll(async () => {
    // strictVendor off: ssh2 would otherwise not send OpenSSH's requests to a server not named OpenSSH.
    client = await ssh2Connect({ port: srv.port, username: ALPHA, privateKey: keys[ALPHA].privateKey, strictVendor: false });
    client.on('error', () => undefined);
  });
  afterAll(() => client?.end());

  /**
   * Everything a channel sends until it closes, and its exit code; listened to from the moment it
   * opens (the exit status may come in the same packet batch as the open).
   */
  const ran = (open: (cb: (err: Error | undefined, ch: ClientChannel) => void) => void) =>
    new Promise<{ stdout: string; stderr: string; code: unknown }>((resolve, reject) =>
      open((err, ch) => {
        if (err) return reject(err);
        let stdout = '';
        let stderr = '';
        let code: unknown = null;
        ch.on('data', (d: Buffer) => (stdout += d.toString()));
        ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        ch.on('exit', (c: unknown) => (code = c));
        ch.on('close', () => resolve({ stdout, stderr, code }));
      }),
    );
  const exec = (command: string, options: ExecOptions = {}) => ran((cb) => client.exec(command, options, cb));
  // Nothing runs: the channel says so on stderr and exits 1 (see not-sftp.ts); refused outright,
  // the district's ssh or scp -O printed only "exec request failed on channel 0".
  const NOTHING_RAN = {
    stdout: '',
    stderr: expect.stringMatching(/^rosterd: you are logged in as alpha-usd .* SFTP only/) as unknown,
    code: 1,
  };

  it('exec runs nothing: it is told SFTP only, and exits 1', async () => {
    expect(await exec('id')).toEqual(NOTHING_RAN);
    const scp = await exec('scp -t /users.csv');
    expect(scp).toEqual(NOTHING_RAN);
    expect(scp.stderr).toMatch(/old SCP protocol/);
    expect(await listUploads(db.pool, { tenant: ALPHA })).toEqual([]);
  });

  it('a shell runs nothing either', async () => {
    expect(await ran((cb) => client.shell(false, cb))).toEqual({
      ...NOTHING_RAN,
      stderr: expect.stringMatching(/runs no shell\. .*\.\n$/) as unknown,
    });
  });

  it('a pty is granted, and nothing runs in it; its lines end in CR LF', async () => {
    expect(await exec('id', { pty: true })).toEqual({
      ...NOTHING_RAN,
      stderr: expect.stringMatching(/runs no commands\. .*\r\n$/) as unknown,
    });
    expect(await ran((cb) => client.shell({ term: 'xterm' }, cb))).toEqual({
      ...NOTHING_RAN,
      stderr: expect.stringMatching(/runs no shell\. .*\r\n$/) as unknown,
    });
  });

  it('a subsystem other than sftp is refused', async () => {
    const err = await rejection(new Promise((res, rej) => client.subsys('netconf', (e, ch) => (e ? rej(e) : res(ch)))));
    expect(err.message).toBe('Unable to start subsystem: netconf');
  });

  it('direct-tcpip (ssh -L, ssh -W) is refused and nothing is connected to', async () => {
    let reached = 0;
    const target = net.createServer((s) => {
      reached++;
      s.destroy();
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const { port } = target.address() as net.AddressInfo;
    try {
      // The test's listener by address and by name, and the SFTP port itself, through the tunnel.
      for (const [host, to] of [
        ['127.0.0.1', port],
        ['localhost', port],
        ['127.0.0.1', srv.port],
      ] as const) {
        const err = await rejection(
          new Promise((res, rej) => client.forwardOut('127.0.0.1', 40000, host, to, (e, ch) => (e ? rej(e) : res(ch)))),
        );
        expect(err.message).toMatch(/Channel open failure/);
      }
      expect(reached).toBe(0);
    } finally {
      await new Promise((resolve) => target.close(resolve));
    }
  });

  it('direct-streamlocal (ssh -L to a Unix socket) is refused and nothing is connected to', async () => {
    let reached = 0;
    const socketPath = path.join(tmp, 'target.sock');
    const target = net.createServer((s) => {
      reached++;
      s.destroy();
    });
    await new Promise<void>((resolve) => target.listen(socketPath, resolve));
    try {
      const err = await rejection(
        new Promise((res, rej) => client.openssh_forwardOutStreamLocal(socketPath, (e, ch) => (e ? rej(e) : res(ch)))),
      );
      expect(err.message).toMatch(/Channel open failure/);
      expect(reached).toBe(0);
    } finally {
      await new Promise((resolve) => target.close(resolve));
    }
  });

  it('tcpip-forward (ssh -R) is refused and nothing listens on the port', async () => {
    const port = await freePort();
    const err = await rejection(new Promise((res, rej) => client.forwardIn('127.0.0.1', port, (e, p) => (e ? rej(e) : res(p)))));
    expect(err.message).toBe(`Unable to bind to 127.0.0.1:${port}`);
    const any = await rejection(new Promise((res, rej) => client.forwardIn('0.0.0.0', 0, (e, p) => (e ? rej(e) : res(p)))));
    expect(any.message).toBe('Unable to bind to 0.0.0.0:0');
    // Nobody took the port: it can be bound here.
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => probe.close(resolve));
    const unix = path.join(tmp, 'remote.sock');
    const streamlocal = await rejection(
      new Promise<void>((res, rej) => client.openssh_forwardInStreamLocal(unix, (e) => (e ? rej(e) : res()))),
    );
    expect(streamlocal.message).toBe(`Unable to bind to ${unix}`);
    await expect(fs.stat(unix)).rejects.toThrow(/ENOENT/);
  });

  it('after all those refusals the same connection still serves SFTP', async () => {
    const sftp = await new Promise<SFTPWrapper>((res, rej) => client.sftp((e, s) => (e ? rej(e) : res(s))));
    expect(await sftpP.realpath(sftp, '.')).toBe('/');
    sftp.end();
  });
});

describe('login attempts', () => {
  /**
   * One connection as ALPHA that makes the attempts `attempt(n)` gives (n from 1) until it gives
   * null; resolves once the server has closed it.
   */
  async function tryLogins(attempt: (n: number) => AnyAuthMethod | null) {
    let attempts = 0;
    let ready = false;
    let error: (Error & { level?: string }) | undefined;
    const client = new ssh2.Client();
    client.on('error', (e) => (error ??= e));
    client.on('ready', () => (ready = true));
    const closed = whenClosed(client);
    client.connect({
      host: '127.0.0.1',
      port: srv.port,
      username: ALPHA,
      readyTimeout: 10_000,
      authHandler: (_methodsLeft, _partial, next) => {
        const method = attempt(++attempts);
        next(method ?? (false as never));
      },
    });
    await closed;
    return { attempts, ready, error };
  }
  const guess = (n: number): AnyAuthMethod => ({ type: 'password', username: ALPHA, password: `guess-${n}` });

  it(`more than ${MAX_ATTEMPTS} failed attempts on one connection end it`, async () => {
    const from = srv.logs.length;
    // Up to 20 attempts, password and an unregistered key by turns; a server that never stops
    // the client would see all of them.
    const { attempts, ready, error } = await tryLogins((n) =>
      n > 20 ? null : n % 2 === 1 ? guess(n) : { type: 'publickey', username: ALPHA, key: keys.stranger.privateKey },
    );
    expect(ready).toBe(false);
    // The client is cut off after the sixth failure; it may have sent a seventh attempt already.
    expect(attempts).toBeGreaterThanOrEqual(MAX_ATTEMPTS);
    expect(attempts).toBeLessThanOrEqual(MAX_ATTEMPTS + 1);
    const logged = srv.logs.slice(from).filter((l) => l.event === 'login.refused' && l.username === ALPHA);
    // Six failures and the cut-off, once each: an attempt already on its way is not counted again.
    expect(logged).toHaveLength(MAX_ATTEMPTS + 1);
    expect(logged.filter((l) => l.reason === 'too-many-attempts')).toHaveLength(1);
    expect(logged.filter((l) => l.reason === 'method-not-allowed').length).toBeGreaterThanOrEqual(MAX_ATTEMPTS / 2);
    expect(logged.filter((l) => l.reason === 'key-not-registered').length).toBeGreaterThanOrEqual(MAX_ATTEMPTS / 2);
    expect(srv.logs.slice(from)).toContainEqual(
      expect.objectContaining({ msg: 'SFTP connection ending', reason: 'too many failed logins' }),
    );
    expect(error?.message ?? '').not.toMatch(/All configured authentication methods failed/);
    await onlyTheBystander();

    // The limit is the connection's: a new one from the same address with the right key logs in.
    const s = await alpha();
    expect(await sftpP.realpath(s.sftp, '.')).toBe('/');
    s.end();
  });

  it(`the right key offered after ${MAX_ATTEMPTS} failures on the same connection does not get in`, async () => {
    const from = srv.logs.length;
    const { attempts, ready } = await tryLogins((n) =>
      n > MAX_ATTEMPTS + 3 ? null : n <= MAX_ATTEMPTS ? guess(n) : { type: 'publickey', username: ALPHA, key: keys[ALPHA].privateKey },
    );
    expect(ready).toBe(false);
    expect(attempts).toBeLessThanOrEqual(MAX_ATTEMPTS + 1);
    expect(srv.logs.slice(from).filter((l) => l.event === 'login.accepted')).toEqual([]);
    expect(srv.logs.slice(from)).toContainEqual(expect.objectContaining({ event: 'login.refused', reason: 'too-many-attempts' }));
    await onlyTheBystander();
  });
});

describe('handles', () => {
  let s: Ssh2Session;
  const CONTENT = Buffer.from('username,password\nalpha001,secret-1\n');
  beforeAll(async () => {
    s = await alpha();
    await sftpP.writeFile(s.sftp, '/users.csv', CONTENT);
  });
  afterAll(() => s?.end());

  it(`opening more than ${MAX_HANDLES} gets a clear failure; closing one lets another open`, async () => {
    const uploadsBefore = (await listUploads(db.pool, { tenant: ALPHA })).length;
    const handles: Buffer[] = [];
    for (let i = 0; i < MAX_HANDLES; i++) handles.push(await sftpP.open(s.sftp, '/users.csv', 'r'));
    for (const attempt of [
      () => sftpP.open(s.sftp, '/users.csv', 'r'),
      () => sftpP.open(s.sftp, '/users.csv', 'w'),
      () => sftpX.opendir(s.sftp, '/'),
    ]) {
      const err = await rejection(attempt());
      expect(err.code).toBe(STATUS.FAILURE);
      expect(err.message).toBe(TOO_MANY_HANDLES);
    }
    expect(await otherSpoolFiles(), 'a refused upload opens no spool file').toEqual([]);
    await sftpP.close(s.sftp, handles.pop() as Buffer);
    const again = await sftpP.open(s.sftp, '/users.csv', 'r');
    expect((await rejection(sftpP.open(s.sftp, '/users.csv', 'r'))).message).toBe(TOO_MANY_HANDLES);
    for (const h of [...handles, again]) await sftpP.close(s.sftp, h);
    // All closed: a directory and an upload open again, and the upload is received.
    await sftpP.close(s.sftp, await sftpX.opendir(s.sftp, '/'));
    await sftpP.writeFile(s.sftp, '/users.csv', CONTENT);
    expect((await listUploads(db.pool, { tenant: ALPHA })).length).toBe(uploadsBefore + 1);
  });

  // OPEN awaits before its handle exists; OPENs still on their way count against the cap, or 500
  // pipelined upload OPENs would make 500 spool files, each an open descriptor.
  it(`${MAX_HANDLES + 16} OPENs sent at once (reads, then uploads): ${MAX_HANDLES} succeed, the rest get the same failure`, async () => {
    const burst = await alpha();
    try {
      for (const flags of ['r', 'w'] as const) {
        const results = await Promise.allSettled(
          Array.from({ length: MAX_HANDLES + 16 }, () => sftpP.open(burst.sftp, '/users.csv', flags)),
        );
        const opened = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
        const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error & { code?: number }] : []));
        if (flags === 'w') expect((await otherSpoolFiles()).length, 'spool files of the burst').toBeLessThanOrEqual(MAX_HANDLES);
        expect([flags, opened.length]).toEqual([flags, MAX_HANDLES]);
        expect(refused.map((e) => [e.code, e.message])).toEqual(Array(16).fill([STATUS.FAILURE, TOO_MANY_HANDLES]));
        if (flags === 'r') for (const h of opened) await sftpP.close(burst.sftp, h);
      }
    } finally {
      // Ending the session discards the uploads it never closed.
      burst.end();
      await waitFor(async () => (await otherSpoolFiles()).length === 0, 10_000, 'the burst’s spool files to be removed');
    }
  });

  it('WRITE, READ, CLOSE, FSTAT, FSETSTAT and READDIR with made-up handles fail with "invalid handle"', async () => {
    const fresh = await alpha(); // no handles of its own: 1, 2, … are the bystander's numbers
    try {
      const madeUp = [
        Buffer.from([0, 0, 0, 1]),
        Buffer.from([0, 0, 0, 2]),
        Buffer.from([0x7f, 0xff, 0xff, 0xff]),
        Buffer.from([0, 0, 0, 1, 0, 0, 0, 1]),
        Buffer.alloc(0),
        randomBytes(256),
      ];
      for (const h of madeUp) {
        for (const [name, request] of [
          ['WRITE', () => sftpP.write(fresh.sftp, h, Buffer.from('evil\n'), 0)],
          ['READ', () => sftpX.read(fresh.sftp, h)],
          ['CLOSE', () => sftpP.close(fresh.sftp, h)],
          ['FSTAT', () => sftpX.fstat(fresh.sftp, h)],
          ['FSETSTAT', () => sftpX.fsetstat(fresh.sftp, h)],
          ['READDIR', () => sftpX.readdir(fresh.sftp, h)],
        ] as const) {
          const err = await rejection(request());
          expect([name, h.toString('hex'), err.code, err.message]).toEqual([name, h.toString('hex'), STATUS.FAILURE, 'invalid handle']);
        }
      }
      expect(await sftpP.realpath(fresh.sftp, '.')).toBe('/');
    } finally {
      fresh.end();
    }
  });

  it('a handle used for what it was not opened for fails, and the session goes on', async () => {
    const r = await sftpP.open(s.sftp, '/users.csv', 'r');
    const d = await sftpX.opendir(s.sftp, '/');
    const w = await sftpP.open(s.sftp, '/users.csv', 'w');
    try {
      const write = await rejection(sftpP.write(s.sftp, r, Buffer.from('x'), 0));
      expect([write.code, write.message]).toEqual([STATUS.PERMISSION_DENIED, 'the file was opened for reading']);
      const readDir = await rejection(sftpX.read(s.sftp, d));
      expect([readDir.code, readDir.message]).toEqual([STATUS.FAILURE, 'invalid handle']);
      const listFile = await rejection(sftpX.readdir(s.sftp, r));
      expect([listFile.code, listFile.message]).toEqual([STATUS.FAILURE, 'invalid handle']);
      const readUpload = await rejection(sftpX.read(s.sftp, w));
      expect([readUpload.code, readUpload.message]).toEqual([STATUS.PERMISSION_DENIED, 'the file was opened for writing only']);
    } finally {
      for (const h of [r, d, w]) await sftpP.close(s.sftp, h);
    }
  });

  it('CLOSE sent twice: the second fails with "invalid handle" (read, directory and upload handles)', async () => {
    const before = (await listUploads(db.pool, { tenant: ALPHA })).length;
    for (const open of [() => sftpP.open(s.sftp, '/users.csv', 'r'), () => sftpX.opendir(s.sftp, '/')]) {
      const h = await open();
      await sftpP.close(s.sftp, h);
      const err = await rejection(sftpP.close(s.sftp, h));
      expect([err.code, err.message]).toEqual([STATUS.FAILURE, 'invalid handle']);
    }
    // An upload closed twice, one CLOSE after the other: received once; a WRITE after it fails.
    const once = Buffer.from('username\nclosed-once\n');
    let h = await sftpP.open(s.sftp, '/users.csv', 'w');
    await sftpP.write(s.sftp, h, once, 0);
    await sftpP.close(s.sftp, h);
    expect([(await rejection(sftpP.close(s.sftp, h))).message, (await rejection(sftpP.write(s.sftp, h, once, 0))).message]).toEqual([
      'invalid handle',
      'invalid handle',
    ]);
    // Both CLOSEs sent at once (the second arrives while the first is being received).
    const twice = Buffer.from('username\nclosed-twice\n');
    h = await sftpP.open(s.sftp, '/users.csv', 'w');
    await sftpP.write(s.sftp, h, twice, 0);
    const [first, second] = await Promise.allSettled([sftpP.close(s.sftp, h), sftpP.close(s.sftp, h)]);
    expect(first.status).toBe('fulfilled');
    expect(second.status === 'rejected' && (second.reason as Error).message).toBe('invalid handle');

    const uploads = await listUploads(db.pool, { tenant: ALPHA });
    expect(uploads.length).toBe(before + 2);
    expect(uploads.slice(0, 2).map((u) => u.sha256)).toEqual([sha256(twice), sha256(once)]);
    expect(await sftpP.readFile(s.sftp, '/users.csv')).toEqual(twice);
  });
});

describe('a malformed SFTP stream', () => {
  /** The sftp subsystem as a raw channel: whatever bytes the test writes reach the server as is. */
  async function rawSftpChannel(): Promise<{ client: ssh2.Client; channel: Channel; closed: () => boolean }> {
    const client = await ssh2Connect({ port: srv.port, username: ALPHA, privateKey: keys[ALPHA].privateKey });
    client.on('error', () => undefined);
    const channel = await new Promise<Channel>((res, rej) => client.subsys('sftp', (e, ch) => (e ? rej(e) : res(ch))));
    let closed = false;
    channel.on('data', () => undefined);
    channel.on('close', () => (closed = true));
    return { client, channel, closed: () => closed };
  }

  it('a packet longer than any SFTP packet: the server closes the channel, the connection stays usable', async () => {
    const { client, channel, closed } = await rawSftpChannel();
    try {
      channel.write(Buffer.from([0x7f, 0xff, 0xff, 0xf0, 1, 0, 0, 0, 3]));
      await waitFor(closed, 10_000, 'the server to close the SFTP channel');
      const sftp = await new Promise<SFTPWrapper>((res, rej) => client.sftp((e, s) => (e ? rej(e) : res(s))));
      expect(await sftpP.realpath(sftp, '/')).toBe('/');
    } finally {
      client.end();
    }
    await onlyTheBystander();
  });

  it('a packet length of 2 GiB or more: the server closes the channel, and serves a new connection', async () => {
    // ssh2 reads such a length as negative (a signed shift) and throws while parsing; its server
    // catches that and ends this connection, not the daemon.
    const { client, channel, closed } = await rawSftpChannel();
    try {
      channel.write(Buffer.from([0xff, 0xff, 0xff, 0xf0, 1, 0, 0, 0, 3]));
      await waitFor(closed, 10_000, 'the server to close the SFTP channel');
    } finally {
      client.end();
    }
    await onlyTheBystander();
    const s = await alpha();
    expect(await sftpP.realpath(s.sftp, '/')).toBe('/');
    s.end();
    await onlyTheBystander();
  });

  it('an upload in flight on a channel that then sends garbage is discarded, never received', async () => {
    const before = (await listUploads(db.pool, { tenant: ALPHA })).length;
    const { client, channel, closed } = await rawSftpChannel();
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n, 0);
      return b;
    };
    const str = (v: string | Buffer) => Buffer.concat([u32(Buffer.byteLength(v)), Buffer.from(v)]);
    const packet = (type: number, ...fields: Buffer[]) => {
      const body = Buffer.concat(fields);
      return Buffer.concat([u32(body.length + 1), Buffer.from([type]), body]);
    };
    const received: Buffer[] = [];
    channel.on('data', (d: Buffer) => received.push(d));
    /** The reply of type `type` to request `id`, once it has arrived (its bytes after the id). */
    const reply = (type: number, id: number) => {
      const all = Buffer.concat(received);
      for (let p = 0; p + 4 <= all.length; p += 4 + all.readUInt32BE(p)) {
        const frame = all.subarray(p + 4, p + 4 + all.readUInt32BE(p));
        if (frame[0] === type && frame.length >= 5 && frame.readUInt32BE(1) === id) return frame.subarray(5);
      }
      return undefined;
    };
    try {
      channel.write(packet(1, u32(3))); // INIT, version 3
      // OPEN /users.csv for WRITE|CREAT|TRUNC, no attributes.
      channel.write(packet(3, u32(1), str('/users.csv'), u32(0x02 | 0x08 | 0x10), u32(0)));
      const handleReply = await waitFor(() => reply(102, 1), 10_000, 'the HANDLE reply');
      const handle = handleReply.subarray(4, 4 + handleReply.readUInt32BE(0));
      const data = 'username\nnever-received\n';
      channel.write(packet(6, u32(2), str(handle), u32(0), u32(0), str(data))); // WRITE at offset 0
      const status = await waitFor(() => reply(101, 2), 10_000, 'the WRITE status');
      expect(status.readUInt32BE(0)).toBe(STATUS.OK);
      channel.write(packet(0xee, Buffer.from([1, 2, 3, 4]))); // a request type that does not exist
      channel.write(Buffer.from([0x7f, 0xff, 0xff, 0xf0, 6])); // and a packet far too long
      await waitFor(closed, 10_000, 'the server to close the SFTP channel');
      await waitFor(async () => (await otherSpoolFiles()).length === 0, 10_000, 'the spool file to be removed');
      expect(srv.logs).toContainEqual(
        expect.objectContaining({ msg: 'upload discarded: the file was never closed', tenant: ALPHA, bytes: data.length }),
      );
    } finally {
      client.end();
    }
    expect((await listUploads(db.pool, { tenant: ALPHA })).length).toBe(before);
    await onlyTheBystander();
  });
});

describe('after all of it', () => {
  it("the bystander's upload, open all along, completes and is received", async () => {
    await sftpP.write(bystander.sftp, bystanderHandle, BYSTANDER_TAIL, BYSTANDER_HEAD.length);
    await sftpP.close(bystander.sftp, bystanderHandle);
    const content = Buffer.concat([BYSTANDER_HEAD, BYSTANDER_TAIL]);
    const uploads = await listUploads(db.pool, { tenant: BETA });
    expect(uploads).toHaveLength(1);
    expect(uploads[0]).toMatchObject({ status: 'pending', fileName: 'users.csv', bytes: content.length, sha256: sha256(content) });
    expect(await fs.readFile(path.join(dataDir, uploads[0]?.storedPath ?? ''))).toEqual(content);
  });

  it('another tenant uploads with OpenSSH sftp as usual', async () => {
    const local = await randomFile(tmp, 'gamma.csv', 300_000);
    const r = await sftpBatch(srv.port, GAMMA, keys[GAMMA], [`put ${local} /users.csv`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const uploads = await listUploads(db.pool, { tenant: GAMMA });
    expect(uploads).toHaveLength(1);
    expect(uploads[0]).toMatchObject({ status: 'pending', bytes: 300_000, sha256: sha256(await fs.readFile(local)) });
  });

  it('nothing was an unforeseen error, and nothing of it is left on the server', async () => {
    expect(srv.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
    await onlyTheBystander();
    expect(await spoolFiles()).toEqual([]);
  });
});
