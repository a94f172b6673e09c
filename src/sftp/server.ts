import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import type pg from 'pg';
import ssh2 from 'ssh2';
import type { Config } from '../config/config.js';
import { RosterdError, toError } from '../errors.js';
import type { Clock, Logger } from '../types.js';
import type { AuthFailure } from './auth.js';
import { Blocklist } from './blocklist.js';
import { Connection } from './connection.js';
import { HashCache } from './hash-cache.js';
import {
  KeyedLimit,
  MAX_CONNECTIONS_PER_TENANT,
  MAX_PENDING_LOGINS,
  MAX_PENDING_LOGINS_PER_ADDRESS,
  MAX_UPLOADS_PER_TENANT,
} from './limits.js';
import { loadOrCreateHostKeyPairs, type HostKeyInfo } from './host-keys.js';
import { refuseBeforeHandshake } from './refuse-early.js';
import { spoolDir, sweepSpool } from './spool.js';
import { sweepTempFiles, TEMP_FILE_MAX_AGE_MS } from './temp-files.js';

export interface SftpDeps {
  config: Config;
  logger: Logger;
  pool: pg.Pool;
  clock: Clock;
}

/** What the server reports, for metrics. Listeners must not throw (a throw is logged and ignored). */
export interface SftpEvents {
  sessionOpened: [{ tenant: string; remoteAddress: string }];
  sessionClosed: [{ tenant: string; remoteAddress: string; durationMs: number }];
  authFailed: [AuthFailure];
  uploadReceived: [{ tenant: string; fileName: string; bytes: number; sha256: string; uploadId: string }];
  /** An upload refused (name), failed (too large, disk) or cut off (never closed). */
  uploadFailed: [{ tenant: string; fileName: string; reason: 'name-refused' | 'failed' | 'cut-off' }];
}

export interface SftpServer {
  /** Loads (or creates) the host keys, then listens on SFTP_HOST:SFTP_PORT. */
  listen(): Promise<{ host: string; port: number }>;
  /**
   * Stops accepting, lets uploads in flight finish for up to `graceMs` (default
   * SHUTDOWN_GRACE_SECONDS), then ends every connection; an unfinished upload is discarded whole.
   * Idempotent: every call returns the same promise.
   */
  close(graceMs?: number): Promise<void>;
  /** The host keys' fingerprints (after listen). */
  readonly hostKeys: HostKeyInfo[];
  readonly events: EventEmitter<SftpEvents>;
  /** Connections open right now. */
  readonly connectionCount: number;
}

/**
 * SFTP_ALGORITHMS=modern: ssh2's defaults (which already leave out SHA-1 key exchange and CBC
 * ciphers) without SHA-1 host key signatures, SHA-1 MACs and compression before login. The RSA
 * client-key half is in src/sftp/auth.ts.
 */
const MODERN_ALGORITHMS: ssh2.Algorithms = {
  serverHostKey: { append: [], prepend: [], remove: ['ssh-rsa', 'ssh-dss'] },
  hmac: { append: [], prepend: [], remove: ['hmac-sha1', 'hmac-sha1-etm@openssh.com', 'hmac-sha1-96', 'hmac-md5', 'hmac-md5-96'] },
  compress: { append: [], prepend: [], remove: ['zlib'] },
};

/** Writes of one connection waiting for the disk before its socket is paused (see Backpressure). */
const IN_FLIGHT_CAP_BYTES = 8 * 1024 * 1024;
/** Failed attempts per connection before it is dropped (OpenSSH's MaxAuthTries). */
const MAX_ATTEMPTS_PER_CONNECTION = 6;
/**
 * How often spool files are swept, and the least age at which one goes: far above
 * SPOOL_HEARTBEAT_MS, the rate at which every process keeps the ones it writes young.
 */
const SPOOL_SWEEP_INTERVAL_MS = 3600_000;
/** The software name in the server's SSH identification line (SSH-2.0-rosterd). */
const IDENT = 'rosterd';

export function createSftpServer(deps: SftpDeps): SftpServer {
  const { config, logger, clock } = deps;
  const log = logger.child({ component: 'sftp' });
  const events = new EventEmitter<SftpEvents>();
  const emit = <K extends keyof SftpEvents>(name: K, ...args: SftpEvents[K]) => {
    try {
      (events.emit as (n: K, ...a: SftpEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      log.warn({ err: toError(err), event: name }, 'an SFTP event listener threw');
    }
  };
  const blocklist = new Blocklist({ maxFailures: config.SFTP_MAX_AUTH_FAILURES, windowMs: config.SFTP_BLOCK_SECONDS * 1000, clock });
  const hashes = new HashCache();
  const limits = {
    pendingLogins: new KeyedLimit(MAX_PENDING_LOGINS_PER_ADDRESS, MAX_PENDING_LOGINS),
    tenantConnections: new KeyedLimit(MAX_CONNECTIONS_PER_TENANT),
    tenantUploads: new KeyedLimit(MAX_UPLOADS_PER_TENANT),
  };
  // A flood is logged once a minute, with how many were refused since the last line.
  let pendingRefused = 0;
  let pendingRefusedLoggedAt = -Infinity;
  const refusePending = (remoteAddress: string) => {
    pendingRefused++;
    if (performance.now() - pendingRefusedLoggedAt < 60_000) return;
    log.warn(
      { event: 'login.connection_refused', remoteAddress, reason: 'too-many-pending-logins', refused: pendingRefused },
      `SFTP connection refused: too many connections not logged in yet (at most ${MAX_PENDING_LOGINS_PER_ADDRESS} per address, ` +
        `${MAX_PENDING_LOGINS} in all)`,
    );
    pendingRefused = 0;
    pendingRefusedLoggedAt = performance.now();
  };
  /** Blocked connections being told so (refuse-early.ts), each for at most a second. */
  let refusingEarly = 0;
  const connections = new Set<Connection>();
  const byPeer = new Map<string, Connection>();
  const spool = spoolDir(config.DATA_DIR);
  let hostKeys: HostKeyInfo[] = [];
  let tcp: net.Server | null = null;
  let sweepTimer: NodeJS.Timeout | null = null;
  let closing: Promise<void> | null = null;
  let listening: Promise<{ host: string; port: number }> | null = null;

  const sweep = () =>
    Promise.all([
      sweepSpool(spool, Math.max(2 * config.SFTP_IDLE_TIMEOUT_SECONDS * 1000, SPOOL_SWEEP_INTERVAL_MS), clock.now().getTime())
        .then((n) => n > 0 && log.info({ removed: n }, 'removed spool files of cut-off transfers'))
        .catch((err: unknown) => log.warn({ err: toError(err) }, 'spool sweep failed')),
      sweepTempFiles(path.join(config.DATA_DIR, 'sftp'), TEMP_FILE_MAX_AGE_MS, clock.now().getTime())
        .then(
          (files) =>
            files.length > 0 && log.info({ event: 'sftp.temp_files_removed', files }, 'removed temporary files left unrenamed for a day'),
        )
        .catch((err: unknown) => log.warn({ err: toError(err) }, 'temporary file sweep failed')),
    ]);

  async function start(): Promise<{ host: string; port: number }> {
    const pairs = await loadOrCreateHostKeyPairs(config.DATA_DIR);
    hostKeys = pairs.map((p) => p.info);
    for (const k of hostKeys) log.info({ type: k.type, bits: k.bits, fingerprint: k.fingerprint }, 'SFTP host key');
    await fs.mkdir(path.join(config.DATA_DIR, 'sftp'), { recursive: true, mode: 0o700 });
    await fs.mkdir(spool, { recursive: true, mode: 0o700 });
    await sweep();
    sweepTimer = setInterval(() => void sweep(), SPOOL_SWEEP_INTERVAL_MS).unref();

    const ssh = new ssh2.Server({
      hostKeys: pairs.map((p) => p.privateKey),
      ident: IDENT,
      ...(config.SFTP_ALGORITHMS === 'modern' ? { algorithms: MODERN_ALGORITHMS } : {}),
    });
    ssh.on('error', (err: Error) => log.warn({ err }, 'SFTP server error'));
    ssh.on('connection', (client, info) => {
      const conn = byPeer.get(`${info.ip}:${info.port}`);
      if (conn === undefined) {
        client.on('error', () => undefined);
        client.end();
        return;
      }
      conn.attach(client);
    });

    const server = net.createServer({ noDelay: true }, (socket) => {
      // Nagle's algorithm holds back the small SFTP status packets: transfers crawl without this.
      socket.setNoDelay(true);
      const remoteAddress = (socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
      const peer = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
      if (closing !== null) return void socket.destroy();
      const blockedUntil = blocklist.blockedUntil(remoteAddress);
      if (blockedUntil !== null) {
        log.info(
          { event: 'login.connection_refused', remoteAddress, reason: 'address-blocked' },
          'SFTP connection refused: address blocked',
        );
        // Told why, or a district that has just mended its key sees "Connection reset" for
        // SFTP_BLOCK_SECONDS and looks for a firewall. Beyond a bound (a flood), closed bare.
        if (refusingEarly >= MAX_PENDING_LOGINS) return void socket.destroy();
        refusingEarly++;
        socket.once('close', () => refusingEarly--);
        refuseBeforeHandshake(socket, IDENT, blockedMessage(remoteAddress, blockedUntil, clock.now()));
        return;
      }
      const pendingLogin = limits.pendingLogins.tryAcquire(remoteAddress);
      if (pendingLogin === null) {
        refusePending(remoteAddress);
        socket.destroy();
        return;
      }
      const conn = new Connection({
        socket,
        remoteAddress,
        config,
        clock,
        pool: deps.pool,
        logger: log.child({ remoteAddress }),
        blocklist,
        hashes,
        spoolDir: spool,
        inFlightCapBytes: IN_FLIGHT_CAP_BYTES,
        maxAttempts: MAX_ATTEMPTS_PER_CONNECTION,
        isClosing: () => closing !== null,
        emit,
        pendingLogin,
        tenantConnections: limits.tenantConnections,
        tenantUploads: limits.tenantUploads,
      });
      connections.add(conn);
      byPeer.set(peer, conn);
      void conn.closed.then(() => {
        connections.delete(conn);
        byPeer.delete(peer);
      });
      ssh.injectSocket(socket);
      coalesceReplies(socket);
    });
    server.on('error', (err) => log.error({ err }, 'SFTP listener error'));
    tcp = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, config.SFTP_HOST, config.SFTP_PORT));
      server.once('error', onError);
      server.listen(config.SFTP_PORT, config.SFTP_HOST, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    log.info({ host: address.address, port: address.port }, 'SFTP server listening');
    return { host: address.address, port: address.port };
  }

  async function stop(graceMs: number): Promise<void> {
    if (sweepTimer) clearInterval(sweepTimer);
    if (listening) await listening.catch(() => undefined);
    const stopped = tcp ? new Promise<void>((resolve) => tcp?.close(() => resolve())) : Promise.resolve();
    for (const conn of connections) conn.endWhenIdle('the server is shutting down');
    const allClosed = () => Promise.all([...connections].map((c) => c.closed));
    if (connections.size > 0) {
      log.info({ connections: connections.size, graceMs }, 'SFTP server stopping: waiting for uploads in flight');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([allClosed(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const conn of connections) conn.destroy('the shutdown grace period is over');
      await allClosed();
    }
    await stopped;
    log.info('SFTP server stopped');
  }

  return {
    listen() {
      if (closing) return Promise.reject(new Error('the SFTP server is closed'));
      listening ??= start();
      return listening;
    },
    close(graceMs = config.SHUTDOWN_GRACE_SECONDS * 1000) {
      closing ??= stop(graceMs);
      return closing;
    },
    get hostKeys() {
      return hostKeys;
    },
    events,
    get connectionCount() {
      return connections.size;
    },
  };
}

/**
 * What a blocked address is told: its own address, until when, and what to check. Nothing about
 * the tenant or the key (an unknown user and a wrong key are told alike).
 */
export function blockedMessage(remoteAddress: string, until: Date, now: Date): string {
  const minutes = Math.max(1, Math.ceil((until.getTime() - now.getTime()) / 60_000));
  // Rounded up: a district that comes back at the minute named is let in.
  const at = new Date(Math.ceil(until.getTime() / 60_000) * 60_000).toISOString().slice(0, 16).replace('T', ' ');
  return (
    `too many failed logins from ${remoteAddress}: this address may not connect until ${at} UTC (in about ${minutes} ` +
    `minute${minutes === 1 ? '' : 's'}). Meanwhile check the username (the district's subdomain) and that the ` +
    'private key is the one whose public key was registered with rosterd.'
  );
}

/**
 * Replies produced while ssh2 handles one chunk of incoming data (the acknowledgements of the
 * WRITEs in it) leave in one system call instead of one each. Registered after injectSocket: ssh2
 * has paused the socket by then (adding a listener does not resume it) and adds its own 'data'
 * listener later, so this one runs first for every chunk.
 */
function coalesceReplies(socket: net.Socket): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.on('data', () => {
    if (corked) return;
    corked = true;
    socket.cork();
    process.nextTick(uncork);
  });
}

/** A listen failure as the operator must act on it: which variable, and what to do. */
function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const where = `${host}:${port}`;
  const message =
    err.code === 'EADDRINUSE'
      ? `SFTP_PORT ${where} is already in use (another rosterd, or an sshd?); stop what uses it or set SFTP_PORT to a free port`
      : err.code === 'EACCES'
        ? `SFTP_PORT ${port} needs privileges this process lacks (ports below 1024 do); use a port of 1024 or more and forward to it`
        : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' || err.code === 'EADDRNOTAVAIL'
          ? `SFTP_HOST ${host} is not an address of this machine (${err.code}); set it to one of its addresses, or 0.0.0.0 for all`
          : `cannot listen for SFTP on ${where} (${err.message}); check SFTP_HOST and SFTP_PORT`;
  return new RosterdError('LISTEN_FAILED', message, { cause: err });
}
