-- A claim's liveness (src/schedule/claim-lock.ts): while an upload is 'running', the claimer's own
-- database session holds the advisory lock (classid CLAIM_LOCK_CLASS, objid claim_lock), and
-- Postgres drops it the moment that session's connection closes, so another process takes back the
-- upload of a killed importer at its next tick instead of after CLAIM_TTL_SECONDS. NULL when the
-- claim has no such lock (made by a rosterd before this migration, still running during an upgrade):
-- only its expiry lets it lapse, as before.
ALTER TABLE uploads ADD COLUMN claim_lock integer;
