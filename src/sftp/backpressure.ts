/** What Backpressure needs of a socket. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/**
 * ssh2 parses incoming WRITE requests as fast as the socket delivers them and keeps no limit on
 * writes waiting for the disk, so a fast client could fill memory with them. This counts the bytes
 * of one connection's writes not yet on disk and stops reading its socket above `capBytes` (TCP
 * then slows the client down), resuming once half of them have landed.
 */
export class Backpressure {
  private bytes = 0;
  private paused = false;
  private readonly flushers = new Set<() => void>();

  constructor(
    private readonly socket: Pausable,
    private readonly capBytes: number,
  ) {}

  get inFlight(): number {
    return this.bytes;
  }

  add(n: number): void {
    this.bytes += n;
    if (!this.paused && this.bytes > this.capBytes) {
      this.paused = true;
      this.socket.pause();
      this.flushPartial();
    }
  }

  /**
   * Registers what sends an upload's partly filled buffers to the disk. Uploads keep them in
   * memory until they are full; when reading stops, or the client goes quiet, they must go, or
   * their bytes would never be released (and reading never resume). Returns the unregistering.
   */
  addFlusher(flush: () => void): () => void {
    this.flushers.add(flush);
    return () => this.flushers.delete(flush);
  }

  /** Sends every partly filled upload buffer of the connection to the disk. */
  flushPartial(): void {
    for (const flush of this.flushers) flush();
  }

  release(n: number): void {
    this.bytes -= n;
    if (this.paused && this.bytes <= this.capBytes / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }
}
