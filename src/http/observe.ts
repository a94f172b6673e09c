import type { EventEmitter } from 'node:events';
import type { SftpEvents } from '../sftp/server.js';
import type { Metrics } from './metrics.js';

/**
 * Moves the SFTP and upload metrics from the SFTP server's events. Returns a function that stops listening.
 * Sessions are counted from `sessionOpened`/`sessionClosed` (authenticated sessions only).
 */
export function observeSftp(metrics: Metrics, events: EventEmitter<SftpEvents>): () => void {
  const opened = () => metrics.sftpSessionsOpen.inc();
  const closed = () => metrics.sftpSessionsOpen.dec();
  const authFailed = (failure: SftpEvents['authFailed'][0]) => metrics.authFailures.inc({ reason: failure.reason });
  const received = (upload: SftpEvents['uploadReceived'][0]) => {
    metrics.uploadsReceived.inc({ file: upload.fileName });
    metrics.uploadBytesReceived.inc({ file: upload.fileName }, upload.bytes);
  };
  const failed = (upload: SftpEvents['uploadFailed'][0]) => metrics.uploadsFailed.inc({ reason: upload.reason });
  events.on('sessionOpened', opened);
  events.on('sessionClosed', closed);
  events.on('authFailed', authFailed);
  events.on('uploadReceived', received);
  events.on('uploadFailed', failed);
  return () => {
    events.off('sessionOpened', opened);
    events.off('sessionClosed', closed);
    events.off('authFailed', authFailed);
    events.off('uploadReceived', received);
    events.off('uploadFailed', failed);
  };
}

/** What an import ended with, as the importer knows it (an ImportRecord fits). */
export interface ImportOutcome {
  file: string;
  /** the upload's status after the import: succeeded, completed_with_errors, failed, held, … */
  status: string;
  counts: { rows: number };
  durationMs: number | null;
}

/** Moves the import metrics for one import that reached an outcome. */
export function recordImport(metrics: Metrics, outcome: ImportOutcome): void {
  metrics.imports.inc({ outcome: outcome.status });
  // Only an import that ran has a duration and rows read: a superseded upload, or one that failed
  // after its attempts, is counted but adds no zeros to the histograms.
  if (outcome.durationMs === null) return;
  metrics.importDuration.observe({ file: outcome.file, outcome: outcome.status }, outcome.durationMs / 1000);
  metrics.importRows.observe({ file: outcome.file }, outcome.counts.rows);
}
