/**
 * The Postgres outbox (PRODUCT.md §6): a report is written here inside the transaction that
 * records the import's outcome, so the outcome and its report commit together or not at all.
 * delivery.ts sends what is here.
 */
import type pg from 'pg';
import type { Queryable } from '../store/db.js';
import type { MailMessage } from './types.js';

/** pending until a mail server accepts it (or its .eml file is written): never given up. */
export type OutboxStatus = 'pending' | 'sent';

/**
 * Queue a report. `client` must be the client of the transaction that records the outcome.
 * `now` (the caller's clock) is when it becomes due.
 */
export async function enqueueReport(
  client: pg.PoolClient,
  message: MailMessage,
  refs: { uploadId: string | null; now: Date },
): Promise<number> {
  const { rows } = await client.query<{ id: number }>(
    `INSERT INTO outbox (upload_id, message, created_at, next_attempt_at) VALUES ($1, $2, $3, $3) RETURNING id`,
    [refs.uploadId, JSON.stringify(message), refs.now],
  );
  const id = rows[0]?.id;
  if (id === undefined) throw new Error('outbox insert returned no id');
  return id;
}

/** What `import show` says about an upload's report email(s). */
export interface DeliveryStatus {
  id: number;
  uploadId: string | null;
  to: string[];
  subject: string;
  status: OutboxStatus;
  /** sending attempts made so far */
  attempts: number;
  /** when the next attempt is due (pending only) */
  nextAttemptAt: Date | null;
  lastError: string | null;
  createdAt: Date;
  sentAt: Date | null;
  /** the SMTP server's answer, or the .eml file written */
  deliveredAs: string | null;
}

interface StatusRow {
  id: number;
  upload_id: string | null;
  to: string[] | null;
  subject: string | null;
  status: OutboxStatus;
  attempts: number;
  next_attempt_at: Date;
  last_error: string | null;
  created_at: Date;
  sent_at: Date | null;
  delivered_as: string | null;
}

const toStatus = (r: StatusRow): DeliveryStatus => ({
  id: r.id,
  uploadId: r.upload_id,
  to: r.to ?? [],
  subject: r.subject ?? '',
  status: r.status,
  attempts: r.attempts,
  nextAttemptAt: r.status === 'pending' ? r.next_attempt_at : null,
  lastError: r.last_error,
  createdAt: r.created_at,
  sentAt: r.sent_at,
  deliveredAs: r.delivered_as,
});

// Not the bodies or attachments: they can be large.
const STATUS_COLUMNS = `id, upload_id,
  ARRAY(SELECT jsonb_array_elements_text(message->'to')) AS "to", message->>'subject' AS subject,
  status, attempts, next_attempt_at, last_error, created_at, sent_at, delivered_as`;

/** The report emails of one upload, oldest first. */
export async function deliveryStatus(db: Queryable, uploadId: string): Promise<DeliveryStatus[]> {
  const { rows } = await db.query<StatusRow>(`SELECT ${STATUS_COLUMNS} FROM outbox WHERE upload_id = $1 ORDER BY id`, [uploadId]);
  return rows.map(toStatus);
}

/** The report emails of many uploads at once (for `import list`), keyed by upload id. */
export async function deliveryStatuses(db: Queryable, uploadIds: readonly string[]): Promise<Map<string, DeliveryStatus[]>> {
  const byUpload = new Map<string, DeliveryStatus[]>();
  if (uploadIds.length === 0) return byUpload;
  const { rows } = await db.query<StatusRow>(`SELECT ${STATUS_COLUMNS} FROM outbox WHERE upload_id = ANY($1::uuid[]) ORDER BY id`, [
    uploadIds,
  ]);
  for (const row of rows) {
    const status = toStatus(row);
    if (status.uploadId === null) continue;
    const list = byUpload.get(status.uploadId) ?? [];
    list.push(status);
    byUpload.set(status.uploadId, list);
  }
  return byUpload;
}
