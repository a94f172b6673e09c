-- Who imported an upload at once with `rosterd import run --now`, whatever its tenant's window
-- (PRODUCT §5: an operator's action, logged as such). The log line is gone with the operator's
-- terminal; the record stays with the import, and `import show` and the report say it. NULL for an
-- import the schedule ran.
ALTER TABLE uploads ADD COLUMN requested_by text;
