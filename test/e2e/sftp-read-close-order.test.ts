/**
 * A CLOSE sent while READs of the same file are in flight (lftp reads ahead, and closes once it
 * has the EOF) is processed after them, as if the client had waited: the READs are answered with
 * data or EOF, never "invalid handle".
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { makeClientKey, outcome, sftpP, ssh2Sftp, startSftpServer, type ClientKey, type TestSftpServer } from '../support/ssh.js';

const TENANT = 'readahead-usd';
let db: TestDatabase;
let tmp: string;
let srv: TestSftpServer;
let key: ClientKey;

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-read-close-'));
  key = await makeClientKey(tmp, 'ed25519', 'readahead');
  await createTenant(db.pool, TENANT, { adminEmails: ['it@readahead.example'] });
  await addKey(db.pool, TENANT, key.publicLine);
  // The database answers a little slowly, as a busy one does: a READ waiting for the login check
  // is then still waiting when the CLOSE sent right after it arrives.
  const slow = new Proxy(db.pool, {
    get(target, prop, receiver) {
      if (prop !== 'query') return Reflect.get(target, prop, receiver) as unknown;
      return async (...args: unknown[]) => {
        await new Promise((r) => setTimeout(r, 150));
        return (target.query as (...a: unknown[]) => unknown)(...args);
      };
    },
  });
  srv = await startSftpServer({ pool: slow, dataDir: path.join(tmp, 'data') });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('READs in flight, then CLOSE of the file', () => {
  it('answers the READs before the file is closed', async () => {
    const s = await ssh2Sftp({ port: srv.port, username: TENANT, privateKey: key.privateKey });
    try {
      const content = Buffer.from('username,password\r\nalice01,Secret-1!\r\n');
      await sftpP.writeFile(s.sftp, 'users.csv', content);
      const read = (offset: number) =>
        outcome(
          new Promise<number>((res, rej) => s.sftp.read(h as Buffer, Buffer.alloc(1024), 0, 1024, offset, (e, n) => (e ? rej(e) : res(n)))),
        );
      let h: Buffer;
      // READ checks the login at most once a second: past it, each READ waits for the database.
      for (let round = 0; round < 3; round++) {
        h = await sftpP.open(s.sftp, 'users.csv', 'r');
        await new Promise((r) => setTimeout(r, 1050));
        const [first, second, close] = await Promise.all([read(0), read(content.length), outcome(sftpP.close(s.sftp, h))]);
        expect(first, `round ${round}`).toEqual({ ok: content.length });
        expect(second, `round ${round}`).toEqual({ ok: 0 }); // EOF
        expect(close, `round ${round}`).toEqual({ ok: undefined });
      }
    } finally {
      s.end();
    }
  });
});
