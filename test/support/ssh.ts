import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import ssh2, { type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createLogger } from '../../src/log/logger.js';
import { createSftpServer, type SftpServer } from '../../src/sftp/server.js';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import type { Clock } from '../../src/types.js';

/** Client keys, real SSH clients and an in-process rosterd SFTP server, for end-to-end tests. */

/** Also here: the e2e tests import it with the rest of this file (unit tests from wait.ts, without ssh2). */
export { waitFor } from './wait.js';

export type ClientKeyType = 'ed25519' | 'ecdsa' | 'rsa';

export interface ClientKey {
  type: ClientKeyType;
  privatePath: string;
  publicPath: string;
  /** the .pub line, for `addKey` */
  publicLine: string;
  privateKey: Buffer;
}

export async function makeClientKey(dir: string, type: ClientKeyType, name: string = type): Promise<ClientKey> {
  const privatePath = path.join(dir, `id_${name}`);
  const args = ['-q', '-t', type, '-N', '', '-C', `${name}@test`, '-f', privatePath];
  if (type === 'rsa') args.push('-b', '3072');
  await run('ssh-keygen', args);
  return {
    type,
    privatePath,
    publicPath: `${privatePath}.pub`,
    publicLine: (await fs.readFile(`${privatePath}.pub`, 'utf8')).trim(),
    privateKey: await fs.readFile(privatePath),
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (never rejects on a non-zero exit). */
export function run(cmd: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: options.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, SSH_AUTH_SOCK: '' } },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') return reject(err); // ENOENT: not installed
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Active tenants with one ed25519 key each (it@<subdomain>.example as administrator); their keys by subdomain. */
export async function registerTenants<T extends string>(
  pool: pg.Pool,
  dir: string,
  subdomains: readonly T[],
): Promise<Record<T, ClientKey>> {
  const keys = {} as Record<T, ClientKey>;
  for (const t of subdomains) {
    keys[t] = await makeClientKey(dir, 'ed25519', t);
    await createTenant(pool, t, { adminEmails: [`it@${t}.example`] });
    await addKey(pool, t, keys[t].publicLine);
  }
  return keys;
}

/** How the client checks the server's host key: not at all by default (test servers are new each time). */
export interface HostKeyCheck {
  checking: 'no' | 'accept-new' | 'yes';
  knownHosts: string;
  /** the name the host key is filed under in knownHosts */
  alias?: string;
}

/** OpenSSH client options: no host key prompts, only the given key, never a password prompt. */
export function sshOptions(
  port: number,
  key: Pick<ClientKey, 'privatePath'>,
  extra: string[] = [],
  hostKey: HostKeyCheck = { checking: 'no', knownHosts: '/dev/null' },
): string[] {
  return [
    '-o',
    `StrictHostKeyChecking=${hostKey.checking}`,
    '-o',
    `UserKnownHostsFile=${hostKey.knownHosts}`,
    ...(hostKey.alias === undefined ? [] : ['-o', `HostKeyAlias=${hostKey.alias}`]),
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=10',
    '-P',
    String(port),
    '-i',
    key.privatePath,
    ...extra,
  ];
}

/** `sftp -b -` with the given batch commands (prefix a command with `-` to let it fail). */
export function sftpBatch(port: number, user: string, key: ClientKey, commands: string[], extra: string[] = []): Promise<RunResult> {
  return run('sftp', [...sshOptions(port, key, extra), '-b', '-', `${user}@127.0.0.1`], { input: commands.join('\n') + '\n' });
}

/** Starts `sftp -b -` and returns the process (for killing it mid-transfer). */
export function startSftpBatch(port: number, user: string, key: ClientKey, commands: string[], extra: string[] = []): ChildProcess {
  const child = spawn('sftp', [...sshOptions(port, key, extra), '-b', '-', `${user}@127.0.0.1`], {
    env: { ...process.env, SSH_AUTH_SOCK: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin?.end(commands.join('\n') + '\n');
  return child;
}

/** `ssh` with a command (none: a shell), as a district trying its key or an rsync would run it. */
export function sshCommand(port: number, user: string, key: ClientKey, command: string[], extra: string[] = []): Promise<RunResult> {
  const options = sshOptions(port, key, extra).map((o) => (o === '-P' ? '-p' : o)); // ssh names the port -p, sftp -P
  return run('ssh', [...options, `${user}@127.0.0.1`, ...command]);
}

export function scpUpload(port: number, user: string, key: ClientKey, local: string, remote: string): Promise<RunResult> {
  return run('scp', [...sshOptions(port, key), '-q', local, `${user}@127.0.0.1:${remote}`]);
}

export function scpDownload(port: number, user: string, key: ClientKey, remote: string, local: string): Promise<RunResult> {
  return run('scp', [...sshOptions(port, key), '-q', `${user}@127.0.0.1:${remote}`, local]);
}

/** curl's sftp (libssh2): `-T` uploads, else downloads to `local`. */
export function curlSftp(
  port: number,
  user: string,
  key: ClientKey,
  remote: string,
  op: { upload: string } | { download: string },
  extra: string[] = [],
): Promise<RunResult> {
  const args = ['-sS', '-k', '--key', key.privatePath, '--pubkey', key.publicPath, '--connect-timeout', '10', ...extra];
  if ('upload' in op) args.push('-T', op.upload);
  else args.push('-o', op.download);
  args.push(`sftp://${user}@127.0.0.1:${port}${remote}`);
  return run('curl', args);
}

export async function randomFile(dir: string, name: string, bytes: number): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, randomBytes(bytes));
  return file;
}

// --- ssh2 as a scriptable client (exact status codes and messages) ---------------------------

export interface Ssh2Session {
  client: ssh2.Client;
  sftp: SFTPWrapper;
  end(): void;
}

export function ssh2Connect(config: ConnectConfig): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.once('ready', () => resolve(client));
    client.once('error', reject);
    client.connect({ host: '127.0.0.1', readyTimeout: 10_000, ...config });
  });
}

export async function ssh2Sftp(config: ConnectConfig): Promise<Ssh2Session> {
  const client = await ssh2Connect(config);
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  client.on('error', () => undefined);
  return { client, sftp, end: () => client.end() };
}

/** Resolves when the connection is closed (by either side). */
export function whenClosed(client: ssh2.Client): Promise<void> {
  return new Promise((resolve) => (client as unknown as NodeJS.EventEmitter).once('close', () => resolve()));
}

/** Promisified SFTP calls; a failure rejects with ssh2's error (`code` = SFTP status). */
export const sftpP = {
  open: (s: SFTPWrapper, p: string, flags: string | number) =>
    new Promise<Buffer>((res, rej) => s.open(p, flags as 'r', (e, h) => (e ? rej(e) : res(h)))),
  write: (s: SFTPWrapper, h: Buffer, data: Buffer, position: number) =>
    new Promise<void>((res, rej) => s.write(h, data, 0, data.length, position, (e) => (e ? rej(e) : res()))),
  close: (s: SFTPWrapper, h: Buffer) => new Promise<void>((res, rej) => s.close(h, (e) => (e ? rej(e) : res()))),
  rename: (s: SFTPWrapper, from: string, to: string) => new Promise<void>((res, rej) => s.rename(from, to, (e) => (e ? rej(e) : res()))),
  readdir: (s: SFTPWrapper, p: string) =>
    new Promise<Array<{ filename: string; longname: string }>>((res, rej) => s.readdir(p, (e, list) => (e ? rej(e) : res(list)))),
  stat: (s: SFTPWrapper, p: string) => new Promise<ssh2.Stats>((res, rej) => s.stat(p, (e, st) => (e ? rej(e) : res(st)))),
  realpath: (s: SFTPWrapper, p: string) => new Promise<string>((res, rej) => s.realpath(p, (e, r) => (e ? rej(e) : res(r)))),
  readFile: (s: SFTPWrapper, p: string) => new Promise<Buffer>((res, rej) => s.readFile(p, (e, b) => (e ? rej(e) : res(b)))),
  writeFile: (s: SFTPWrapper, p: string, data: Buffer) =>
    new Promise<void>((res, rej) => s.writeFile(p, data, (e) => (e ? rej(e) : res()))),
  mkdir: (s: SFTPWrapper, p: string) => new Promise<void>((res, rej) => s.mkdir(p, (e) => (e ? rej(e) : res()))),
  symlink: (s: SFTPWrapper, target: string, link: string) =>
    new Promise<void>((res, rej) => s.symlink(target, link, (e) => (e ? rej(e) : res()))),
  unlink: (s: SFTPWrapper, p: string) => new Promise<void>((res, rej) => s.unlink(p, (e) => (e ? rej(e) : res()))),
};

/** The error a promise rejects with (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: number | string; level?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: number };
  }
  throw new Error('expected a failure, but it succeeded');
}

// --- an in-process rosterd SFTP server -------------------------------------------------------

export interface TestSftpServer {
  server: SftpServer;
  port: number;
  config: Config;
  /** JSON log lines written so far */
  logs: Array<Record<string, unknown>>;
  /** Log lines that name a field twice (a child logger's binding repeated), which parsing hides. */
  repeatedFields: string[];
  close(graceMs?: number): Promise<void>;
}

export async function startSftpServer(opts: {
  pool: pg.Pool;
  dataDir: string;
  env?: Record<string, string>;
  clock?: Clock;
}): Promise<TestSftpServer> {
  const config = loadConfig({ DATA_DIR: opts.dataDir, SFTP_HOST: '127.0.0.1', SFTP_PORT: '0', LOG_LEVEL: 'debug', ...opts.env });
  const logs: Array<Record<string, unknown>> = [];
  const repeatedFields: string[] = [];
  const logger = createLogger('debug', {
    write: (line: string) => {
      logs.push(JSON.parse(line) as Record<string, unknown>);
      if (repeatedKeys(line).length > 0) repeatedFields.push(line);
    },
  });
  const server = createSftpServer({ config, logger, pool: opts.pool, clock: opts.clock ?? { now: () => new Date() } });
  const { port } = await server.listen();
  return { server, port, config, logs, repeatedFields, close: (graceMs?: number) => server.close(graceMs ?? 0) };
}

/** The top-level keys a JSON object's text names more than once (JSON.parse keeps only the last). */
export function repeatedKeys(json: string): string[] {
  const seen = new Set<string>();
  const repeated: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === '\\' ? 2 : 1;
      if (depth === 1 && json[end + 1] === ':') {
        const key = JSON.parse(json.slice(i, end + 1)) as string;
        if (seen.has(key)) repeated.push(key);
        seen.add(key);
      }
      i = end;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return repeated;
}

/** A request's outcome, failure included, for requests sent together (ssh2 SFTP calls). */
export const outcome = <T>(p: Promise<T>): Promise<{ ok: T } | { code: unknown; message: string }> =>
  p.then(
    (ok) => ({ ok }),
    (err: Error & { code?: unknown }) => ({ code: err.code, message: err.message }),
  );
