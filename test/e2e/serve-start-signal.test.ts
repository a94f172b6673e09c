/**
 * A SIGTERM while `rosterd serve` is still starting (host keys being made, the database being
 * reached: a rolling update, a quick Ctrl-C) stops it cleanly once it is up, exit 0, instead of
 * killing the process as it stands.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let tmp: string;
beforeAll(async () => {
  db = await createTestDatabase();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'rosterd-start-signal-'));
});
afterAll(async () => {
  await db?.drop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

it('a SIGTERM during start is kept: the daemon stops cleanly as soon as it is up, exit 0', async () => {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? tmp,
    DATABASE_URL: db.url,
    // A new DATA_DIR: the start makes host keys, which takes a while.
    DATA_DIR: path.join(tmp, 'data'),
    SFTP_HOST: '127.0.0.1',
    SFTP_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    LOG_LEVEL: 'info',
    // Its warn line is written once the signals are watched and before the start begins.
    SMTP_URI: 'smtp://mail.example:25',
  };
  const child = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let signalled = false;
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
    const parts = out.split('\n');
    out = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (!signalled && line.includes('"config.lookalike"')) {
        signalled = true;
        child.kill('SIGTERM');
      }
    }
  });
  child.stderr.on('data', (chunk: Buffer) => lines.push(chunk.toString('utf8')));
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const msgs = lines.flatMap((l) => {
    try {
      return [(JSON.parse(l) as { msg: string }).msg];
    } catch {
      return [];
    }
  });
  expect(signalled).toBe(true);
  expect(exit, lines.join('\n')).toEqual({ code: 0, signal: null });
  expect(msgs).toContain('signal during start: stopping as soon as started');
  expect(msgs.at(-1)).toBe('rosterd stopped');
}, 60_000);
