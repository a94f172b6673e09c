-- The username of the row a row error or warning is about, as written in the file (trimmed): an
-- administrator finds a row in the SIS by username, not by its line in an export. NULL for an
-- issue about the whole file, a row without a username, or one recorded before this migration.
ALTER TABLE import_issues ADD COLUMN username text;

-- Which import deactivated a user, and how: 'unlisted' (a full sync no longer listed the user),
-- 'deleted' (a delta's row with action delete) or 'status' (a row whose status was inactive).
-- groups.csv's warning about an inactive user's membership says so (src/import/apply-groups.ts):
-- last_import_id cannot tell it, as a later import may change an inactive user without
-- deactivating it. Cleared when the user is reactivated. NULL too for users deactivated before
-- this migration: how is not known, and the warning does not guess.
ALTER TABLE users
  ADD COLUMN deactivated_import_id uuid,
  ADD COLUMN deactivated_how text CHECK (deactivated_how IN ('unlisted', 'deleted', 'status'));
