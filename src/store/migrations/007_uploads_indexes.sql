-- /metrics reads each active tenant's last successful import at every scrape
-- (rosterd_tenant_last_successful_import_timestamp_seconds): one index probe per tenant instead of
-- a scan of every upload ever received.
CREATE INDEX uploads_last_success_idx ON uploads (tenant_id, (coalesce(finished_at, status_changed_at)) DESC)
  WHERE status IN ('succeeded', 'completed_with_errors');

-- Retention and doctor look up the received copies on disk by their path, a thousand at a time.
CREATE INDEX uploads_stored_path_idx ON uploads (stored_path);
