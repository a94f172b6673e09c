#!/usr/bin/env node
/**
 * SFTP throughput of rosterd against OpenSSH's own sshd (internal-sftp), with the real OpenSSH
 * `sftp` client and curl (libssh2), in turns over several rounds; then rosterd's peak memory
 * during a large upload. Run after `npm run build`: `npm run bench:sftp`.
 *
 *   BENCH_MB=200        size of the timed upload
 *   BENCH_ROUNDS=7      rounds per client (each round uploads once to each server, order alternating)
 *   BENCH_RSS_MB=400    size of the upload during which rosterd's memory is sampled (0: skip)
 *   BENCH_CLIENTS=sftp,curl   which clients to time
 *   BENCH_PROFILE=DIR   write a V8 CPU profile of the rosterd server to DIR (open it in Chrome
 *                       DevTools or speedscope)
 *   BENCH_BARE=1        also time a minimal ssh2 SFTP server (scripts/bare-ssh2-sftp.mjs: no jail,
 *                       no hash, no database; each WRITE answered once written), for reference
 *   BENCH_NULL=1        also time OpenSSH's sshd writing to /dev/null: the same server without any
 *                       file I/O, so the most that a server's handling of the file could gain with
 *                       this client on this machine
 *   DATABASE_URL        Postgres to use (a bench tenant is created and removed); unset: an
 *                       embedded Postgres in a temporary directory
 *
 * Goals (issue 2): rosterd at least 1.2x OpenSSH's throughput, for both clients; rosterd under
 * 300 MB RSS during the large upload. sshd comes from the openssh-server package; without it,
 * only rosterd is measured.
 *
 * Two conditions are timed, because this VM makes them differ. It hands freed memory back to its
 * host within a second or two (Firecracker with free page reporting), and writing into memory the
 * host must fault in again costs ten times more: `dd` of 200 MB into the page cache took 0.05 s
 * right after a delete and 0.45 s two seconds later.
 *   - "as deployed": rosterd keeps every upload (its received copy, kept for RETENTION_DAYS, and
 *     the visible file until a new one is complete) but hands back the superseded one's page
 *     cache as the next upload starts (src/sftp/page-cache.ts); sshd truncates its target on open
 *     and reuses the memory it just freed.
 *   - "same memory": each server's previous upload is deleted just before its next, so both write
 *     into memory just freed: what the servers themselves cost.
 * The goal is checked in both; the figures say which one a reader is looking at.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');
const MB = 1_000_000;
const BENCH_MB = Number(process.env.BENCH_MB ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const RSS_MB = Number(process.env.BENCH_RSS_MB ?? 400);
const CLIENTS = (process.env.BENCH_CLIENTS ?? 'sftp,curl').split(',').filter((c) => c === 'sftp' || c === 'curl');
const TENANT = `bench-${randomBytes(3).toString('hex')}`;
const BARE = process.env.BENCH_BARE === '1';
const NULL = process.env.BENCH_NULL === '1';
/** See the header. */
const CONDITIONS = [
  {
    key: 'deployed',
    label: 'as deployed',
    title: 'as deployed: rosterd keeps every upload, sshd overwrites its file',
    tidyBefore: false,
  },
  {
    key: 'same',
    label: 'same memory',
    title: "same memory for both: each server's previous upload deleted just before its next",
    tidyBefore: true,
  },
];
/** An upload that takes longer than this has hung: the client is killed and the run fails. */
const UPLOAD_DEADLINE_MS = Math.max(120_000, BENCH_MB * 1000);
const RSS_LIMIT_MB = 300;
const GOAL_RATIO = 1.2;

const dist = (p) => import(path.join(DIST, p));

if (process.argv[2] === '--serve') await serve();
else {
  await main().catch((err) => {
    console.error(`bench-sftp: ${err.message}`);
    process.exitCode = 1;
  });
}

/** Child mode: the rosterd SFTP server alone (no scheduler), so its memory is rosterd's. */
async function serve() {
  const { loadConfig } = await dist('config/config.js');
  const { createLogger } = await dist('log/logger.js');
  const { createPool } = await dist('store/db.js');
  const { createSftpServer } = await dist('sftp/server.js');
  const config = loadConfig(process.env);
  const logger = createLogger(config.LOG_LEVEL, process.stderr);
  const pool = createPool(config.DATABASE_URL, logger, 4);
  const server = createSftpServer({ config, logger, pool, clock: { now: () => new Date() } });
  const { port } = await server.listen();
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  const stop = async () => {
    await server.close(0);
    await pool.end();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function main() {
  if (!existsSync(path.join(DIST, 'sftp', 'server.js')))
    fail('dist/ is missing or stale: run `npm run build` first (npm run bench:sftp does).');
  for (const tool of ['sftp', 'ssh-keygen', 'curl'])
    if (!(await which(tool))) fail(`${tool} is not installed; the benchmark needs the OpenSSH client and curl.`);
  const sshdPath = (await which('sshd')) ?? (existsSync('/usr/sbin/sshd') ? '/usr/sbin/sshd' : null);
  if (!sshdPath) {
    console.log('! OpenSSH sshd is not installed, so there is nothing to compare with: only rosterd is measured.');
    console.log('  Install it with `apt-get install -y openssh-server` (as root); the benchmark starts its own private sshd.');
  }

  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rosterd-bench-sftp-'));
  // Run as root, the embedded Postgres drops to the "postgres" user, which must reach tmp/data.
  if (process.getuid?.() === 0) await fs.chmod(tmp, 0o711);
  const cleanups = [];
  const cleanup = async () => {
    while (cleanups.length)
      await cleanups
        .pop()()
        .catch(() => undefined);
    await fs.rm(tmp, { recursive: true, force: true });
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    console.log(`rosterd SFTP benchmark: ${BENCH_MB} MB uploads, ${ROUNDS} rounds per client; memory during a ${RSS_MB} MB upload`);
    const keyPath = path.join(tmp, 'id_ed25519');
    await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench', '-f', keyPath]);
    const file = path.join(tmp, 'users.csv');
    await randomFile(file, BENCH_MB * MB);

    const db = await openDatabase(tmp, cleanups);
    const rosterd = await startRosterd(tmp, db.url, keyPath, cleanups);
    const sshd = sshdPath ? await startSshd(sshdPath, tmp, keyPath, cleanups) : null;
    const bare = BARE ? await startBare(tmp, cleanups) : null;
    const devNull = NULL && sshd ? { ...sshd, name: 'null', remotePath: '/dev/null', tidy: async () => undefined } : null;
    const servers = [rosterd, sshd, bare, devNull].filter((server) => server !== null);
    /** Reference points printed beside the ratio: [server, label]. */
    const references = [
      [bare, 'bare ssh2'],
      [devNull, 'sshd to /dev/null'],
    ].filter(([server]) => server !== null);

    const results = {};
    for (const client of CLIENTS) {
      results[client] = {};
      // One untimed upload to each server first: rosterd is a long-running daemon whose code is
      // compiled once it has run (a fresh process is slower at first), and both servers' first
      // upload would also pay for cold caches. sshd forks a fresh process per connection anyway.
      process.stdout.write(`  ${client.padEnd(4)}: one untimed warm-up upload to each server\n`);
      for (const server of servers) await upload(client, server, keyPath, file);
      for (const condition of CONDITIONS) {
        results[client][condition.key] = Object.fromEntries(servers.map((server) => [server.name, []]));
        process.stdout.write(`  ${client.padEnd(4)}: ${condition.title}\n`);
        for (let round = 0; round < ROUNDS; round++) {
          const order = round % 2 === 0 ? servers : [...servers].reverse();
          for (const server of order) {
            const target = server.name;
            if (condition.tidyBefore) await server.tidy();
            const cpuBefore = cpuSeconds(server.pid);
            const clientBefore = childCpu();
            const seconds = await upload(client, server, keyPath, file);
            await sleep(100); // sshd reaps the session process, whose CPU time then counts
            const cpuAfter = cpuSeconds(server.pid);
            const [cpu, user, sys] = cpuAfter.map((v, i) => v - cpuBefore[i]);
            const clientCpu = childCpu() - clientBefore;
            results[client][condition.key][target].push((BENCH_MB * MB) / seconds / MB);
            process.stdout.write(
              `  ${client.padEnd(4)} -> ${target.padEnd(7)} round ${round + 1}: ${((BENCH_MB * MB) / seconds / MB).toFixed(1).padStart(6)} MB/s, server CPU ${cpu.toFixed(2)} s (user ${user.toFixed(2)}, system ${sys.toFixed(2)}), client CPU ${clientCpu.toFixed(2)} s\n`,
            );
          }
        }
        // Every upload kept so far goes now (the disk would fill over many rounds otherwise).
        for (const server of servers) await server.tidy();
      }
    }

    console.log('\nthroughput (median MB/s)');
    let allMet = true;
    for (const client of CLIENTS) {
      for (const condition of CONDITIONS) {
        const of = results[client][condition.key];
        const r = median(of.rosterd);
        const o = sshd ? median(of.openssh) : null;
        const ratio = o ? r / o : null;
        if (ratio !== null && ratio < GOAL_RATIO) allMet = false;
        console.log(
          `  ${client.padEnd(5)} ${condition.label.padEnd(12)} rosterd ${r.toFixed(1).padStart(6)}` +
            (o === null
              ? ''
              : `   OpenSSH ${o.toFixed(1).padStart(6)}   ratio ${ratio.toFixed(2)}x (goal ${GOAL_RATIO}x: ${ratio >= GOAL_RATIO ? 'met' : 'NOT met'})` +
                `, single rounds ${roundRatios(of.rosterd, of.openssh)}`) +
            references
              .map(([server, label]) => {
                const m = median(of[server.name]);
                return `   ${label} ${m.toFixed(1)}${o === null ? '' : ` (${(m / o).toFixed(2)}x)`}`;
              })
              .join(''),
        );
      }
    }

    if (RSS_MB <= 0) return console.log(allMet ? '\nthroughput goals met' : '\nsome goals NOT met (see above)');
    const bigFile = path.join(tmp, 'big.csv');
    await fs.rm(file);
    await randomFile(bigFile, RSS_MB * MB);
    console.log(`\nrosterd memory during a ${RSS_MB} MB upload (limit ${RSS_LIMIT_MB} MB)`);
    for (const client of CLIENTS) {
      const { peak, seconds } = await withRssSampling(rosterd.pid, () => upload(client, rosterd, keyPath, bigFile));
      const ok = peak / 1024 < RSS_LIMIT_MB;
      if (!ok) allMet = false;
      console.log(
        `  ${client.padEnd(5)} peak RSS ${(peak / 1024).toFixed(0)} MB (${ok ? 'ok' : 'OVER the limit'}), ${((RSS_MB * MB) / seconds / MB).toFixed(1)} MB/s`,
      );
      await rosterd.tidy();
    }
    console.log(`  process high-water mark (VmHWM) over the whole run: ${(statusKb(rosterd.pid, 'VmHWM') / 1024).toFixed(0)} MB`);
    console.log(allMet ? '\nall goals met' : '\nsome goals NOT met (see above)');
  } finally {
    await cleanup();
  }
}

// --- servers -------------------------------------------------------------------------------

async function openDatabase(tmp, cleanups) {
  const { createLogger } = await dist('log/logger.js');
  const { createPool } = await dist('store/db.js');
  const { migrate } = await dist('store/migrate.js');
  const { createTenant } = await dist('store/tenants.js');
  const logger = createLogger('warn', process.stderr);
  let url = process.env.DATABASE_URL;
  if (!url) {
    const { startEmbeddedPostgres } = await dist('store/embedded.js');
    process.stdout.write('starting an embedded Postgres... ');
    const embedded = await startEmbeddedPostgres(path.join(tmp, 'data'), logger);
    cleanups.push(() => embedded.release());
    console.log('ok');
    url = embedded.url;
  }
  const pool = createPool(url, logger, 2);
  cleanups.push(() => pool.end());
  await migrate(pool, logger);
  await createTenant(pool, TENANT, { adminEmails: ['bench@example.com'], name: 'SFTP benchmark' });
  cleanups.push(async () => {
    // Leaves a shared database (DATABASE_URL) as it was.
    const tenant = `(SELECT id FROM tenants WHERE subdomain = $1)`;
    await pool.query(`DELETE FROM uploads WHERE tenant_id = ${tenant}`, [TENANT]);
    await pool.query(`DELETE FROM ssh_keys WHERE tenant_id = ${tenant}`, [TENANT]);
    await pool.query(`DELETE FROM tenants WHERE subdomain = $1`, [TENANT]);
  });
  return { url, pool };
}

async function startRosterd(tmp, databaseUrl, keyPath, cleanups) {
  const { addKey } = await dist('store/keys.js');
  const { createLogger } = await dist('log/logger.js');
  const { createPool } = await dist('store/db.js');
  const pool = createPool(databaseUrl, createLogger('warn', process.stderr), 1);
  await addKey(pool, TENANT, await fs.readFile(`${keyPath}.pub`, 'utf8'));
  await pool.end();
  const dataDir = path.join(tmp, 'data');
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_PROFILE)}`] : [];
  const child = spawn(process.execPath, [...profile, fileURLToPath(import.meta.url), '--serve'], {
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      SFTP_HOST: '127.0.0.1',
      SFTP_PORT: '0',
      MAX_UPLOAD_BYTES: String(4 * 1024 ** 3),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanups.push(() => stopChild(child));
  const port = await portFromStdout(child, 'rosterd');
  const uploads = path.join(dataDir, 'uploads', TENANT);
  return {
    name: 'rosterd',
    pid: child.pid,
    port,
    user: TENANT,
    remotePath: '/users.csv',
    // The previous upload: its received copy and the file the client sees (the same inode).
    tidy: async () => {
      await fs.rm(uploads, { recursive: true, force: true });
      await fs.rm(path.join(dataDir, 'sftp', TENANT, 'users.csv'), { force: true });
    },
  };
}

/** The minimal ssh2 server (BENCH_BARE=1), for reference. */
async function startBare(tmp, cleanups) {
  const dir = path.join(tmp, 'bare');
  await fs.mkdir(dir, { recursive: true });
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'bare-ssh2-sftp.mjs'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => stopChild(child));
  const port = await portFromStdout(child, 'the bare ssh2 server');
  return {
    name: 'bare',
    pid: child.pid,
    port,
    user: 'bench',
    remotePath: '/users.csv',
    tidy: () => fs.rm(path.join(dir, 'users.csv'), { force: true }),
  };
}

async function startSshd(sshdPath, tmp, keyPath, cleanups) {
  const dir = path.join(tmp, 'sshd');
  const target = path.join(dir, 'target');
  await fs.mkdir(target, { recursive: true });
  await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_ed25519')]);
  await fs.copyFile(`${keyPath}.pub`, path.join(dir, 'authorized_keys'));
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  await fs.writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_ed25519')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  if (process.getuid?.() === 0) await fs.mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  const child = spawn(sshdPath, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  cleanups.push(() => stopChild(child));
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline)
      fail(`the private sshd did not start: ${stderr.trim() || `exit ${child.exitCode}`}`);
    await sleep(50);
  }
  return {
    name: 'openssh',
    pid: child.pid,
    port,
    user: os.userInfo().username,
    remotePath: path.join(target, 'users.csv'),
    tidy: () => fs.rm(path.join(target, 'users.csv'), { force: true }),
  };
}

/** The port a server child prints as its first line, `{"port": N}`; fails after 30 s or on exit. */
function portFromStdout(child, name) {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start listening within 30 s`)), 30_000);
    const done = (fn, value) => (clearTimeout(timer), fn(value));
    child.stdout.on('data', (d) => {
      out += d;
      if (!out.includes('\n')) return;
      try {
        done(resolve, JSON.parse(out.split('\n')[0]).port);
      } catch {
        done(reject, new Error(`${name} printed something other than its port: ${out.split('\n')[0].slice(0, 200)}`));
      }
    });
    child.once('exit', (code) => done(reject, new Error(`${name} exited (${code}) before listening`)));
  });
}

// --- clients -------------------------------------------------------------------------------

/** Uploads `file` with the client; seconds from start to exit (connection setup included, as a SIS sees it). */
async function upload(client, server, keyPath, file) {
  const ssh = [
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'LogLevel=ERROR',
  ];
  const [cmd, args, input] =
    client === 'sftp'
      ? [
          'sftp',
          [...ssh, '-P', String(server.port), '-i', keyPath, '-b', '-', `${server.user}@127.0.0.1`],
          `put ${file} ${server.remotePath}\n`,
        ]
      : [
          'curl',
          [
            '-sS',
            '-k',
            '--key',
            keyPath,
            '--pubkey',
            `${keyPath}.pub`,
            '-T',
            file,
            `sftp://${server.user}@127.0.0.1:${server.port}${server.remotePath}`,
          ],
          undefined,
        ];
  const started = process.hrtime.bigint();
  await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, SSH_AUTH_SOCK: '' } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end(input ?? '');
    const deadline = setTimeout(() => {
      stderr += `(killed: no end after ${UPLOAD_DEADLINE_MS / 1000} s)`;
      child.kill('SIGKILL');
    }, UPLOAD_DEADLINE_MS);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(deadline);
      if (code === 0) resolve();
      else reject(new Error(`${client} upload to ${server.name} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** The spread of rosterd's ratio within rounds (both servers timed back to back): how much the machine moved. */
function roundRatios(rosterd, openssh) {
  const ratios = rosterd.map((r, i) => r / openssh[i]);
  return `${Math.min(...ratios).toFixed(2)}x–${Math.max(...ratios).toFixed(2)}x`;
}

async function withRssSampling(pid, fn) {
  let peak = statusKb(pid, 'VmRSS');
  const timer = setInterval(() => (peak = Math.max(peak, statusKb(pid, 'VmRSS'))), 20);
  try {
    const seconds = await fn();
    return { peak: Math.max(peak, statusKb(pid, 'VmRSS')), seconds };
  } finally {
    clearInterval(timer);
  }
}

/** CPU seconds [total, user, system] of a process and its reaped children (sshd's session processes). */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const user = (f[11] + f[13]) / 100; // utime + cutime
  const sys = (f[12] + f[14]) / 100; // stime + cstime
  return [user + sys, user, sys];
}

/** CPU seconds of this process's reaped children: the clients, each timed upload's one. */
function childCpu() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return (f[13] + f[14]) / 100; // cutime + cstime
}

function statusKb(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

// --- helpers -------------------------------------------------------------------------------

async function randomFile(file, bytes) {
  const out = createWriteStream(file);
  for (let left = bytes; left > 0; left -= MB) {
    if (!out.write(randomBytes(Math.min(MB, left)))) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function which(cmd) {
  try {
    return (await execFileAsync('sh', ['-c', `command -v ${cmd}`])).stdout.trim() || null;
  } catch {
    return null;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => (clearTimeout(force), resolve()));
    child.kill('SIGTERM');
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function fail(message) {
  throw new Error(message);
}
