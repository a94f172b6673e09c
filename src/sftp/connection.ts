import { promises as fs } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { AcceptSftpConnection, Connection as SshConnection, RejectConnection, SFTPWrapper } from 'ssh2';
import type { Config } from '../config/config.js';
import { toError } from '../errors.js';
import type { Clock, Logger } from '../types.js';
import { ConnectionAuth, type Login } from './auth.js';
import { Backpressure } from './backpressure.js';
import type { Blocklist } from './blocklist.js';
import type { HashCache } from './hash-cache.js';
import { MAX_CONNECTIONS_PER_TENANT, MAX_SESSIONS_PER_CONNECTION, type KeyedLimit, type Release } from './limits.js';
import { assembleWholePackets } from './packet-assembler.js';
import { refuseShellAndExec } from './not-sftp.js';
import { accessWithdrawn } from './receipt.js';
import type { SftpEvents } from './server.js';
import { SftpSession, type SessionContext } from './session.js';

export interface ConnectionDeps {
  socket: net.Socket;
  remoteAddress: string;
  config: Config;
  clock: Clock;
  pool: pg.Pool;
  logger: Logger;
  blocklist: Blocklist;
  hashes: HashCache;
  spoolDir: string;
  inFlightCapBytes: number;
  maxAttempts: number;
  isClosing(): boolean;
  emit<K extends keyof SftpEvents>(name: K, ...args: SftpEvents[K]): void;
  /** This connection's place among those not logged in yet (limits.ts), given back at login or close. */
  pendingLogin: Release;
  /** Logged-in connections and open uploads per tenant, shared by every connection. */
  tenantConnections: KeyedLimit;
  tenantUploads: KeyedLimit;
}

/** ssh2 internals needed to end an SFTP channel the way OpenSSH clients wait for. */
interface ChannelInternals {
  outgoing: { id: number; state: string };
  _protocol: { exitStatus(chan: number, status: number): void; channelEOF(chan: number): void };
}

/** How long a peer gets to close its side after we end the connection. */
const END_LINGER_MS = 2000;
/**
 * While shutting down, how long after its last upload finished a client may end the session
 * itself. Disconnecting at once loses the CLOSE status just sent: OpenSSH's ssh exits on a
 * disconnect without handing buffered replies to sftp, so the SIS would see a failed upload
 * that was in fact received. The server's grace period still bounds the whole wait.
 */
const END_AFTER_LAST_UPLOAD_MS = 1500;
/** A session refused for a revoked key or a suspended tenant ends this long after its refusal. */
const ACCESS_WITHDRAWN_LINGER_MS = 100;

/**
 * One TCP connection from accept to close: the login deadline, authentication, the tenant's SFTP
 * sessions, the idle timeout, backpressure. Everything that can go wrong on it (socket errors,
 * protocol errors, a client that drops mid-transfer) ends here, never beyond: one connection's
 * failure does not touch another's.
 */
export class Connection {
  /** Resolves once the connection is closed and its sessions cleaned up. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private client: SshConnection | null = null;
  private login: (Login & { root: string }) | null = null;
  private loginAt = 0;
  private readonly sessions = new Set<SftpSession>();
  /** SSH session channels open on this connection (at most MAX_SESSIONS_PER_CONNECTION). */
  private channels = 0;
  /** This connection's place among its tenant's (MAX_CONNECTIONS_PER_TENANT). */
  private tenantSlot: Release | null = null;
  private readonly auth: ConnectionAuth;
  private readonly backpressure: Backpressure;
  private loginTimer: NodeJS.Timeout | null;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastActivity = performance.now();
  private endReason: string | null = null;
  private endTimer: NodeJS.Timeout | null = null;
  private ending = false;
  private cleanedUp = false;

  constructor(private readonly deps: ConnectionDeps) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    const { socket, config } = deps;
    this.backpressure = new Backpressure(socket, deps.inFlightCapBytes);
    this.auth = new ConnectionAuth(
      {
        pool: deps.pool,
        logger: deps.logger,
        clock: deps.clock,
        blocklist: deps.blocklist,
        maxAttempts: deps.maxAttempts,
        refuseSha1: config.SFTP_ALGORITHMS === 'modern',
        failed: (failure) => deps.emit('authFailed', failure),
      },
      deps.remoteAddress,
      {
        disconnect: () => this.end('too many failed logins'),
        loggedIn: async (login) => {
          const root = path.join(deps.config.DATA_DIR, 'sftp', login.tenant);
          await fs.mkdir(root, { recursive: true, mode: 0o700 });
          this.login ??= { ...login, root };
        },
      },
    );
    socket.on('error', (err: NodeJS.ErrnoException) => deps.logger.debug({ code: err.code, error: err.message }, 'SFTP socket error'));
    socket.once('close', () => void this.cleanup());
    this.loginTimer = setTimeout(() => {
      this.loginTimer = null;
      if (this.login !== null) return;
      this.auth.timedOut();
      this.destroy('no login within SFTP_LOGIN_TIMEOUT_SECONDS');
    }, config.SFTP_LOGIN_TIMEOUT_SECONDS * 1000);
  }

  /** ssh2 has read the client's identification: from here on, the SSH side is ssh2's. */
  attach(client: SshConnection): void {
    this.client = client;
    const log = this.deps.logger;
    client.on('error', (err: Error & { level?: string; code?: unknown }) => {
      // A client that drops TCP (curl does at the end), a protocol error, a reset: this
      // connection ends, nothing else does.
      log.debug({ error: err.message, sshLevel: err.level, code: err.code }, 'SFTP connection error');
    });
    client.on('close', () => void this.cleanup());
    client.on('authentication', (ctx) => {
      this.touch();
      this.auth.handle(ctx).catch((err: unknown) => {
        log.error({ err: toError(err) }, 'SFTP authentication failed unexpectedly');
        try {
          ctx.reject(['publickey']);
        } catch {
          // connection gone
        }
      });
    });
    client.on('handshake', (negotiated) => {
      log.debug(
        {
          kex: negotiated.kex,
          hostKey: negotiated.serverHostKey,
          cipher: negotiated.cs.cipher,
          mac: negotiated.cs.mac,
          compress: negotiated.cs.compress,
        },
        'SSH handshake',
      );
      // ssh2 offers the RSA host key with SHA-1 (ssh-rsa) even when told not to, after the SHA-2
      // names: only a client that knows nothing better picks it, and under SFTP_ALGORITHMS=modern
      // it gets no further than the handshake.
      if (this.deps.config.SFTP_ALGORITHMS === 'modern' && negotiated.serverHostKey === 'ssh-rsa') {
        log.warn({ event: 'sftp.sha1_host_key_refused' }, 'SFTP client refused: it accepts only SHA-1 host key signatures (ssh-rsa)');
        this.end('the client accepts only SHA-1 host key signatures (SFTP_ALGORITHMS=modern)');
      }
    });
    client.on('ready', () => this.onReady());
    client.on('session', (accept, reject) => {
      if (this.channels >= MAX_SESSIONS_PER_CONNECTION) {
        log.warn(
          { event: 'sftp.session_refused', tenant: this.login?.tenant },
          `session refused: at most ${MAX_SESSIONS_PER_CONNECTION} per connection`,
        );
        return reject();
      }
      this.channels++;
      const session = accept();
      session.once('close', () => this.channels--);
      // Only the sftp subsystem is served (OpenSSH 9 scp uses it too); a shell or a command is
      // answered with what to use instead (not-sftp.ts), other subsystems refused by ssh2.
      session.on('sftp', (acceptSftp, rejectSftp) => this.startSftp(acceptSftp, rejectSftp));
      const login = this.login;
      if (login !== null) refuseShellAndExec(session, { tenant: login.tenant, keyFingerprint: login.fingerprint, logger: log });
    });
  }

  /** Ends the connection now if no upload is in progress, else as soon as the last one is done. */
  endWhenIdle(reason: string): void {
    this.endReason = reason;
    if (this.activeUploads() === 0) this.end(reason);
  }

  /** Ends the connection at once; uploads not yet closed are discarded. */
  destroy(reason: string): void {
    if (!this.deps.socket.destroyed) this.deps.logger.info({ reason }, 'SFTP connection ended');
    for (const s of this.sessions) void s.abort(reason);
    this.deps.socket.destroy();
  }

  private end(reason: string): void {
    if (this.ending) return;
    this.ending = true;
    this.deps.logger.info({ reason, tenant: this.login?.tenant }, 'SFTP connection ending');
    try {
      if (this.client) this.client.end();
      else this.deps.socket.end();
    } catch {
      // already gone
    }
    setTimeout(() => this.deps.socket.destroy(), END_LINGER_MS).unref();
  }

  private endAfterLastUpload(): void {
    if (this.endTimer !== null) return;
    this.endTimer = setTimeout(() => {
      this.endTimer = null;
      if (this.activeUploads() === 0) this.end(this.endReason ?? 'the server is shutting down');
    }, END_AFTER_LAST_UPLOAD_MS);
    this.endTimer.unref();
  }

  private onReady(): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.deps.pendingLogin();
    const login = this.login;
    if (login === null) return void this.destroy('authenticated without a login'); // cannot happen
    this.tenantSlot = this.deps.tenantConnections.tryAcquire(login.tenant);
    if (this.tenantSlot === null) {
      this.deps.logger.warn(
        { event: 'login.connection_refused', tenant: login.tenant, reason: 'too-many-tenant-connections' },
        `SFTP connection ended at login: the district already has ${MAX_CONNECTIONS_PER_TENANT} connections open`,
      );
      return void this.end(`the district already has ${MAX_CONNECTIONS_PER_TENANT} connections open`);
    }
    this.loginAt = performance.now();
    this.deps.emit('sessionOpened', { tenant: login.tenant, remoteAddress: this.deps.remoteAddress });
    if (this.deps.isClosing()) this.endWhenIdle('the server is shutting down');
    this.scheduleIdleCheck(this.deps.config.SFTP_IDLE_TIMEOUT_SECONDS * 1000);
  }

  private scheduleIdleCheck(delayMs: number): void {
    const idleMs = this.deps.config.SFTP_IDLE_TIMEOUT_SECONDS * 1000;
    if (idleMs === 0 || this.cleanedUp) return;
    this.idleTimer = setTimeout(() => {
      const idleFor = performance.now() - this.lastActivity;
      if (idleFor >= idleMs && this.backpressure.inFlight === 0) {
        this.end(`idle for ${this.deps.config.SFTP_IDLE_TIMEOUT_SECONDS} s (SFTP_IDLE_TIMEOUT_SECONDS)`);
      } else if (idleFor >= idleMs) {
        // Bytes still in flight: written ones land soon, partly filled buffers are sent now.
        this.backpressure.flushPartial();
        this.scheduleIdleCheck(1000);
      } else {
        this.scheduleIdleCheck(Math.max(1000, idleMs - idleFor));
      }
    }, delayMs);
    this.idleTimer.unref();
  }

  private touch(): void {
    this.lastActivity = performance.now();
  }

  private activeUploads(): number {
    let n = 0;
    for (const s of this.sessions) n += s.activeUploads;
    return n;
  }

  /** Accepted synchronously: the client's first SFTP packet may already be in the same segment. */
  private startSftp(acceptSftp: AcceptSftpConnection, rejectSftp: RejectConnection): void {
    const login = this.login;
    if (login === null || this.ending || this.cleanedUp) return rejectSftp();
    const sftp = acceptSftp();
    assembleWholePackets(sftp);
    const session = new SftpSession(this.sessionContext(login, login.root), sftp);
    this.sessions.add(session);
    sftp.on('error', (err: Error) => this.deps.logger.debug({ error: err.message }, 'SFTP channel error'));
    sftp.on('end', () => void this.endChannel(sftp, session));
    sftp.on('close', () => {
      void session.abort('the channel was closed').finally(() => this.sessions.delete(session));
    });
  }

  /**
   * The client sent EOF on the SFTP channel: finish what it closed, drop what it did not, and
   * answer with exit-status, EOF and CLOSE (ssh2 does not; `sftp -b` and `scp` wait for them).
   */
  private async endChannel(sftp: SFTPWrapper, session: SftpSession): Promise<void> {
    await session.drain();
    await session.abort('the client ended the session');
    const ch = sftp as unknown as ChannelInternals;
    try {
      if (ch.outgoing.state === 'open') {
        ch._protocol.exitStatus(ch.outgoing.id, 0);
        ch._protocol.channelEOF(ch.outgoing.id);
        ch.outgoing.state = 'eof';
      }
      sftp.end();
    } catch {
      // connection already gone
    }
  }

  private sessionContext(login: Login, root: string): SessionContext {
    const { config, logger } = this.deps;
    return {
      tenant: login.tenant,
      root,
      spoolDir: this.deps.spoolDir,
      keyFingerprint: login.fingerprint,
      remoteAddress: this.deps.remoteAddress,
      maxUploadBytes: config.MAX_UPLOAD_BYTES,
      logger: logger.child({ tenant: login.tenant }),
      receipts: { dataDir: config.DATA_DIR, pool: this.deps.pool, clock: this.deps.clock, logger },
      hashes: this.deps.hashes,
      backpressure: this.backpressure,
      touch: () => this.touch(),
      uploadsChanged: () => {
        if (this.endReason !== null && this.activeUploads() === 0) this.endAfterLastUpload();
      },
      received: (info) => this.deps.emit('uploadReceived', info),
      uploadFailed: (info) => this.deps.emit('uploadFailed', info),
      accessWithdrawn: () => accessWithdrawn(this.deps.pool, login.tenant, login.fingerprint),
      uploadSlot: () => this.deps.tenantUploads.tryAcquire(login.tenant),
      // After the refusal's reply has gone out (replies are sent in order, on later turns).
      endConnection: (reason) => void setTimeout(() => this.end(reason), ACCESS_WITHDRAWN_LINGER_MS).unref(),
    };
  }

  private async cleanup(): Promise<void> {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    this.deps.pendingLogin();
    this.tenantSlot?.();
    this.auth.closed();
    if (this.loginTimer) clearTimeout(this.loginTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.endTimer) clearTimeout(this.endTimer);
    this.backpressure.release(0);
    try {
      await Promise.all([...this.sessions].map((s) => s.abort('the connection was lost')));
    } catch (err) {
      this.deps.logger.warn({ err: toError(err) }, 'SFTP session cleanup failed');
    }
    if (this.login !== null && this.tenantSlot !== null) {
      this.deps.emit('sessionClosed', {
        tenant: this.login.tenant,
        remoteAddress: this.deps.remoteAddress,
        durationMs: Math.round(performance.now() - this.loginAt),
      });
    }
    this.resolveClosed();
  }
}
