-- The memberships a held groups.csv would remove (what its hold report shows), as
-- import_hold_deactivations is for a held users.csv: a truncated export, or one from the wrong
-- report, lists a few memberships and would remove all the others. An approval recomputes against
-- the memberships as they stand then, and is refused if it would remove one this list lacks.
-- Group and username are kept as they were shown, so the record still reads after a rename.
CREATE TABLE import_hold_removals (
  upload_id    uuid NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
  group_id     bigint NOT NULL,
  user_id      bigint NOT NULL,
  group_name   text NOT NULL,
  username     text NOT NULL,
  PRIMARY KEY (upload_id, group_id, user_id)
);
