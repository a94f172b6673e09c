import { promises as fs } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { Config } from '../config/config.js';
import { toError } from '../errors.js';
import { isOutboxFile, outboxDir } from '../report/mailer.js';
import { readDirIfExists } from '../store/paths.js';
import { ACCEPTED_FILE_NAMES, type Clock, type Logger } from '../types.js';

/**
 * Retention of received files (issue 5): the immutable copies in DATA_DIR/uploads/<tenant>/ are
 * student data, so a copy older than RETENTION_DAYS is deleted, and so is the file the district
 * sees in its folder once it is that old. Its upload row (the import record,
 * its SHA-256, counts and errors) stays. RETENTION_DAYS=0 keeps every copy.
 *
 * Reports name students too (rows with errors, the attached CSV): a report sent before the cut-off
 * loses its text, HTML and attachments in the outbox, keeping who it went to, its subject and
 * when; its `.eml` file in DATA_DIR/outbox (reports without SMTP_URL) is deleted. A report not yet
 * sent keeps its body whatever its age: it is retried until the mail server accepts it.
 *
 * The walk starts from the files on disk, not from the uploads table: the table only grows, the
 * folder only holds what retention has not removed yet, so each run costs what is left to do.
 * A copy is removed only when its upload is finished with: a pending, running or held upload
 * keeps its file whatever its age (a held import may still be approved). A file with no upload
 * row (left by a crash between copy and insert) is removed by its modification time.
 * Several replicas on one data volume may run this at once: a file already gone is skipped.
 */
export interface RetentionDeps {
  config: Pick<Config, 'DATA_DIR' | 'RETENTION_DAYS'>;
  pool: pg.Pool;
  clock: Clock;
  logger: Logger;
}

export interface RemovedCopy {
  /** relative to DATA_DIR, as in uploads.stored_path */
  path: string;
  /** null for a file no upload row refers to */
  uploadId: string | null;
  bytes: number;
}

export interface RetentionResult {
  /** copies received before this were due; null when RETENTION_DAYS is 0 (nothing is removed) */
  cutoff: Date | null;
  removed: RemovedCopy[];
  /** copies that were due but could not be removed (logged; retried next run) */
  failed: Array<{ path: string; error: string }>;
  /** outbox rows whose report body was removed */
  reportsCleared: number;
  /** .eml files removed, relative to DATA_DIR */
  emlRemoved: string[];
  /** files the districts see (DATA_DIR/sftp/<tenant>/users.csv…) removed, relative to DATA_DIR */
  visibleRemoved: string[];
}

/** Upload statuses whose file is still needed: to import it, or to approve a held import. */
const STILL_NEEDED = ['pending', 'running', 'held'];
const DAY_MS = 86_400_000;
/** Paths looked up in one query. */
const BATCH = 1_000;

export async function applyRetention(deps: RetentionDeps): Promise<RetentionResult> {
  const { config, pool, clock, logger } = deps;
  if (config.RETENTION_DAYS === 0) return { cutoff: null, removed: [], failed: [], reportsCleared: 0, emlRemoved: [], visibleRemoved: [] };
  const cutoff = new Date(clock.now().getTime() - config.RETENTION_DAYS * DAY_MS);
  const result: RetentionResult = { cutoff, removed: [], failed: [], reportsCleared: 0, emlRemoved: [], visibleRemoved: [] };

  for await (const [file, record] of withRecords(pool, await listCopies(config.DATA_DIR))) {
    const due = record ? record.received_at < cutoff && !STILL_NEEDED.includes(record.status) : file.mtime < cutoff;
    if (!due) continue;
    try {
      await fs.rm(path.join(config.DATA_DIR, file.relative), { force: true });
      result.removed.push({ path: file.relative, uploadId: record?.id ?? null, bytes: file.bytes });
      logger.info(
        {
          event: 'retention.deleted',
          uploadId: record?.id ?? null,
          path: file.relative,
          bytes: file.bytes,
          retentionDays: config.RETENTION_DAYS,
        },
        'upload copy deleted (retention)',
      );
    } catch (err) {
      const error = toError(err).message;
      result.failed.push({ path: file.relative, error });
      logger.warn({ event: 'retention.failed', path: file.relative, err }, 'upload copy could not be deleted');
    }
  }
  await removeOldVisibleFiles(deps, cutoff, result);
  await clearOldReports(deps, cutoff, result);
  return result;
}

/**
 * The users.csv a district sees in its folder is the same file as its latest received copy (a
 * second link): deleting the copy alone leaves the roster, passwords included, on disk and
 * readable over SFTP for as long as the district sends nothing newer. It goes at the same age.
 */
async function removeOldVisibleFiles(deps: RetentionDeps, cutoff: Date, result: RetentionResult): Promise<void> {
  const { config, logger } = deps;
  const root = path.join(config.DATA_DIR, 'sftp');
  for (const tenant of await readDirIfExists(root)) {
    if (!tenant.isDirectory()) continue;
    for (const name of ACCEPTED_FILE_NAMES) {
      const relative = path.join('sftp', tenant.name, name);
      const file = path.join(config.DATA_DIR, relative);
      try {
        const stat = await fs.lstat(file);
        if (!stat.isFile() || stat.mtime >= cutoff) continue;
        await fs.rm(file, { force: true });
        result.visibleRemoved.push(relative);
        logger.info(
          { event: 'retention.deleted', path: relative, bytes: stat.size, retentionDays: config.RETENTION_DAYS },
          'visible file deleted (retention)',
        );
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // none, or removed meanwhile
        result.failed.push({ path: relative, error: toError(err).message });
        logger.warn({ event: 'retention.failed', path: relative, err }, 'visible file could not be deleted');
      }
    }
  }
}

/** Report bodies sent before `cutoff`: out of the outbox, and their .eml files. */
async function clearOldReports(deps: RetentionDeps, cutoff: Date, result: RetentionResult): Promise<void> {
  const { config, pool, logger } = deps;
  const cleared = await pool.query(
    `UPDATE outbox
        SET message = (message - 'text' - 'html' - 'attachments') || jsonb_build_object('bodyRemoved', 'retention')
      WHERE status = 'sent' AND sent_at < $1 AND NOT message ? 'bodyRemoved'`,
    [cutoff],
  );
  result.reportsCleared = cleared.rowCount ?? 0;
  if (result.reportsCleared > 0) {
    logger.info(
      { event: 'retention.reports_cleared', count: result.reportsCleared, retentionDays: config.RETENTION_DAYS },
      'report bodies removed from the outbox (retention)',
    );
  }
  const dir = outboxDir(config.DATA_DIR);
  for (const entry of await readDirIfExists(dir)) {
    // Old ones only: a `.tmp` may be a report being written right now.
    if (!entry.isFile() || !isOutboxFile(entry.name)) continue;
    const relative = path.join('outbox', entry.name);
    try {
      const stat = await fs.stat(path.join(dir, entry.name));
      if (stat.mtime >= cutoff) continue;
      await fs.rm(path.join(dir, entry.name), { force: true });
      result.emlRemoved.push(relative);
      logger.info(
        { event: 'retention.deleted', path: relative, bytes: stat.size, retentionDays: config.RETENTION_DAYS },
        'report file deleted (retention)',
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed meanwhile by another replica
      result.failed.push({ path: relative, error: toError(err).message });
      logger.warn({ event: 'retention.failed', path: relative, err }, 'report file could not be deleted');
    }
  }
}

interface CopyFile {
  relative: string;
  bytes: number;
  mtime: Date;
}

/**
 * Received copies that no upload row refers to and that were written before `before` (a copy is
 * on disk a moment before its row commits). After a database is restored from a backup, these are
 * the files received since the backup: never imported, and removed by retention in due course.
 */
export async function unrecordedCopies(dataDir: string, pool: pg.Pool, before: Date): Promise<CopyFile[]> {
  const unrecorded: CopyFile[] = [];
  for await (const [file, record] of withRecords(
    pool,
    (await listCopies(dataDir)).filter((f) => f.mtime < before),
  )) {
    if (record === undefined) unrecorded.push(file);
  }
  return unrecorded;
}

interface CopyRecord {
  stored_path: string;
  id: string;
  received_at: Date;
  status: string;
}

/** Each copy with the upload row that refers to it, if any, looked up BATCH copies at a time. */
async function* withRecords(pool: pg.Pool, files: CopyFile[]): AsyncGenerator<[CopyFile, CopyRecord | undefined]> {
  for (let i = 0; i < files.length; i += BATCH) {
    const batch = files.slice(i, i + BATCH);
    const { rows } = await pool.query<CopyRecord>(
      `SELECT stored_path, id, received_at, status FROM uploads WHERE stored_path = ANY($1::text[])`,
      [batch.map((f) => f.relative)],
    );
    const records = new Map(rows.map((r) => [r.stored_path, r]));
    for (const file of batch) yield [file, records.get(file.relative)];
  }
}

/** Regular files in DATA_DIR/uploads/<tenant>/ (one level; nothing else lives there). */
async function listCopies(dataDir: string): Promise<CopyFile[]> {
  const root = path.join(dataDir, 'uploads');
  const tenants = await readDirIfExists(root);
  const files: CopyFile[] = [];
  for (const tenant of tenants) {
    if (!tenant.isDirectory()) continue;
    for (const entry of await readDirIfExists(path.join(root, tenant.name))) {
      if (!entry.isFile()) continue;
      const absolute = path.join(root, tenant.name, entry.name);
      const stat = await fs.stat(absolute).catch(() => undefined);
      if (!stat) continue; // removed meanwhile by another replica
      files.push({ relative: path.relative(dataDir, absolute), bytes: stat.size, mtime: stat.mtime });
    }
  }
  return files;
}

export interface RetentionTask {
  /** Waits for a run in progress, then stops; idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs applyRetention now and then every `intervalMs` (default hourly) until stopped. A failed
 * run is logged and tried again at the next interval; it never takes the daemon down.
 */
export function startRetention(deps: RetentionDeps, intervalMs = 3_600_000): RetentionTask {
  let running: Promise<void> | undefined;
  let stopped = false;
  const run = () => {
    if (running || stopped) return;
    running = applyRetention(deps)
      .then((r) => {
        if (r.removed.length > 0 || r.failed.length > 0 || r.reportsCleared > 0 || r.emlRemoved.length > 0 || r.visibleRemoved.length > 0) {
          deps.logger.info(
            {
              event: 'retention.run',
              removed: r.removed.length,
              reportsCleared: r.reportsCleared,
              emlRemoved: r.emlRemoved.length,
              visibleRemoved: r.visibleRemoved.length,
              failed: r.failed.length,
              cutoff: r.cutoff,
            },
            'retention run finished',
          );
        }
      })
      .catch((err: unknown) => deps.logger.warn({ event: 'retention.run', err }, 'retention run failed; will retry'))
      .finally(() => (running = undefined));
  };
  const timer = setInterval(run, intervalMs);
  timer.unref();
  if (deps.config.RETENTION_DAYS > 0) run();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
