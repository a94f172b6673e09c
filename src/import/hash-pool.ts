/**
 * Password hashing on worker threads, one per core by default (HASH_WORKERS; 0 = one per core).
 * scrypt is CPU- and memory-bound, so it runs off the main thread, which keeps parsing and talking
 * to Postgres. Workers start on the first hash, so an import with no changed password starts none.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { DEFAULT_SCRYPT_PARAMS, scryptMaxmem, type ScryptParams } from './password.js';

/**
 * The worker's code, evaluated in the worker (plain JS so that it runs the same from dist/ and
 * under the test runner). It produces the format that password.ts parses and verifies:
 * $scrypt$ln=L,r=R,p=P$<base64 salt>$<base64 hash>, base64 without padding (PHC style).
 */
const WORKER_SOURCE = `
const crypto = require('node:crypto');
const { parentPort, workerData } = require('node:worker_threads');
const { ln, r, p, maxmem } = workerData;
const b64 = (buf) => buf.toString('base64').replace(/=+$/, '');
parentPort.on('message', ({ id, passwords }) => {
  try {
    const hashes = passwords.map((password) => {
      const salt = crypto.randomBytes(16);
      const hash = crypto.scryptSync(password.normalize('NFC'), salt, 32, { N: 2 ** ln, r, p, maxmem });
      return '$scrypt$ln=' + ln + ',r=' + r + ',p=' + p + '$' + b64(salt) + '$' + b64(hash);
    });
    parentPort.postMessage({ id, hashes });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

export interface PasswordHasher {
  /** Hash each password (salted); results in the same order. */
  hash(passwords: readonly string[]): Promise<string[]>;
  /** How many passwords this hasher has hashed: tests assert an unchanged night hashes none. */
  readonly hashCount: number;
  readonly workers: number;
  close(): Promise<void>;
}

interface Job {
  id: number;
  passwords: readonly string[];
  resolve: (hashes: string[]) => void;
  reject: (err: Error) => void;
}

/** At most this many passwords per message to a worker: small, so that all workers stay busy. */
const CHUNK = 4;

export function createPasswordHasher(options: { workers?: number; params?: ScryptParams } = {}): PasswordHasher {
  const size = options.workers && options.workers > 0 ? options.workers : Math.max(1, os.availableParallelism());
  const params = options.params ?? DEFAULT_SCRYPT_PARAMS;
  const idle: Worker[] = [];
  const all: Worker[] = [];
  const busy = new Map<Worker, Job>();
  const queue: Job[] = [];
  let nextId = 0;
  let count = 0;
  let closed = false;

  function start(): void {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { ...params, maxmem: scryptMaxmem(params) },
      });
      worker.unref();
      worker.on('message', (msg: { id: number; hashes?: string[]; error?: string }) => {
        const job = busy.get(worker);
        busy.delete(worker);
        if (job) {
          if (msg.hashes) {
            count += msg.hashes.length;
            job.resolve(msg.hashes);
          } else job.reject(new Error(`password hashing failed: ${msg.error ?? 'unknown error'}`));
        }
        idle.push(worker);
        pump();
      });
      worker.on('error', (err) => {
        const job = busy.get(worker);
        busy.delete(worker);
        job?.reject(err);
      });
      all.push(worker);
      idle.push(worker);
    }
  }

  function pump(): void {
    while (idle.length > 0 && queue.length > 0) {
      const worker = idle.pop() as Worker;
      const job = queue.shift() as Job;
      busy.set(worker, job);
      worker.postMessage({ id: job.id, passwords: job.passwords });
    }
  }

  function submit(passwords: readonly string[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      queue.push({ id: nextId++, passwords, resolve, reject });
      pump();
    });
  }

  return {
    get hashCount() {
      return count;
    },
    workers: size,
    async hash(passwords) {
      if (closed) throw new Error('the password hasher is closed');
      if (passwords.length === 0) return [];
      if (all.length === 0) start();
      const parts: Promise<string[]>[] = [];
      // Small batches are split finer, so that every worker gets a share.
      const chunk = Math.max(1, Math.min(CHUNK, Math.ceil(passwords.length / size)));
      for (let i = 0; i < passwords.length; i += chunk) parts.push(submit(passwords.slice(i, i + chunk)));
      return (await Promise.all(parts)).flat();
    },
    async close() {
      closed = true;
      // Jobs in flight or waiting fail now: a terminated worker never answers, and an import
      // waiting for its hashes would hold its transaction (and the tenant's lock) open for ever,
      // keeping a stopping daemon from exiting. Failing, the import rolls back.
      const stopped = new Error('the password hasher was closed (rosterd is stopping); the import is rolled back');
      for (const job of [...busy.values(), ...queue.splice(0)]) job.reject(stopped);
      busy.clear();
      await Promise.all(all.map((w) => w.terminate()));
      all.length = 0;
      idle.length = 0;
    },
  };
}
