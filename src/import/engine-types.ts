/**
 * Types of the import engine (applying, records), beside the reader contract in types.ts.
 */
import type { PoolClient } from 'pg';
import type { ImportMode } from './types.js';

export type { ReadResult, ReadSummary } from './read/summary.js';

/** The import being applied: its upload row and its tenant's hold threshold. */
export interface ImportTarget {
  uploadId: string;
  tenantId: number;
  thresholdPercent: number;
  thresholdCount: number | null;
}

export interface ReadOutcome {
  mode: ImportMode;
  encoding: string;
}

/** Points inside an import where tests inject faults (for example, killing the connection). */
export type ImportPoint = 'staged' | 'planned' | 'hashed' | 'created' | 'updated' | 'deactivated' | 'groups';

export type ImportHook = (point: ImportPoint, client: PoolClient) => Promise<void>;
