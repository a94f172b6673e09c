-- Scheduling and reports: claims that make each upload import exactly once across replicas, and
-- the outbox that keeps every report email until a mail server has accepted it.

ALTER TABLE uploads
  -- Attempts that ended without an outcome (a crash, a lost database connection). At
  -- IMPORT_MAX_ATTEMPTS the upload is marked failed and reported.
  ADD COLUMN attempts            integer NOT NULL DEFAULT 0,
  -- While an upload is 'running': which process holds it (host:pid, for people), the claim's own
  -- token (the importer checks it is still its claim before it commits), and when the claim
  -- lapses. A claim past its expiry belongs to a process that died; another process takes it back.
  ADD COLUMN claimed_by          text,
  ADD COLUMN claim_token         uuid,
  ADD COLUMN claimed_at          timestamptz,
  ADD COLUMN claim_expires_at    timestamptz,
  -- Why the last attempt ended without an outcome (for `import show`).
  ADD COLUMN last_attempt_error  text,
  -- The newer users.csv that replaced this pending one.
  ADD COLUMN superseded_by       uuid REFERENCES uploads(id);
CREATE INDEX uploads_claim_expiry_idx ON uploads (claim_expires_at) WHERE status = 'running';

-- Report emails, written in the transaction that records the import's outcome and sent later by
-- whichever process claims them first (delivered once, not once per replica).
CREATE TABLE outbox (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  upload_id        uuid REFERENCES uploads(id),
  -- A nodemailer message: { from, to[], subject, text, html, attachments[{filename, content,
  -- contentType}], headers }. Never holds a password: reports mask them.
  message          jsonb NOT NULL,
  -- pending: waiting to be sent (or retried); sent: accepted by the mail server or written as an
  -- .eml file; failed: given up after days of retries.
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  -- Not sent before this time (backoff after a failure).
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- A sender holds the message until this time; a sender that died lets it lapse.
  locked_by        text,
  locked_until     timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  -- SMTP response / Message-ID, or the .eml file name.
  delivered_as     text
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_upload_idx ON outbox (upload_id);
