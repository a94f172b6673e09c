#!/usr/bin/env node
/**
 * npm run bench:import — the import engine against a bare COPY (issue 3).
 *
 * Generates a full-sync users.csv of BENCH_ROWS rows (default 1,000,000; no passwords), then, in
 * each of BENCH_ROUNDS rounds (default 3), in a fresh database: times a bare `COPY` of it into a
 * table with the same unique index as users, then the first import and an unchanged re-import
 * through runImport (from dist/), twice: straight after the first import, and as the next night
 * finds the table, after the VACUUM ANALYZE autovacuum does in between (run untimed here). Each
 * round's ratios compare the imports with that round's COPY (measured a few seconds apart, so a
 * busy machine tends to slow both alike); the summary gives the median of
 * each figure and of each ratio, and the peak RSS of this process, which runs the imports (it
 * also generates the file and streams the COPY, both in small buffers, so this bounds the import's
 * own peak from above). Then password hashes per second on one worker and on every core.
 *
 * Postgres: DATABASE_URL, or the embedded one (in a temporary directory). Databases of its own
 * are created and dropped. Goals: first import <= 3x COPY, re-import <= 2x, peak RSS <= 250 MB,
 * hashing on 2 cores >= 1.8x one core.
 *
 * Each round also times a new district's first groups.csv on a new install, in a database of its
 * own: 2,000 students and a teacher, each student in 5 of 1,000 classes the teacher owns, all new
 * (10,000 lines). Freshly created tables have no statistics, and the planner once joined each
 * line to every group by a nested loop there (6 s rather than 0.4 s, growing with lines times
 * classes). Goal: at least 10,000 lines/s.
 */
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, createReadStream, createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { loadConfig } from '../dist/config/config.js';
import { createPasswordHasher } from '../dist/import/hash-pool.js';
import { runImport } from '../dist/import/run-import.js';
import { createLogger } from '../dist/log/logger.js';
import { createPool } from '../dist/store/db.js';
import { startEmbeddedPostgres } from '../dist/store/embedded.js';
import { migrate } from '../dist/store/migrate.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const SCHOOLS = 20;
const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', process.stderr);
const work = mkdtempSync(path.join(os.tmpdir(), 'rosterd-bench-'));
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const peakRss = () => process.resourceUsage().maxRSS * 1024;
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;

const median = (xs) => {
  const a = [...xs].sort((x, y) => x - y);
  const m = Math.floor(a.length / 2);
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
};

async function timed(fn) {
  const t = performance.now();
  const result = await fn();
  return { ms: performance.now() - t, result };
}

async function generate(file) {
  const out = createWriteStream(file);
  out.write('username,email,first name,last name,school,graduation year,role,sis id\n');
  const roles = ['student', 'student', 'student', 'student', 'teacher', 'staff'];
  for (let i = 0; i < ROWS; i++) {
    const n = String(i).padStart(7, '0');
    const line = `user${n},user${n}@district.example.org,First${i % 997},Last${i % 9973},School ${i % SCHOOLS},${2026 + (i % 13)},${roles[i % roles.length]},SIS${n}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

async function bareCopy(pool, file) {
  await pool.query(`DROP TABLE IF EXISTS bench_copy`);
  await pool.query(`CREATE TABLE bench_copy (
    tenant_id bigint NOT NULL DEFAULT 1, username text NOT NULL, email text, first_name text, last_name text,
    school text, graduation_year smallint, role text, sis_id text)`);
  await pool.query(`CREATE UNIQUE INDEX bench_copy_uq ON bench_copy (tenant_id, lower(username))`);
  const client = await pool.connect();
  try {
    const { ms } = await timed(() =>
      pipeline(
        createReadStream(file, { highWaterMark: 1 << 16 }),
        client.query(
          copyFrom(`COPY bench_copy (username, email, first_name, last_name, school, graduation_year, role, sis_id)
                               FROM STDIN WITH (FORMAT csv, HEADER true)`),
        ),
      ),
    );
    return ms;
  } finally {
    client.release();
    await pool.query('DROP TABLE bench_copy');
  }
}

async function receive(pool, dataDir, file, fileName = 'users.csv') {
  const rel = path.join('uploads', 'bench', `${randomUUID()}.csv`);
  mkdirSync(path.join(dataDir, 'uploads', 'bench'), { recursive: true });
  await pipeline(createReadStream(file), createWriteStream(path.join(dataDir, rel)));
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  const { rows } = await pool.query(
    `INSERT INTO uploads (tenant_id, file_name, bytes, sha256, stored_path, status)
     SELECT id, $4, $1, $2, $3, 'running' FROM tenants WHERE subdomain = 'bench' RETURNING id`,
    [statSync(file).size, hash.digest('hex'), rel, fileName],
  );
  return rows[0].id;
}

/** runImport with the engine's phase points timed (the internal hook the tests use for faults). */
async function importTimed(ctx, id) {
  const t0 = performance.now();
  const phases = [];
  const at = async (point) => {
    phases.push(`${point} ${((performance.now() - t0) / 1000).toFixed(2)}`);
  };
  const { ms, result } = await timed(() => runImport(ctx, id, { at }));
  return { ms, result, phases: phases.join(', ') };
}

/**
 * fn(pool, config) in a new database of its own, migrated, with a tenant "bench" whose threshold is
 * `threshold` percent; the database is dropped afterwards.
 */
async function inBenchDatabase(adminUrl, admin, name, threshold, fn) {
  const dbName = `rosterd_bench_${name}_${process.pid}`;
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const pool = createPool(url.toString(), logger, 4);
  try {
    await migrate(pool, logger);
    const config = loadConfig({ DATA_DIR: path.join(work, name), DATABASE_URL: url.toString() });
    await pool.query(`INSERT INTO tenants (subdomain, name, admin_emails, threshold_percent) VALUES ('bench', 'Bench', '{a@b.org}', $1)`, [
      threshold,
    ]);
    return await fn(pool, config);
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
  }
}

/** A new district's first groups.csv in a new database (see the header): its lines per second. */
async function firstGroupsCsv(adminUrl, admin, n) {
  return inBenchDatabase(adminUrl, admin, `groups_${n}`, 100, async (pool, config) => {
    const dataDir = config.DATA_DIR;
    const ctx = { pool, logger, clock: { now: () => new Date() }, config };
    const students = Array.from({ length: 2000 }, (_, k) => `pupil${k}`);
    const usersFile = path.join(work, `groups-users-${n}.csv`);
    writeFileSync(usersFile, ['username,access type', 'teach001,Manager', ...students.map((u) => `${u},`)].join('\n') + '\n');
    await runImport(ctx, await receive(pool, dataDir, usersFile));
    const groupsFile = path.join(work, `groups-${n}.csv`);
    const lines = students.flatMap((u, k) => Array.from({ length: 5 }, (_, g) => `${u},teach001,Class ${(k * 5 + g) % 1000}`));
    writeFileSync(groupsFile, ['username,owner,group', ...lines].join('\n') + '\n');
    const { ms, result } = await timed(async () => runImport(ctx, await receive(pool, dataDir, groupsFile, 'groups.csv')));
    if (result.status !== 'succeeded' || result.counts.created !== lines.length) {
      throw new Error(`round ${n}: unexpected groups.csv outcome: ${result.status} ${JSON.stringify(result.counts)}`);
    }
    console.log(`  a new district's first groups.csv (${lines.length.toLocaleString('en-US')} lines, 1,000 new classes): ${secs(ms)}`);
    return (lines.length / ms) * 1000;
  });
}

async function hashRate(workers, count) {
  const hasher = createPasswordHasher({ workers });
  try {
    await hasher.hash(Array.from({ length: workers }, (_, i) => `warm-up-${i}`)); // start the workers
    const { ms } = await timed(() => hasher.hash(Array.from({ length: count }, (_, i) => `password-${i}`)));
    return (count / ms) * 1000;
  } finally {
    await hasher.close();
  }
}

/** One round in a database of its own: COPY, first import, unchanged re-import. */
async function round(adminUrl, admin, file, n) {
  return inBenchDatabase(adminUrl, admin, `round_${n}`, 10, async (pool, config) => {
    const dataDir = config.DATA_DIR;
    await pool.query(`INSERT INTO schools (tenant_id, name) SELECT t.id, 'School ' || n FROM tenants t, generate_series(0, $1 - 1) n`, [
      SCHOOLS,
    ]);
    await pool.query('CHECKPOINT'); // each round starts from the same state

    const copyMs = await bareCopy(pool, file);
    const ctx = { pool, logger, clock: { now: () => new Date() }, config };
    const first = await importTimed(ctx, await receive(pool, dataDir, file));
    // Straight after the first import: the first reader of a million freshly inserted rows also
    // sets their hint bits (dirtying, and with a small shared_buffers writing, every page).
    const hot = await importTimed(ctx, await receive(pool, dataDir, file));
    // The next night: by then autovacuum has visited the table (a million inserts trigger it).
    // Done here explicitly, untimed.
    const vacuum = await timed(() => pool.query('VACUUM (ANALYZE) users'));
    const again = await importTimed(ctx, await receive(pool, dataDir, file));
    for (const [what, r, want] of [
      ['first import', first, { created: ROWS }],
      ['re-import', hot, { unchanged: ROWS, updated: 0, created: 0 }],
      ['next-night re-import', again, { unchanged: ROWS, updated: 0, created: 0 }],
    ]) {
      const c = r.result.counts;
      if (r.result.status !== 'succeeded' || Object.entries(want).some(([k, v]) => c[k] !== v)) {
        throw new Error(`round ${n}: unexpected ${what} outcome: ${r.result.status} ${JSON.stringify(c)}`);
      }
    }
    const x = (ms) => `${secs(ms)} (${(ms / copyMs).toFixed(2)}x)`;
    console.log(
      `round ${n}: COPY ${secs(copyMs)}; first import ${x(first.ms)}; unchanged re-import right after it ${x(hot.ms)}, ` +
        `the next night ${x(again.ms)}  [load ${os.loadavg()[0].toFixed(2)}]`,
    );
    console.log(`  first import phases (s since start):         ${first.phases}`);
    console.log(`  re-import right after phases:                ${hot.phases}`);
    console.log(`  next-night re-import phases (after VACUUM ANALYZE users, ${secs(vacuum.ms)} untimed): ${again.phases}`);
    return { copyMs, firstMs: first.ms, hotMs: hot.ms, againMs: again.ms };
  });
}

async function main() {
  let embedded;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    chmodSync(work, 0o711); // as root, the embedded Postgres runs as "postgres" and must reach its directory
    embedded = await startEmbeddedPostgres(path.join(work, 'pgdata'), logger);
    adminUrl = embedded.url;
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const file = path.join(work, 'users.csv');
    const gen = await timed(() => generate(file));
    console.log(`roster: ${ROWS.toLocaleString('en-US')} rows, ${mb(statSync(file).size)}, generated in ${secs(gen.ms)}`);
    console.log(
      `${ROUNDS} round(s); load average at start ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} on ${os.availableParallelism()} cores`,
    );

    const rounds = [];
    const groupsRates = [];
    for (let n = 1; n <= ROUNDS; n++) {
      rounds.push(await round(adminUrl, admin, file, n));
      groupsRates.push(await firstGroupsCsv(adminUrl, admin, n));
    }
    const m = (key) => median(rounds.map((r) => r[key]));
    const ratio = (key) => median(rounds.map((r) => r[key] / r.copyMs));
    console.log(`median of ${ROUNDS} round(s):`);
    console.log(`  bare COPY into a table with the same unique index: ${secs(m('copyMs'))}`);
    console.log(`  first import:        ${secs(m('firstMs'))}  ratio to COPY ${ratio('firstMs').toFixed(2)}x (goal <= 3x)`);
    console.log(`  unchanged re-import, right after the first: ${secs(m('hotMs'))}  ratio to COPY ${ratio('hotMs').toFixed(2)}x`);
    console.log(
      `  unchanged re-import, the next night:        ${secs(m('againMs'))}  ratio to COPY ${ratio('againMs').toFixed(2)}x (goal <= 2x)`,
    );
    console.log(
      `  a new district's first groups.csv: ${Math.round(median(groupsRates)).toLocaleString('en-US')} lines/s (goal >= 10,000 lines/s)`,
    );
    console.log(`  peak RSS of this process (it runs the imports): ${mb(peakRss())} (goal <= 250 MB)`);

    const cores = os.availableParallelism();
    const perWorker = Number(process.env.BENCH_HASHES ?? 24);
    const one = await hashRate(1, perWorker);
    const all = await hashRate(cores, perWorker * cores);
    console.log(
      `password hashing (scrypt ln=15,r=8,p=1): ${one.toFixed(1)}/s on 1 core, ${all.toFixed(1)}/s on ${cores} cores ` +
        `(${(all / one).toFixed(2)}x; goal >= 1.8x on 2 cores)`,
    );
  } finally {
    await admin.end();
    await embedded?.release();
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
