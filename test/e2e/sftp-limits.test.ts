/**
 * What one address or one district may hold open at once (src/sftp/limits.ts), so that one client
 * cannot use up the daemon's file descriptors and break every other district's uploads: logins
 * pending per address, logged-in connections per district, sessions per connection, uploads per
 * district. And a connection that never logs in counts toward its address's block.
 *
 * Loopback has many addresses: the flooding client is 127.0.0.1, the district that must not
 * notice is 127.0.0.2 (ssh2's localAddress).
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  MAX_CONNECTIONS_PER_TENANT,
  MAX_PENDING_LOGINS_PER_ADDRESS,
  MAX_SESSIONS_PER_CONNECTION,
  MAX_UPLOADS_PER_TENANT,
} from '../../src/sftp/limits.js';
import { listUploads } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  registerTenants,
  rejection,
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

const TENANTS = ['flood-usd', 'calm-usd', 'busy-usd', 'many-usd'] as const;
type Tenant = (typeof TENANTS)[number];

let db: TestDatabase;
let tmp: string;
let srv: TestSftpServer;
let keys: Record<Tenant, ClientKey>;

const login = (tenant: Tenant, localAddress = '127.0.0.2') =>
  ssh2Sftp({ port: srv.port, username: tenant, privateKey: keys[tenant].privateKey, localAddress });

/** A TCP connection that says it speaks SSH and then nothing more; resolves with what the server sent first. */
async function silentClient(port: number, localAddress: string): Promise<{ socket: net.Socket; greeting: Promise<string> }> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('SSH-2.0-probe\r\n');
  const greeting = new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) resolve(got.slice(0, got.indexOf('\r\n')));
    });
    socket.once('close', () => resolve(got === '' ? 'closed' : got));
  });
  return { socket, greeting };
}

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-limits-'));
  keys = await registerTenants(db.pool, tmp, TENANTS);
  srv = await startSftpServer({ pool: db.pool, dataDir: path.join(tmp, 'data'), env: { SFTP_MAX_AUTH_FAILURES: '10000' } });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

it(`an address holds at most ${MAX_PENDING_LOGINS_PER_ADDRESS} connections not logged in; other addresses log in meanwhile`, async () => {
  const held = [];
  for (let i = 0; i < MAX_PENDING_LOGINS_PER_ADDRESS; i++) held.push(await silentClient(srv.port, '127.0.0.1'));
  for (const c of held) expect(await c.greeting).toBe('SSH-2.0-rosterd');
  // One more from the same address is closed before a word is said, and logged once.
  const extra = await silentClient(srv.port, '127.0.0.1');
  expect(await extra.greeting).toBe('closed');
  const again = await silentClient(srv.port, '127.0.0.1');
  expect(await again.greeting).toBe('closed');
  const refusals = srv.logs.filter((l) => l.reason === 'too-many-pending-logins');
  expect(refusals).toEqual([expect.objectContaining({ event: 'login.connection_refused', remoteAddress: '127.0.0.1', refused: 1 })]);

  // A district on another address does not notice.
  const calm = await login('calm-usd');
  await sftpP.writeFile(calm.sftp, 'users.csv', Buffer.from('username\ncalm0001\n'));
  calm.end();
  expect(await listUploads(db.pool, { tenant: 'calm-usd' })).toHaveLength(1);

  // Places are given back when those connections go.
  for (const c of held) c.socket.destroy();
  await waitFor(async () => {
    const probe = await silentClient(srv.port, '127.0.0.1');
    const greeting = await probe.greeting;
    probe.socket.destroy();
    return greeting === 'SSH-2.0-rosterd';
  });
  // and at login: a district logs in from the flooded address once it is free.
  const flood = await login('flood-usd', '127.0.0.1');
  flood.end();
});

it('a connection that never logs in counts toward its address block', async () => {
  const strict = await startSftpServer({
    pool: db.pool,
    dataDir: path.join(tmp, 'strict'),
    env: { SFTP_LOGIN_TIMEOUT_SECONDS: '1', SFTP_MAX_AUTH_FAILURES: '2', SFTP_BLOCK_SECONDS: '60' },
  });
  try {
    const silent = [await silentClient(strict.port, '127.0.0.3'), await silentClient(strict.port, '127.0.0.3')];
    await Promise.all(silent.map((c) => new Promise((resolve) => c.socket.once('close', resolve))));
    expect(strict.logs.filter((l) => l.reason === 'login-timeout')).toHaveLength(2);
    expect(strict.logs.some((l) => l.event === 'login.address_blocked' && l.remoteAddress === '127.0.0.3')).toBe(true);
    const after = await silentClient(strict.port, '127.0.0.3');
    let said = '';
    after.socket.on('data', (d: Buffer) => (said += d.toString('latin1')));
    // Blocked: the identification line, then a disconnect that says why (refuse-early.ts), then closed.
    expect(await after.greeting).toBe('SSH-2.0-rosterd');
    await new Promise((resolve) => after.socket.once('close', resolve));
    expect(said).toMatch(/too many failed logins from 127\.0\.0\.3: this address may not connect until /);
  } finally {
    await strict.close();
  }
});

it(`a connection opens at most ${MAX_SESSIONS_PER_CONNECTION} SFTP sessions at once`, async () => {
  const client = await ssh2Connect({ port: srv.port, username: 'busy-usd', privateKey: keys['busy-usd'].privateKey });
  client.on('error', () => undefined);
  const open = () => new Promise<SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  const sessions: SFTPWrapper[] = [];
  for (let i = 0; i < MAX_SESSIONS_PER_CONNECTION; i++) sessions.push(await open());
  await expect(open()).rejects.toThrow();
  expect(srv.logs.some((l) => l.event === 'sftp.session_refused' && l.tenant === 'busy-usd')).toBe(true);
  // One ends; another may start, and works.
  sessions[0]?.end();
  await waitFor(async () =>
    open()
      .then((s) => (sessions.push(s), true))
      .catch(() => false),
  );
  await expect(sftpP.readdir(sessions.at(-1) as SFTPWrapper, '/')).resolves.toEqual([]);
  client.end();
});

it(`a district uploads at most ${MAX_UPLOADS_PER_TENANT} files at once over all its connections`, async () => {
  const [a, b] = await Promise.all([login('many-usd'), login('many-usd')]);
  const handles: Array<[Ssh2Session, Buffer]> = [];
  for (let i = 0; i < MAX_UPLOADS_PER_TENANT; i++) {
    const s = i % 2 === 0 ? a : b;
    handles.push([s, await sftpP.open(s.sftp, 'users.csv', 'w')]);
  }
  const err = await rejection(sftpP.open(b.sftp, 'groups.csv', 'w'));
  expect(err.message).toBe(`this district already has ${MAX_UPLOADS_PER_TENANT} files being uploaded at once; close or finish some first`);
  // Another district is not held back.
  const calm = await login('calm-usd');
  await sftpP.writeFile(calm.sftp, 'groups.csv', Buffer.from('username,group\ncalm0001,Chess\n'));
  calm.end();

  // A file received gives its place back: the next one opens.
  const [s, h] = handles.pop() as [Ssh2Session, Buffer];
  await sftpP.write(s.sftp, h, Buffer.from('username\nmany0001\n'), 0);
  await sftpP.close(s.sftp, h);
  const next = await sftpP.open(b.sftp, 'groups.csv', 'w');
  await sftpP.close(b.sftp, next); // an empty groups.csv, received
  // So does a connection that goes: a's uploads are discarded and their places are free again.
  const closed = whenClosed(a.client);
  a.end();
  await closed;
  await waitFor(async () => {
    const opened = await Promise.all(Array.from({ length: 30 }, () => sftpP.open(b.sftp, 'users.csv', 'w').catch(() => null)));
    return opened.every((x) => x !== null);
  });
  b.end();
});

it(`a district holds at most ${MAX_CONNECTIONS_PER_TENANT} logged-in connections; the next is ended at login`, async () => {
  const sessions: Ssh2Session[] = [];
  for (let i = 0; i < MAX_CONNECTIONS_PER_TENANT; i++) sessions.push(await login('flood-usd'));
  const client = await ssh2Connect({
    port: srv.port,
    username: 'flood-usd',
    privateKey: keys['flood-usd'].privateKey,
    localAddress: '127.0.0.2',
  });
  client.on('error', () => undefined);
  await whenClosed(client);
  expect(srv.logs.some((l) => l.reason === 'too-many-tenant-connections' && l.tenant === 'flood-usd')).toBe(true);
  // Another district logs in as usual, and so does this one once a connection goes.
  const calm = await login('calm-usd');
  calm.end();
  sessions.pop()?.end();
  await waitFor(async () =>
    login('flood-usd')
      .then((s) => (sessions.push(s), true))
      .catch(() => false),
  );
  for (const s of sessions) s.end();
});
