-- Which upload is newer is decided by the order in which the database recorded them, not by
-- received_at: received_at comes from the clock of the process that received the file, and with
-- replicas one slow clock made an older users.csv look newer than the file that replaced it (the
-- older roster was imported over the newer one). A sequence is one clock for every replica, and
-- the DEFAULT also numbers rows inserted by a process that predates this column.
CREATE SEQUENCE uploads_arrival_seq;
ALTER TABLE uploads ADD COLUMN arrival bigint;
-- Uploads received before this migration keep the order they had.
UPDATE uploads u SET arrival = o.n
  FROM (SELECT id, row_number() OVER (ORDER BY received_at, id) AS n FROM uploads) o
 WHERE o.id = u.id;
SELECT setval('uploads_arrival_seq', (SELECT count(*) FROM uploads) + 1, false);
ALTER TABLE uploads
  ALTER COLUMN arrival SET DEFAULT nextval('uploads_arrival_seq'),
  ALTER COLUMN arrival SET NOT NULL;
ALTER SEQUENCE uploads_arrival_seq OWNED BY uploads.arrival;
CREATE UNIQUE INDEX uploads_tenant_arrival_idx ON uploads (tenant_id, arrival);
