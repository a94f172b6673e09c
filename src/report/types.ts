import type { ImportCounts, ImportIssue, ImportMode } from '../import/types.js';
import type { UploadStatus } from '../types.js';

/**
 * What a report is rendered from: the import record (the PRODUCT.md §7 shape) and its tenant.
 * Structural, so that any record with these fields can be passed as is.
 */
export interface ReportImport {
  id: string;
  file: string;
  sha256: string;
  bytes: number;
  /** a Date, or an ISO 8601 string with an offset (§7 `receivedAt`) */
  receivedAt: Date | string;
  status: UploadStatus;
  mode?: ImportMode | null | undefined;
  counts: ImportCounts;
  /** the errors found; `counts.errors` may be larger when the record keeps only some */
  errors: readonly ImportIssue[];
  warnings: readonly ImportIssue[];
  /** file-level failure or hold reason */
  message?: string | null | undefined;
  /** how the file was read: utf-8; windows-1252 when it was not valid UTF-8; mixed when only some lines were not */
  encoding?: string | null | undefined;
  /** how long the import took */
  durationMs?: number | null | undefined;
  /** true when `errors` or `warnings` lists fewer than `counts` says (the reader keeps the first 50,000) */
  issuesTruncated?: boolean | undefined;
  /** attempts that ended without an outcome (crash, lost connection), and why the last one did: for the operator only */
  attempts?: number | undefined;
  lastAttemptError?: string | null | undefined;
  /** the operator who had it imported at once (`import run --now`), not the schedule */
  requestedBy?: string | null | undefined;
  /** a held import that an operator approved (then applied) or rejected; times as `receivedAt` */
  approvedBy?: string | null | undefined;
  approvedAt?: Date | string | null | undefined;
  rejectedBy?: string | null | undefined;
  rejectedAt?: Date | string | null | undefined;
}

export interface ReportTenant {
  subdomain: string;
  name: string;
  timezone: string;
  adminEmails: readonly string[];
}

/** A user a held import would deactivate (never a password: there is no field for one). */
export interface DeactivationCandidate {
  username: string;
  email?: string | null | undefined;
  firstName?: string | null | undefined;
  lastName?: string | null | undefined;
  /** the school's name: a hold that an export missing a school caused shows as one school's users */
  school?: string | null | undefined;
  sisId?: string | null | undefined;
}

/** A membership a held groups.csv would remove. */
export interface RemovalCandidate {
  group: string;
  username: string;
  /** the group's owner, if it has one */
  owner?: string | null | undefined;
}

export interface ReplacedUpload {
  id: string;
  receivedAt: Date;
  bytes: number;
  sha256: string;
  /** held (its report asked for approval), rather than pending */
  wasHeld: boolean;
}

export interface ReportInput {
  import: ReportImport;
  tenant: ReportTenant;
  /** the sender, MAIL_FROM */
  from: string;
  /** for a held import: the users it would deactivate */
  wouldDeactivate?: readonly DeactivationCandidate[] | undefined;
  /** for a held groups.csv: the memberships it would remove */
  wouldRemove?: readonly RemovalCandidate[] | undefined;
  /**
   * Earlier uploads of the same file that this one replaced (superseded), oldest first: pending
   * ones were never imported, and held ones asked for a decision that is no longer needed
   */
  replaced?: readonly ReplacedUpload[] | undefined;
  /** a held users.csv's report: the groups.csv uploads that wait for its approval or rejection */
  waitingGroups?: ReadonlyArray<{ id: string; receivedAt: Date }> | undefined;
  /** an applied delta users.csv's report: the tenant's held users.csv uploads, which a delta does not replace */
  stillHeld?: ReadonlyArray<{ id: string; receivedAt: Date }> | undefined;
}

export interface MailAttachment {
  filename: string;
  content: string;
  contentType: string;
}

/**
 * A rendered email: plain JSON (kept as is in the outbox) that nodemailer's `sendMail` accepts.
 */
export interface MailMessage {
  from: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
  attachments: MailAttachment[];
  headers: Record<string, string>;
}
