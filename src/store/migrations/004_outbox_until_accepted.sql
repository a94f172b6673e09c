-- PRODUCT.md §6: a report is retried "until the server accepts" it. rosterd before this migration
-- gave up after 7 days and marked the message 'failed'; such messages go back to the queue, due
-- now, and the status can no longer be set. An address that refuses for good is fixed with
-- `rosterd tenant update`: a report goes to the administrators as they are when it is sent.
UPDATE outbox SET status = 'pending', next_attempt_at = now(), locked_by = NULL, locked_until = NULL
 WHERE status = 'failed';

ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'sent'));
