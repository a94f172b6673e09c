import { timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import ssh2, { type AuthContext, type AuthenticationType } from 'ssh2';
import { toError } from '../errors.js';
import { findLoginKeys, keyStanding, touchKeyLastUsed, type KeyStanding, type LoginKey } from '../store/keys.js';
import type { Clock, Logger } from '../types.js';
import type { Blocklist } from './blocklist.js';
import { fingerprintOfBlob } from './public-key.js';

const { utils } = ssh2;

/** Why a login failed, as logs and metrics see it. Clients see the same failure every time. */
export type AuthFailureReason =
  | 'method-not-allowed'
  | 'invalid-username'
  | 'unknown-tenant'
  | 'tenant-suspended'
  | 'key-revoked'
  | 'key-not-registered'
  | 'bad-signature'
  | 'sha1-signature'
  | 'address-blocked'
  | 'too-many-attempts'
  | 'login-timeout'
  | 'internal-error';

export interface AuthFailure {
  reason: AuthFailureReason;
  remoteAddress: string;
  username: string | null;
  fingerprint: string | null;
  method: string | null;
}

export interface AuthDeps {
  pool: pg.Pool;
  logger: Logger;
  clock: Clock;
  blocklist: Blocklist;
  /** Failed attempts one connection may make before it is disconnected (OpenSSH's MaxAuthTries). */
  maxAttempts: number;
  /** SFTP_ALGORITHMS=modern: RSA keys must sign with SHA-2 (rsa-sha2-256/512), not SHA-1 (ssh-rsa). */
  refuseSha1: boolean;
  failed(failure: AuthFailure): void;
}

export interface Login {
  tenant: string;
  fingerprint: string;
}

const SUBDOMAIN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** The only method we offer: clients never fall back to a password prompt. */
const METHODS: AuthenticationType[] = ['publickey'];

/**
 * Public-key authentication of one connection (PRODUCT.md §2). ssh2 verifies nothing itself: the
 * offered key is compared with the tenant's registered keys in constant time, a key query (no
 * signature) is answered only for a registered key, and a login succeeds only when the signature
 * over the session verifies with that key. Unknown user, suspended tenant, revoked key and wrong
 * key all fail the same way.
 */
export class ConnectionAuth {
  private failures = 0;
  /** The connection is being ended (too many failures, or a blocked address). */
  private ending = false;
  private loggedIn = false;
  /**
   * Key queries refused on this connection, not yet counted against the address. A client
   * offers every key it has (agent, default identities) before the right one: counted one by
   * one, a district's nightly logins through one NAT address would get it blocked. They count as
   * one failure, and only if the connection never logs in (see closed).
   */
  private queriesRefused = 0;

  constructor(
    private readonly deps: AuthDeps,
    private readonly remoteAddress: string,
    private readonly on: {
      /** Ends the connection (too many failures, or the address is now blocked). */
      disconnect(): void;
      /**
       * The login succeeded: prepare the session (the tenant's folder). Called before ssh2 is told,
       * because ssh2 emits 'ready' at once and the client's first SFTP packet may follow in the
       * same TCP segment.
       */
      loggedIn(login: Login): Promise<void>;
    },
  ) {}

  /** Answers one authentication request; resolves to the login when it succeeded. */
  async handle(ctx: AuthContext): Promise<Login | null> {
    if (this.ending) {
      // An attempt the client sent before it was cut off: neither logged nor counted again.
      ctx.reject(METHODS);
      return null;
    }
    const username = ctx.username.slice(0, 100);
    if (this.deps.blocklist.isBlocked(this.remoteAddress)) {
      this.fail(ctx, { reason: 'address-blocked', username, fingerprint: null, method: ctx.method });
      this.disconnect();
      return null;
    }
    if (ctx.method === 'none') {
      ctx.reject(METHODS); // every client asks first; not an attempt
      return null;
    }
    if (ctx.method !== 'publickey') {
      this.fail(ctx, { reason: 'method-not-allowed', username, fingerprint: null, method: ctx.method });
      return null;
    }
    const offered = ctx.key.data;
    const fingerprint = fingerprintOfBlob(offered);
    const failure = { username, fingerprint, method: ctx.method };
    let keys: LoginKey[] = [];
    if (SUBDOMAIN.test(username)) {
      try {
        keys = await findLoginKeys(this.deps.pool, username);
      } catch (err) {
        this.deps.logger.error({ err: toError(err) }, 'SFTP login check failed: database unavailable');
        this.fail(ctx, { ...failure, reason: 'internal-error' }, false);
        return null;
      }
    } else {
      this.fail(ctx, { ...failure, reason: 'invalid-username' });
      return null;
    }
    // ssh2 gives no hash algorithm for an RSA key used as "ssh-rsa", whose signatures are SHA-1.
    if (this.deps.refuseSha1 && ctx.key.algo === 'ssh-rsa' && ctx.hashAlgo === undefined) {
      this.fail(ctx, { ...failure, reason: 'sha1-signature' });
      return null;
    }
    const match = findMatchingKey(keys, offered);
    if (match === null) {
      const query = ctx.signature === undefined;
      if (query) this.queriesRefused++;
      this.fail(ctx, { ...failure, reason: await this.whyNoKey(username, fingerprint) }, true, !query);
      return null;
    }
    if (ctx.signature === undefined || ctx.blob === undefined) {
      ctx.accept(); // "this key would do": the client signs next
      return null;
    }
    if (!verifySignature(offered, ctx.key.algo, ctx.blob, ctx.signature, ctx.hashAlgo)) {
      this.fail(ctx, { ...failure, reason: 'bad-signature' });
      return null;
    }
    const login = { tenant: username, fingerprint: match.fingerprint };
    this.deps.logger.info(
      {
        event: 'login.accepted',
        tenant: username,
        fingerprint: match.fingerprint,
        algorithm: signatureAlgorithm(ctx.key.algo, ctx.hashAlgo),
      },
      'SFTP login accepted',
    );
    try {
      await this.on.loggedIn(login);
    } catch (err) {
      this.deps.logger.error({ err: toError(err), tenant: username }, "cannot prepare the tenant's SFTP folder");
      this.fail(ctx, { ...failure, reason: 'internal-error' }, false);
      return null;
    }
    ctx.accept();
    this.loggedIn = true;
    touchKeyLastUsed(this.deps.pool, match.fingerprint, this.deps.clock.now()).catch((err: unknown) =>
      this.deps.logger.warn({ err: toError(err), fingerprint: match.fingerprint }, "could not record the key's last use"),
    );
    return login;
  }

  /**
   * For the operator's log and metrics only (the client is told the same either way): why no
   * usable key matched. A suspended tenant or a revoked key is worth telling from a stranger.
   */
  private async whyNoKey(username: string, fingerprint: string): Promise<AuthFailureReason> {
    let standing: KeyStanding;
    try {
      standing = await keyStanding(this.deps.pool, username, fingerprint);
    } catch {
      return 'key-not-registered';
    }
    return standing === 'unknown-tenant' || standing === 'tenant-suspended' || standing === 'key-revoked' ? standing : 'key-not-registered';
  }

  /**
   * Called by the server when the client did not log in within SFTP_LOGIN_TIMEOUT_SECONDS. It
   * counts toward the address's block: an address that keeps connections open without logging in
   * is holding places other clients need (limits.ts). Its refused key queries count with it, once.
   */
  timedOut(): void {
    this.report({ reason: 'login-timeout', username: null, fingerprint: null, method: null });
    this.queriesRefused = 0;
    this.recordAgainstAddress();
  }

  /** The connection is gone: refused key queries of a connection that never logged in count once. */
  closed(): void {
    if (this.loggedIn || this.queriesRefused === 0) return;
    this.queriesRefused = 0;
    this.recordAgainstAddress();
  }

  /**
   * `counts`: toward this connection's attempts (MaxAuthTries); `againstAddress`: toward the
   * address's block at once (a key query waits for the connection's end, see queriesRefused).
   */
  private fail(ctx: AuthContext, f: Omit<AuthFailure, 'remoteAddress'>, counts = true, againstAddress = counts): void {
    ctx.reject(METHODS);
    this.report(f);
    if (!counts || f.reason === 'address-blocked') return;
    this.failures++;
    const blocked = againstAddress && this.recordAgainstAddress();
    if (blocked || this.failures >= this.deps.maxAttempts) {
      if (!blocked) this.report({ ...f, reason: 'too-many-attempts' });
      if (!blocked && this.queriesRefused > 0) this.closed(); // cut off: it will not log in now
      this.disconnect();
    }
  }

  private recordAgainstAddress(): boolean {
    const blocked = this.deps.blocklist.recordFailure(this.remoteAddress);
    if (blocked) this.deps.logger.warn({ event: 'login.address_blocked' }, 'address blocked after repeated login failures');
    return blocked;
  }

  private disconnect(): void {
    this.ending = true;
    this.on.disconnect();
  }

  private report(f: Omit<AuthFailure, 'remoteAddress'>): void {
    const failure: AuthFailure = { ...f, remoteAddress: this.remoteAddress };
    // The connection's logger carries remoteAddress already.
    this.deps.logger.warn({ event: 'login.refused', ...f }, 'SFTP login refused');
    this.deps.failed(failure);
  }
}

/** The registered key equal to the offered blob; every key is compared, in constant time. */
export function findMatchingKey(keys: readonly LoginKey[], offered: Buffer): LoginKey | null {
  let found: LoginKey | null = null;
  for (const key of keys) {
    const same = key.blob.length === offered.length && timingSafeEqual(key.blob, offered);
    if (same && found === null) found = key;
  }
  return found;
}

/** The signature algorithm as SSH names it: an RSA key signs as ssh-rsa (SHA-1), rsa-sha2-256 or rsa-sha2-512. */
function signatureAlgorithm(keyAlgo: string, hashAlgo: string | undefined): string {
  if (keyAlgo !== 'ssh-rsa') return keyAlgo;
  return hashAlgo === undefined ? 'ssh-rsa' : `rsa-sha2-${hashAlgo.replace(/^sha/, '')}`;
}

/** True only for a signature that verifies: ssh2's verify may return an Error, which is truthy. */
export function verifySignature(blob: Buffer, algo: string, data: Buffer, signature: Buffer, hashAlgo: string | undefined): boolean {
  const parsed = utils.parseKey(blob);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error || key.isPrivateKey() || key.type !== algo) return false;
  try {
    return key.verify(data, signature, hashAlgo) === true;
  } catch {
    return false;
  }
}
