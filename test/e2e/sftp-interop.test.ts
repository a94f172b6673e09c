/**
 * The SIS clients PRODUCT.md §2 promises besides OpenSSH and curl, driven for real against the
 * real server: paramiko (Python scripts) and lftp (district batch jobs). Each is skipped, with
 * the reason, on a machine that lacks it (`apt-get install python3-paramiko lftp`).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintOfBlob, parsePublicKey } from '../../src/sftp/public-key.js';
import { addKey } from '../../src/store/keys.js';
import { createTenant } from '../../src/store/tenants.js';
import { listUploads, type Upload } from '../../src/store/uploads.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  makeClientKey,
  outcome,
  run,
  sftpP,
  ssh2Sftp,
  startSftpServer,
  type ClientKey,
  type ClientKeyType,
  type RunResult,
  type TestSftpServer,
} from '../support/ssh.js';

/**
 * An interpreter that can import paramiko, or null. Debian's python3-paramiko is installed for
 * /usr/bin/python3, which a pyenv or venv `python3` earlier on PATH does not see.
 */
function findParamikoPython(): string | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(python, ['-c', 'import paramiko'], { stdio: 'ignore', timeout: 10_000 });
      return python;
    } catch {
      // not there, or no paramiko for it
    }
  }
  return null;
}

function hasLftp(): boolean {
  try {
    execFileSync('lftp', ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const PYTHON = findParamikoPython();
const LFTP = hasLftp();

const PARAMIKO_TENANT = 'paramiko-usd';
const LFTP_TENANT = 'lftp-usd';
const KEY_TYPES: ClientKeyType[] = ['ed25519', 'ecdsa', 'rsa'];

let db: TestDatabase;
let tmp: string;
let dataDir: string;
let srv: TestSftpServer;
const paramikoKeys = {} as Record<ClientKeyType, ClientKey>;
let lftpKey: ClientKey;
let strangerKey: ClientKey;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const fingerprint = (k: ClientKey) => fingerprintOfBlob(parsePublicKey(k.publicLine).blob);
const uploads = (tenant: string) => listUploads(db.pool, { tenant });

/** A users.csv unlike any other in this file, a few pipelined writes long. */
async function usersCsv(name: string, rows = 3000): Promise<{ file: string; content: Buffer }> {
  const lines = ['username,password,email,first name,last name'];
  for (let i = 0; i < rows; i++) lines.push(`${name}${i},Secret-${i}!,${name}${i}@district.example,First${i},Last${i}`);
  const content = Buffer.from(lines.join('\r\n') + '\r\n');
  const file = path.join(tmp, `${name}.csv`);
  await fs.writeFile(file, content);
  return { file, content };
}

/** The upload a client just sent: one new pending row with the file's size and SHA-256, and its immutable copy. */
async function expectReceived(tenant: string, before: number, content: Buffer, key: ClientKey, fileName = 'users.csv'): Promise<Upload> {
  const list = await uploads(tenant);
  expect(list.length, 'one new upload row').toBe(before + 1);
  const upload = list[0] as Upload;
  expect(upload).toMatchObject({
    tenant,
    fileName,
    status: 'pending',
    bytes: content.length,
    sha256: sha256(content),
    keyFingerprint: fingerprint(key),
    remoteAddress: '127.0.0.1',
    source: 'sftp',
  });
  expect(sha256(await fs.readFile(path.join(dataDir, upload.storedPath)))).toBe(sha256(content));
  return upload;
}

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-sftp-interop-'));
  dataDir = path.join(tmp, 'data');
  const made = await Promise.all([
    ...KEY_TYPES.map((t) => makeClientKey(tmp, t, `paramiko_${t}`)),
    makeClientKey(tmp, 'ed25519', 'lftp'),
    makeClientKey(tmp, 'ed25519', 'stranger'),
  ]);
  KEY_TYPES.forEach((t, i) => (paramikoKeys[t] = made[i] as ClientKey));
  lftpKey = made[3] as ClientKey;
  strangerKey = made[4] as ClientKey;
  await createTenant(db.pool, PARAMIKO_TENANT, { adminEmails: ['it@paramiko.example'] });
  await createTenant(db.pool, LFTP_TENANT, { adminEmails: ['it@lftp.example'] });
  for (const t of KEY_TYPES) await addKey(db.pool, PARAMIKO_TENANT, paramikoKeys[t].publicLine);
  await addKey(db.pool, LFTP_TENANT, lftpKey.publicLine);
  srv = await startSftpServer({ pool: db.pool, dataDir, env: { SFTP_MAX_AUTH_FAILURES: '1000' } });
});

afterAll(async () => {
  await srv?.close();
  await db?.drop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

// --- paramiko ---------------------------------------------------------------------------------

/**
 * Logs in with paramiko's SSHClient, as a district's Python job does, then runs the operations
 * given as JSON on stdin, each through paramiko's own SFTPClient method. Prints JSON: the login's
 * failure, or one result per operation ({ok} or {error, errno} as the IOError paramiko raised).
 */
const PARAMIKO_DRIVER = String.raw`
import json, stat, sys
import paramiko

port, user, key_path, key_type = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ops = json.load(sys.stdin)
key = {"ed25519": paramiko.Ed25519Key, "ecdsa": paramiko.ECDSAKey, "rsa": paramiko.RSAKey}[key_type].from_private_key_file(key_path)
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a new test server each run
try:
    client.connect("127.0.0.1", port=port, username=user, pkey=key, look_for_keys=False, allow_agent=False,
                   timeout=10, banner_timeout=10, auth_timeout=10)
except Exception as e:
    print(json.dumps({"login": type(e).__name__ + ": " + str(e)}))
    sys.exit(0)
sftp = client.open_sftp()

def attrs(a):
    return {"size": a.st_size, "mode": a.st_mode, "mtime": a.st_mtime, "isFile": stat.S_ISREG(a.st_mode or 0),
            "isDir": stat.S_ISDIR(a.st_mode or 0)}

def do(op, args):
    if op == "put": return attrs(sftp.put(args[0], args[1]))
    if op == "get": return sftp.get(args[0], args[1])
    if op == "rename": return sftp.rename(args[0], args[1])
    if op == "posix_rename": return sftp.posix_rename(args[0], args[1])
    if op == "listdir": return sftp.listdir(args[0])
    if op == "listdir_attr": return [dict(attrs(a), filename=a.filename, longname=a.longname) for a in sftp.listdir_attr(args[0])]
    if op == "stat": return attrs(sftp.stat(args[0]))
    if op == "normalize": return sftp.normalize(args[0])
    if op == "chdir": sftp.chdir(args[0]); return sftp.getcwd()
    if op == "remove": return sftp.remove(args[0])
    raise ValueError("unknown op " + op)

results = []
for op, *args in ops:
    try:
        results.append({"ok": do(op, args)})
    except IOError as e:
        results.append({"error": str(e), "errno": e.errno})
    except Exception as e:
        results.append({"error": type(e).__name__ + ": " + str(e), "errno": None})
sftp.close()
client.close()
print(json.dumps({"results": results}))
`;

type Op = [string, ...string[]];
type OpResult = { ok: unknown; error?: undefined } | { ok?: undefined; error: string; errno: number | null };

async function paramiko(key: ClientKey, ops: Op[]): Promise<{ login?: string; results: OpResult[] }> {
  const r: RunResult = await run(PYTHON as string, ['-c', PARAMIKO_DRIVER, String(srv.port), PARAMIKO_TENANT, key.privatePath, key.type], {
    input: JSON.stringify(ops),
  });
  expect(r.code, `paramiko driver failed:\n${r.stderr}`).toBe(0);
  const out = JSON.parse(r.stdout) as { login?: string; results?: OpResult[] };
  return { ...(out.login === undefined ? {} : { login: out.login }), results: out.results ?? [] };
}

/** The results of operations that must all succeed. */
async function paramikoOk(key: ClientKey, ops: Op[]): Promise<unknown[]> {
  const { login, results } = await paramiko(key, ops);
  expect(login, 'paramiko logs in').toBeUndefined();
  results.forEach((res, i) => expect(res.error, `${JSON.stringify(ops[i])} fails`).toBeUndefined());
  return results.map((res) => res.ok);
}

describe.skipIf(PYTHON === null)(
  `paramiko${PYTHON === null ? ' (skipped: no python3 can import paramiko; apt-get install python3-paramiko)' : ''}`,
  () => {
    it.each(KEY_TYPES)('logs in with an %s key, puts users.csv, lists, stats and reads it back byte-identical', async (type) => {
      const key = paramikoKeys[type];
      const { file, content } = await usersCsv(`pm${type}`);
      const back = path.join(tmp, `pm-${type}.back`);
      const before = (await uploads(PARAMIKO_TENANT)).length;
      const [put, names, listed, st, , cwd] = await paramikoOk(key, [
        ['put', file, 'users.csv'],
        ['listdir', '.'],
        ['listdir_attr', '/'],
        ['stat', '/users.csv'],
        ['get', '/users.csv', back],
        ['chdir', '/'],
      ]);
      // put() itself stats the file after CLOSE and fails on a size mismatch.
      expect(put).toMatchObject({ size: content.length, isFile: true });
      expect(names).toContain('users.csv');
      const entry = (listed as Array<Record<string, unknown>>).find((e) => e.filename === 'users.csv');
      expect(entry).toMatchObject({ size: content.length, isFile: true });
      expect(entry?.longname).toMatch(
        new RegExp(`^-r-------- +1 ${PARAMIKO_TENANT} +${PARAMIKO_TENANT} +${content.length} .* users\\.csv$`),
      );
      expect(st).toMatchObject({ size: content.length, isFile: true });
      expect(cwd).toBe('/');
      expect(sha256(await fs.readFile(back))).toBe(sha256(content));
      await expectReceived(PARAMIKO_TENANT, before, content, key);
    });

    it('uploads to a temporary name, then posix_rename and rename onto users.csv: each received once', async () => {
      const key = paramikoKeys.ed25519;
      const first = await usersCsv('pmposix');
      const second = await usersCsv('pmrename');
      let before = (await uploads(PARAMIKO_TENANT)).length;
      // put() on a temporary name is not a receipt: only the rename onto users.csv is.
      await paramikoOk(key, [['put', first.file, 'users.csv.tmp']]);
      expect((await uploads(PARAMIKO_TENANT)).length).toBe(before);
      const [, names] = await paramikoOk(key, [
        ['posix_rename', 'users.csv.tmp', 'users.csv'],
        ['listdir', '/'],
      ]);
      expect(names).not.toContain('users.csv.tmp');
      await expectReceived(PARAMIKO_TENANT, before, first.content, key);

      before = (await uploads(PARAMIKO_TENANT)).length;
      const [, , st] = await paramikoOk(key, [
        ['put', second.file, '/users.csv.part'],
        ['rename', '/users.csv.part', '/users.csv'],
        ['stat', 'users.csv'],
      ]);
      expect(st).toMatchObject({ size: second.content.length });
      await expectReceived(PARAMIKO_TENANT, before, second.content, key);
    });

    it('a refused name: paramiko raises the IOError with the server message, and nothing is received', async () => {
      const { file } = await usersCsv('pmrefused', 10);
      const before = (await uploads(PARAMIKO_TENANT)).length;
      const { results } = await paramiko(paramikoKeys.ed25519, [
        ['put', file, 'notes.txt'],
        ['rename', 'users.csv', 'users-old.csv'],
        ['stat', 'notes.txt'],
      ]);
      expect(results[0]).toEqual({
        errno: 13,
        error:
          '[Errno 13] "notes.txt" is not accepted here. Upload users.csv or groups.csv to the root folder (/); ' +
          'temporary names renamed onto them, such as users.csv.filepart, users.csv.tmp or .users.csv.tmp, also work.',
      });
      expect(results[1]).toMatchObject({ errno: 13, error: expect.stringMatching(/users\.csv or groups\.csv/) as unknown });
      expect(results[2]).toMatchObject({ errno: 2 });
      expect((await uploads(PARAMIKO_TENANT)).length).toBe(before);
    });

    it('an unregistered key: paramiko fails to authenticate, and the server logs why', async () => {
      const { login, results } = await paramiko(strangerKey, [['listdir', '/']]);
      expect(login).toMatch(/^AuthenticationException: Authentication failed/);
      expect(results).toEqual([]);
      expect(srv.logs).toContainEqual(
        expect.objectContaining({
          event: 'login.refused',
          username: PARAMIKO_TENANT,
          fingerprint: fingerprint(strangerKey),
          reason: 'key-not-registered',
        }),
      );
    });
  },
);

// --- lftp -------------------------------------------------------------------------------------

/**
 * `lftp -c` over sftp, logging in with `key` through ssh (lftp's own way: its connect-program).
 * Failures are not retried (lftp retries for ever by default) and end the script with a non-zero
 * code (cmd:fail-exit), so a refused command shows as the exit and lftp's message.
 */
function lftp(commands: string[]): Promise<RunResult> {
  const ssh = [
    'ssh -a -x',
    '-o StrictHostKeyChecking=no',
    '-o UserKnownHostsFile=/dev/null',
    '-o IdentitiesOnly=yes',
    '-o BatchMode=yes',
    '-o LogLevel=ERROR',
    `-i ${lftpKey.privatePath}`,
  ].join(' ');
  const script = [
    'set cmd:fail-exit yes',
    'set net:max-retries 1',
    'set net:timeout 10',
    `set sftp:connect-program "${ssh}"`,
    `open -u ${LFTP_TENANT}, sftp://127.0.0.1:${srv.port}`,
    ...commands,
  ].join('; ');
  return run('lftp', ['--norc', '-c', script], { timeoutMs: 20_000 });
}

describe.skipIf(!LFTP)(`lftp${LFTP ? '' : ' (skipped: lftp is not installed; apt-get install lftp)'}`, () => {
  it('puts users.csv, lists it, gets it back byte-identical', async () => {
    const { file, content } = await usersCsv('lfput');
    const back = path.join(tmp, 'lf-put.back');
    const before = (await uploads(LFTP_TENANT)).length;
    const r = await lftp([`put ${file} -o users.csv`, 'ls', 'cls -l /', `get users.csv -o ${back}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^-r-------- +1 ${LFTP_TENANT} +${LFTP_TENANT} +${content.length} .* users\\.csv$`, 'm'));
    expect(sha256(await fs.readFile(back))).toBe(sha256(content));
    await expectReceived(LFTP_TENANT, before, content, lftpKey);
  });

  it('with xfer:use-temp-file, puts to its .in. name and renames it onto users.csv: received once', async () => {
    const { content, file } = await usersCsv('lftemp');
    const before = (await uploads(LFTP_TENANT)).length;
    const r = await lftp(['set xfer:use-temp-file yes', `put ${file} -o users.csv`, 'cls -1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['users.csv']);
    await expectReceived(LFTP_TENANT, before, content, lftpKey);
  });

  it('mv of its own temporary upload onto users.csv is a receipt', async () => {
    const { content, file } = await usersCsv('lfmv');
    const before = (await uploads(LFTP_TENANT)).length;
    const r = await lftp([`put ${file} -o users.csv.filepart`, 'mv users.csv.filepart users.csv', 'cls -1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['users.csv']);
    await expectReceived(LFTP_TENANT, before, content, lftpKey);
  });

  it('put -c onto the received users.csv is refused with the server message; a temporary file resumes', async () => {
    // The previous complete file, then tonight's longer one whose start it happens to be: a
    // resume would join them, and a cut-off transfer is never kept, so there is nothing to resume.
    const full = await usersCsv('lfresume', 4000);
    const head = full.content.subarray(0, 50_000);
    const headFile = path.join(tmp, 'lf-resume-head.csv');
    await fs.writeFile(headFile, head);
    let r = await lftp([`put ${headFile} -o users.csv`]);
    expect(r.code, r.stderr).toBe(0);
    const before = (await uploads(LFTP_TENANT)).length;
    r = await lftp([`put -c ${full.file} -o users.csv`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/this would keep part of the previous file/);
    expect((await uploads(LFTP_TENANT)).length).toBe(before);
    expect(await fs.readFile(path.join(dataDir, 'sftp', LFTP_TENANT, 'users.csv'))).toEqual(head);

    // The same resume on a temporary name continues it, and the rename receives the whole file.
    r = await lftp([`put ${headFile} -o users.csv.part`]);
    expect(r.code, r.stderr).toBe(0);
    r = await lftp([`put -c ${full.file} -o users.csv.part`, 'mv users.csv.part users.csv']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await expectReceived(LFTP_TENANT, before, full.content, lftpKey);
  });

  it('mirror -R of the export folder uploads users.csv and groups.csv, each received', async () => {
    const folder = path.join(tmp, 'lf-mirror');
    await fs.mkdir(folder);
    const users = (await usersCsv('lfmirror')).content;
    const groups = Buffer.from('username,owner,group\r\nlfmirror1,,Grade 9\r\n');
    await fs.writeFile(path.join(folder, 'users.csv'), users);
    await fs.writeFile(path.join(folder, 'groups.csv'), groups);
    const before = await uploads(LFTP_TENANT);
    const r = await lftp([`mirror -R ${folder} /`, 'cls -1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['groups.csv', 'users.csv']);
    const after = await uploads(LFTP_TENANT);
    const received = after.slice(0, after.length - before.length); // newest first
    expect(received.map((u) => [u.fileName, u.sha256, u.status]).sort()).toEqual(
      [
        ['groups.csv', sha256(groups), 'pending'],
        ['users.csv', sha256(users), 'pending'],
      ].sort(),
    );
  });

  it('a refused name: lftp reports the server message, and nothing is received', async () => {
    const { file } = await usersCsv('lfrefused', 10);
    const before = (await uploads(LFTP_TENANT)).length;
    const r = await lftp([`put ${file} -o notes.txt`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/"notes\.txt" is not accepted here\. Upload users\.csv or groups\.csv/);
    expect((await uploads(LFTP_TENANT)).length).toBe(before);
  });
});

// --- what lftp pipelines ------------------------------------------------------------------------

/**
 * lftp sends some requests together without waiting for the answers in between, and relies on
 * the server answering as if they came one at a time, as SFTP requires of requests on one file
 * (draft-ietf-secsh-filexfer-02 §6.1). They are sent here exactly as lftp sends them (its debug
 * log shows them) with ssh2, so that an overtaking request shows every time: with lftp itself it
 * shows now and then, as a users.csv that vanished after `put` or an "invalid handle" in `ls`.
 */
describe('requests sent together, as lftp sends them, are answered in order', () => {
  it('FSETSTAT with CLOSE, then REMOVE of users.csv with RENAME of the .in. file onto it (xfer:use-temp-file), then STAT', async () => {
    const old = await usersCsv('pipeold', 10);
    const next = await usersCsv('pipenew', 2000);
    const s = await ssh2Sftp({ port: srv.port, username: LFTP_TENANT, privateKey: lftpKey.privateKey });
    try {
      await sftpP.writeFile(s.sftp, 'users.csv', old.content);
      const h = await sftpP.open(s.sftp, '.in.users.csv', 'w');
      await sftpP.write(s.sftp, h, next.content, 0);
      const now = Math.floor(Date.now() / 1000);
      const [setstat, close] = await Promise.all([
        outcome(
          new Promise<void>((res, rej) =>
            s.sftp.fsetstat(h, { size: next.content.length, atime: now, mtime: now }, (e) => (e ? rej(e) : res())),
          ),
        ),
        outcome(sftpP.close(s.sftp, h)),
      ]);
      expect(setstat).toEqual({ ok: undefined });
      expect(close).toEqual({ ok: undefined });

      const before = (await uploads(LFTP_TENANT)).length;
      const [remove, rename, stat] = await Promise.all([
        outcome(sftpP.unlink(s.sftp, 'users.csv')),
        outcome(sftpP.rename(s.sftp, '.in.users.csv', 'users.csv')),
        outcome(sftpP.stat(s.sftp, 'users.csv')),
      ]);
      expect(remove).toEqual({ ok: undefined });
      expect(rename).toEqual({ ok: undefined });
      expect(stat).toMatchObject({ ok: { size: next.content.length } });
      expect(await sftpP.readFile(s.sftp, 'users.csv')).toEqual(next.content);
      await expectReceived(LFTP_TENANT, before, next.content, lftpKey);
    } finally {
      s.end();
    }
  });

  it('two READDIRs in flight, then CLOSE of the folder after the first EOF', async () => {
    const s = await ssh2Sftp({ port: srv.port, username: LFTP_TENANT, privateKey: lftpKey.privateKey });
    try {
      const dir = await new Promise<Buffer>((res, rej) => s.sftp.opendir('/', (e, h) => (e ? rej(e) : res(h))));
      const readdir = () =>
        outcome(new Promise<string[]>((res, rej) => s.sftp.readdir(dir, (e, list) => (e ? rej(e) : res(list.map((l) => l.filename))))));
      const [first, second, third, close] = await Promise.all([readdir(), readdir(), readdir(), outcome(sftpP.close(s.sftp, dir))]);
      expect(first).toMatchObject({ ok: expect.arrayContaining(['users.csv']) as unknown });
      expect(second).toMatchObject({ code: 1 }); // EOF
      expect(third).toMatchObject({ code: 1 });
      expect(close).toEqual({ ok: undefined });
    } finally {
      s.end();
    }
  });
});

// --- PuTTY: psftp and pscp --------------------------------------------------------------------

/**
 * WinSCP, the Windows client districts use most, cannot run here; its SSH and SFTP core is
 * PuTTY's, which can: psftp and pscp (Debian's putty-tools) log in with the same .ppk keys and
 * send what that core sends, including `reput`, the resume WinSCP uses on its own .filepart.
 */
function hasPutty(): boolean {
  try {
    for (const cmd of ['psftp', 'pscp', 'puttygen']) execFileSync(cmd, ['-V'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const PUTTY = hasPutty();
const PUTTY_TENANT = 'putty-usd';

describe.skipIf(!PUTTY)(
  `PuTTY psftp and pscp${PUTTY ? '' : ' (skipped: putty-tools is not installed; apt-get install putty-tools)'}`,
  () => {
    const ppk = {} as Record<ClientKeyType | 'stranger', { key: ClientKey; path: string }>;

    /** The ed25519 host key's fingerprint, as `rosterd host-key` prints it: PuTTY pins it with -hostkey. */
    const hostKey = () => {
      const ed = srv.server.hostKeys.find((k) => k.type === 'ssh-ed25519');
      expect(ed, 'an ed25519 host key').toBeDefined();
      return ed?.fingerprint as string;
    };

    const common = (which: ClientKeyType | 'stranger') => ['-batch', '-P', String(srv.port), '-i', ppk[which].path, '-hostkey', hostKey()];

    /** psftp running a batch script; it stops at the first command that fails. */
    async function psftp(which: ClientKeyType | 'stranger', commands: string[]): Promise<RunResult> {
      const script = path.join(tmp, `psftp-${commands.length}-${Date.now()}.txt`);
      await fs.writeFile(script, commands.join('\n') + '\n');
      return run('psftp', [...common(which), '-b', script, `${PUTTY_TENANT}@127.0.0.1`], { timeoutMs: 30_000 });
    }

    const pscp = (which: ClientKeyType, from: string, to: string) => run('pscp', [...common(which), from, to], { timeoutMs: 30_000 });
    const remote = (p: string) => `${PUTTY_TENANT}@127.0.0.1:${p}`;

    beforeAll(async () => {
      await createTenant(db.pool, PUTTY_TENANT, { adminEmails: ['it@putty.example'] });
      for (const which of [...KEY_TYPES, 'stranger'] as const) {
        const key = await makeClientKey(tmp, which === 'stranger' ? 'ed25519' : which, `putty_${which}`);
        const ppkPath = `${key.privatePath}.ppk`;
        const made = await run('puttygen', [key.privatePath, '-O', 'private', '-o', ppkPath]);
        expect(made.code, made.stderr).toBe(0);
        ppk[which] = { key, path: ppkPath };
        if (which !== 'stranger') await addKey(db.pool, PUTTY_TENANT, key.publicLine);
      }
    });

    it.each(KEY_TYPES)(
      'psftp logs in with an %s key against the pinned host key fingerprint, puts users.csv, lists it, gets it back byte-identical',
      async (type) => {
        const { file, content } = await usersCsv(`pt${type}`);
        const back = path.join(tmp, `pt-${type}.back`);
        const before = (await uploads(PUTTY_TENANT)).length;
        const r = await psftp(type, [`put ${file} users.csv`, 'ls', `get users.csv ${back}`]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^-r-------- +1 ${PUTTY_TENANT} +${PUTTY_TENANT} +${content.length} .* users\\.csv$`, 'm'));
        expect(sha256(await fs.readFile(back))).toBe(sha256(content));
        await expectReceived(PUTTY_TENANT, before, content, ppk[type].key);
      },
    );

    it("WinSCP's way: a .filepart, continued by reput after a break, renamed onto users.csv: the whole file received once", async () => {
      const full = await usersCsv('ptresume', 4000);
      const headFile = path.join(tmp, 'pt-resume-head.csv');
      await fs.writeFile(headFile, full.content.subarray(0, 60_000));
      const before = (await uploads(PUTTY_TENANT)).length;
      let r = await psftp('ed25519', [`put ${headFile} users.csv.filepart`]);
      expect(r.code, r.stderr).toBe(0);
      expect((await uploads(PUTTY_TENANT)).length, 'a temporary name is not received').toBe(before);
      r = await psftp('ed25519', [`reput ${full.file} users.csv.filepart`, 'mv users.csv.filepart users.csv', 'ls']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/reput: restarting at file position 60000/);
      expect(r.stdout, 'ls shows no .filepart').not.toMatch(/^-.* users\.csv\.filepart$/m);
      await expectReceived(PUTTY_TENANT, before, full.content, ppk.ed25519.key);
    });

    it('reput onto the received users.csv fails, and neither the file nor the queue changes', async () => {
      const first = await usersCsv('ptkeep', 10);
      let r = await psftp('ecdsa', [`put ${first.file} users.csv`]);
      expect(r.code, r.stderr).toBe(0);
      const longer = Buffer.concat([first.content, Buffer.from('ptkeep-extra1,Secret-x!,x@district.example,X,Y\r\n')]);
      const longerFile = path.join(tmp, 'pt-keep-longer.csv');
      await fs.writeFile(longerFile, longer);
      const before = await uploads(PUTTY_TENANT);
      r = await psftp('ecdsa', [`reput ${longerFile} users.csv`]);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/error while closing: operation unsupported/);
      expect(await uploads(PUTTY_TENANT)).toEqual(before);
      expect(await fs.readFile(path.join(dataDir, 'sftp', PUTTY_TENANT, 'users.csv'))).toEqual(first.content);
      // PuTTY shows only the status code; WinSCP shows the message, and the log keeps it.
      expect(srv.logs).toContainEqual(
        expect.objectContaining({
          tenant: PUTTY_TENANT,
          reason: expect.stringMatching(/^this would keep part of the previous file/) as unknown,
        }),
      );
    });

    it('pscp copies users.csv up and down byte-identical; a path out of the jail is refused and nothing is received', async () => {
      const { file, content } = await usersCsv('ptscp');
      const back = path.join(tmp, 'pt-scp.back');
      const before = (await uploads(PUTTY_TENANT)).length;
      let r = await pscp('rsa', file, remote('users.csv'));
      expect(r.code, r.stderr).toBe(0);
      const received = await expectReceived(PUTTY_TENANT, before, content, ppk.rsa.key);
      r = await pscp('rsa', remote('users.csv'), back);
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(await fs.readFile(back))).toBe(sha256(content));

      for (const escape of ['/../users.csv', '../paramiko-usd/users.csv', '/etc/passwd']) {
        r = await pscp('rsa', file, remote(escape));
        expect(r.code, escape).not.toBe(0);
        expect(r.stderr, escape).toMatch(/unable to open .*: permission denied/);
      }
      expect((await uploads(PUTTY_TENANT))[0]).toEqual(received);
      expect((await uploads(PUTTY_TENANT)).length).toBe(before + 1);
    });

    it('an unregistered key: refused with publickey as the only method, so batch mode never reaches a password prompt', async () => {
      const r = await psftp('stranger', ['ls']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Server refused our key/);
      expect(r.stderr).toMatch(/No supported authentication methods available \(server sent: publickey\)/);
      expect(srv.logs).toContainEqual(
        expect.objectContaining({
          event: 'login.refused',
          username: PUTTY_TENANT,
          fingerprint: fingerprint(ppk.stranger.key),
          reason: 'key-not-registered',
        }),
      );
    });
  },
);
