-- Tenants, their SSH keys and schools, and the uploads received over SFTP.

CREATE TABLE tenants (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subdomain         text NOT NULL UNIQUE
                    CHECK (subdomain ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  name              text NOT NULL,
  timezone          text NOT NULL DEFAULT 'America/New_York',
  admin_emails      text[] NOT NULL CHECK (cardinality(admin_emails) >= 1),
  -- 'HH:MM' in the tenant's zone; a window may wrap midnight (18:00-06:00).
  window_start      text NOT NULL DEFAULT '18:00' CHECK (window_start ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'),
  window_end        text NOT NULL DEFAULT '06:00' CHECK (window_end ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'),
  allow_daytime     boolean NOT NULL DEFAULT false,
  -- Percent of active users an import may deactivate before it is held.
  threshold_percent numeric(5,2) NOT NULL DEFAULT 10 CHECK (threshold_percent >= 0 AND threshold_percent <= 100),
  -- Optional absolute cap on deactivations; either limit triggers a hold.
  threshold_count   integer CHECK (threshold_count >= 0),
  status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ssh_keys (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id     bigint NOT NULL REFERENCES tenants(id),
  -- 'SHA256:…' exactly as ssh-keygen -lf prints it. Unique across all tenants and across
  -- revocation: a key once registered to a tenant never moves to another.
  fingerprint   text NOT NULL UNIQUE,
  key_type      text NOT NULL,
  key_bits      integer NOT NULL,
  public_key    text NOT NULL,          -- 'TYPE BASE64', no comment
  comment       text NOT NULL DEFAULT '',
  added_at      timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);
CREATE INDEX ssh_keys_tenant_idx ON ssh_keys (tenant_id);

CREATE TABLE schools (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id   bigint NOT NULL REFERENCES tenants(id),
  name        text NOT NULL CHECK (length(btrim(name)) > 0),
  nces_id     text CHECK (nces_id ~ '^[0-9]{12}$'),
  state_id    text CHECK (length(btrim(state_id)) > 0),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX schools_name_uq ON schools (tenant_id, lower(name));
CREATE UNIQUE INDEX schools_nces_uq ON schools (tenant_id, nces_id) WHERE nces_id IS NOT NULL;
CREATE UNIQUE INDEX schools_state_uq ON schools (tenant_id, lower(state_id)) WHERE state_id IS NOT NULL;

-- One row per received file. It is also the record of that file's import (status and results);
-- the import engine adds its result columns in its own migration.
CREATE TABLE uploads (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        bigint NOT NULL REFERENCES tenants(id),
  file_name        text NOT NULL,                 -- users.csv or groups.csv
  source           text NOT NULL DEFAULT 'sftp',  -- sftp | validate | cli
  bytes            bigint NOT NULL CHECK (bytes >= 0),
  sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  stored_path      text NOT NULL,                 -- immutable copy, relative to DATA_DIR
  key_fingerprint  text,
  remote_address   text,
  received_at      timestamptz NOT NULL DEFAULT now(),
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN (
                     'pending', 'running', 'succeeded', 'completed_with_errors', 'failed',
                     'held', 'rejected', 'superseded', 'validated')),
  status_changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_tenant_received_idx ON uploads (tenant_id, received_at DESC);
CREATE INDEX uploads_pending_idx ON uploads (received_at) WHERE status = 'pending';
