/**
 * What one address or one district may hold open at once. Each open connection, upload and
 * session costs a file descriptor and memory; without a bound, one client could use up the
 * process's descriptors and every other district's upload would fail (EMFILE). The bounds are far
 * above what a SIS does (one connection, one or two files), and near OpenSSH's own defaults.
 */

/** Connections not yet logged in, from one address (OpenSSH's MaxStartups starts dropping at 10). */
export const MAX_PENDING_LOGINS_PER_ADDRESS = 10;
/** Connections not yet logged in, in all (MaxStartups refuses every new one at 100). */
export const MAX_PENDING_LOGINS = 100;
/** Logged-in connections of one district. */
export const MAX_CONNECTIONS_PER_TENANT = 32;
/** SFTP sessions (channels) on one connection (OpenSSH's MaxSessions). */
export const MAX_SESSIONS_PER_CONNECTION = 10;
/** Files one district uploads at once, over all its connections and sessions. */
export const MAX_UPLOADS_PER_TENANT = 64;

/** Gives back what tryAcquire took; a second call does nothing. */
export type Release = () => void;

/** Counts what each key holds, up to `perKey` each and `total` in all. */
export class KeyedLimit {
  private readonly held = new Map<string, number>();
  private all = 0;

  constructor(
    readonly perKey: number,
    readonly total = Infinity,
  ) {}

  /** One more for `key`, or null if that would pass a bound. */
  tryAcquire(key: string): Release | null {
    const n = this.held.get(key) ?? 0;
    if (n >= this.perKey || this.all >= this.total) return null;
    this.held.set(key, n + 1);
    this.all++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.all--;
      const left = (this.held.get(key) ?? 1) - 1;
      if (left === 0) this.held.delete(key);
      else this.held.set(key, left);
    };
  }

  /** What `key` holds now. */
  count(key: string): number {
    return this.held.get(key) ?? 0;
  }
}
