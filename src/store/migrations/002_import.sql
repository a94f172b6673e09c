-- The import engine: the tenant's roster (users, groups, memberships) and each import's results.
-- An upload row is the import record (001); its result columns are added here.

-- A tenant's users. Identity within a tenant is the username ignoring case. Rows are never
-- deleted: a user the SIS stops listing is deactivated, and reactivated if it comes back.
--
-- tenant_id and school_id are deliberately not foreign keys: an import inserts up to millions of
-- rows in one statement, and a per-row referential check triples its cost (measured: 11.2 s vs
-- 3.7 s for 1M rows). The import engine is the only writer: tenant_id is the upload's tenant and
-- school_id comes from that tenant's schools, which are never deleted.
CREATE TABLE users (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id          bigint NOT NULL,
  username           text NOT NULL CHECK (length(username) >= 4),
  email              text,
  first_name         text CHECK (length(first_name) <= 64),
  last_name          text CHECK (length(last_name) <= 64),
  school_id          bigint,
  graduation_year    smallint,
  access_type        text CHECK (access_type IN ('administrator', 'school_administrator', 'manager')),
  role               text CHECK (role IN ('student', 'teacher', 'staff', 'parent', 'other')),
  sis_id             text,
  -- PHC-style self-describing scrypt hash: $scrypt$ln=15,r=8,p=1$<salt>$<hash>. NULL: no password.
  password_hash      text,
  -- Keyed HMAC of the password (key kept in DATA_DIR, not in the database) so that an unchanged
  -- password is recognised without hashing it again; see src/import/password.ts.
  password_check     text,
  active             boolean NOT NULL DEFAULT true,
  -- Only users an import created are ever deactivated by an import.
  created_by_import  boolean NOT NULL DEFAULT false,
  -- Not foreign keys either (same reason); uploads are never deleted.
  created_import_id  uuid,
  last_import_id     uuid,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  deactivated_at     timestamptz
);
CREATE UNIQUE INDEX users_tenant_username_uq ON users (tenant_id, lower(username));

-- Groups from groups.csv. A named group is unique per tenant ignoring case; an owner's default
-- group (a groups.csv row with an owner and no group) is unique per owner.
CREATE TABLE groups (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id          bigint NOT NULL REFERENCES tenants(id),
  name               text NOT NULL CHECK (length(btrim(name)) > 0),
  owner_id           bigint REFERENCES users(id),
  is_default         boolean NOT NULL DEFAULT false,
  created_import_id  uuid,
  created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_tenant_name_uq ON groups (tenant_id, lower(name)) WHERE NOT is_default;
CREATE UNIQUE INDEX groups_default_owner_uq ON groups (owner_id) WHERE is_default;

CREATE TABLE memberships (
  group_id           bigint NOT NULL REFERENCES groups(id),
  user_id            bigint NOT NULL REFERENCES users(id),
  import_id          uuid,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

-- Import results on the upload row (the import record, PRODUCT.md §7).
ALTER TABLE uploads
  ADD COLUMN mode         text CHECK (mode IN ('full', 'delta')),
  ADD COLUMN encoding     text,
  -- { rows, created, updated, unchanged, deactivated, reactivated, errors, warnings }
  ADD COLUMN counts       jsonb,
  -- File-level failure or hold reason.
  ADD COLUMN message      text,
  ADD COLUMN started_at   timestamptz,
  ADD COLUMN finished_at  timestamptz,
  ADD COLUMN approved_by  text,
  ADD COLUMN approved_at  timestamptz,
  ADD COLUMN rejected_by  text,
  ADD COLUMN rejected_at  timestamptz;

-- Row errors and warnings of an import. Values are as read from the file, passwords masked.
CREATE TABLE import_issues (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  upload_id    uuid NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind IN ('error', 'warning')),
  line         integer NOT NULL CHECK (line >= 0),
  column_name  text NOT NULL,
  value        text,
  message      text NOT NULL
);
CREATE INDEX import_issues_upload_idx ON import_issues (upload_id, kind, line);

-- The users a held import would deactivate (what the hold report shows). Approval recomputes
-- against the roster as it stands then; this list is the record of what was held.
CREATE TABLE import_hold_deactivations (
  upload_id    uuid NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
  user_id      bigint NOT NULL REFERENCES users(id),
  username     text NOT NULL,
  PRIMARY KEY (upload_id, user_id)
);
