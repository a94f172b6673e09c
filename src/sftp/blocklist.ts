import type { Clock } from '../types.js';

export interface BlocklistOptions {
  /** Failures within `windowMs` after which the address is blocked. */
  maxFailures: number;
  /** How long failures are remembered, and how long a block lasts. */
  windowMs: number;
  clock: Clock;
  /** Addresses remembered at most; the oldest are forgotten first (bounds memory under a scan). */
  maxAddresses?: number;
}

interface Entry {
  failures: number[];
  blockedUntil: number;
}

/**
 * Remembers failed logins per remote address and blocks an address that fails too often
 * (PRODUCT.md §2: "an address with many failures is blocked for a while"). In memory, per process.
 */
export class Blocklist {
  private readonly entries = new Map<string, Entry>();
  private readonly maxAddresses: number;

  constructor(private readonly options: BlocklistOptions) {
    this.maxAddresses = options.maxAddresses ?? 100_000;
  }

  isBlocked(address: string): boolean {
    return this.blockedUntil(address) !== null;
  }

  /** When the address's block ends, or null if it is not blocked. */
  blockedUntil(address: string): Date | null {
    const entry = this.entries.get(address);
    return entry !== undefined && entry.blockedUntil > this.options.clock.now().getTime() ? new Date(entry.blockedUntil) : null;
  }

  /** Records a failure; returns true if the address is now blocked. */
  recordFailure(address: string): boolean {
    const now = this.options.clock.now().getTime();
    let entry = this.entries.get(address);
    if (entry === undefined) {
      if (this.entries.size >= this.maxAddresses) this.forgetOldest(now);
      entry = { failures: [], blockedUntil: 0 };
      this.entries.set(address, entry);
    }
    const since = now - this.options.windowMs;
    entry.failures = entry.failures.filter((t) => t > since);
    entry.failures.push(now);
    if (entry.failures.length >= this.options.maxFailures && entry.blockedUntil <= now) {
      entry.blockedUntil = now + this.options.windowMs;
      entry.failures = [];
      return true;
    }
    return entry.blockedUntil > now;
  }

  private forgetOldest(now: number): void {
    for (const [address, entry] of this.entries) {
      const last = entry.failures.at(-1) ?? 0;
      if (entry.blockedUntil <= now && last <= now - this.options.windowMs) this.entries.delete(address);
    }
    if (this.entries.size >= this.maxAddresses) {
      const first = this.entries.keys().next();
      if (first.done !== true) this.entries.delete(first.value);
    }
  }
}
