-- /metrics counts the uploads that are pending, running or held at every scrape
-- (rosterd_uploads_waiting): a few rows of a table that keeps every upload ever received.
CREATE INDEX uploads_waiting_idx ON uploads (status, received_at) WHERE status IN ('pending', 'running', 'held');
