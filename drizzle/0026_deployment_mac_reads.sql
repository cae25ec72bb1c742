-- Made by `npm run db:sql` from apps/api/src/db/sql/ (read_bundle, read_secret).
-- Edit those files and run it again; do not edit this migration.
DROP FUNCTION coffer.read_bundle(p_tenant uuid, p_identity uuid, p_revision integer, p_env text,
    p_kind text, p_owner text, p_names text[], p_keys text[]);
--> statement-breakpoint
-- Every live (not deleted, not expired, not destroyed) secret of one owner in one environment, current versions
-- decrypted; p_names null means all of them, otherwise only those names (what the caller may read). Each row's `outcome` is ok or
-- key_missing (p_keys lacks the data key that sealed it: nothing decrypted); when the caller's identity changed since
-- its principal was cached, the only row is identity_changed and nothing is read. Each row carries the API's MACs
-- (secret_mac, version_mac) with every column they cover (deployment class, strategy, owner team and contact, a
-- version's revocation and deployment among them), for the API to check.
CREATE OR REPLACE FUNCTION coffer.read_bundle(p_tenant uuid, p_identity uuid, p_revision integer, p_env text,
    p_kind text, p_owner text, p_names text[], p_keys text[])
  RETURNS TABLE (outcome text, secret_id uuid, name text, version integer, plaintext text, expires_at timestamptz,
    served_until timestamptz, secret_mac text, version_mac text, class text, strategy jsonb, owner_team text,
    contact text, revoked_at timestamptz, deployment_id uuid)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.identities i
                 WHERE i.id = p_identity AND i.revision = p_revision AND NOT i.disabled) THEN
    RETURN QUERY SELECT 'identity_changed'::text, NULL::uuid, NULL::text, NULL::integer, NULL::text,
      NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text,
      NULL::timestamptz, NULL::uuid;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT CASE WHEN p_keys[v.dek_version] IS NULL THEN 'key_missing' ELSE 'ok' END, s.id, s.name, v.version,
      pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version]), s.expires_at, v.served_until, s.mac, v.mac,
      s.class, s.strategy, s.owner_team, s.contact, v.revoked_at, v.deployment_id
    FROM coffer.secrets s
    JOIN coffer.secret_versions v ON v.secret_id = s.id AND v.version = s.current_version
    WHERE s.tenant_id = p_tenant AND s.environment = p_env AND s.kind = p_kind AND s.owner = p_owner AND s.deleted_at IS NULL
      AND (s.expires_at IS NULL OR s.expires_at > now())
      AND v.ciphertext IS NOT NULL
      AND (p_names IS NULL OR s.name = ANY (p_names))
    ORDER BY s.name;
END
$$;
--> statement-breakpoint
DROP FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_env text,
    p_kind text, p_owner text, p_name text, p_version integer, p_previous boolean, p_keys text[]);
--> statement-breakpoint
-- The hot read, one round trip, and the one place its outcome is decided: re-checks the caller's identity revision,
-- finds the secret by its unique path (environment, kind, owner, name), fetches the wanted version by primary key (under forced RLS an expression
-- join would not use the index) and decrypts it with the key set passed as a bind parameter. Always one row, whose
-- `outcome` says why there is no plaintext: identity_changed (nothing else returned), not_found (nothing else),
-- no_version, expired, destroyed, revoked, rotated_out (past served_until), key_missing (p_keys lacks the data key that
-- sealed the version), or ok. Only ok decrypts. pgcrypto raises 39000 for a ciphertext not under that key.
-- secret_mac and version_mac are the API's MACs over the columns that decided the outcome (current version, expiry,
-- grace period, revocation, path) and over what deployments do with the secret (class, strategy, owner team, contact,
-- the deployment a version was generated for): the database cannot check them, it only hands them back with those
-- columns.
CREATE OR REPLACE FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_env text,
    p_kind text, p_owner text, p_name text, p_version integer, p_previous boolean, p_keys text[])
  RETURNS TABLE (outcome text, secret_id uuid, current_version integer, description text, tags jsonb,
    format jsonb, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid,
    version integer, served_until timestamptz, plaintext text, rotation_interval_days integer,
    rotation_grace_hours integer, generator jsonb, last_rotated_at timestamptz, next_rotation_at timestamptz,
    secret_mac text, version_mac text, class text, strategy jsonb, owner_team text, contact text,
    revoked_at timestamptz, deployment_id uuid)
  LANGUAGE plpgsql
  AS $$
DECLARE
  s coffer.secrets%ROWTYPE;
  v coffer.secret_versions%ROWTYPE;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.identities i
                 WHERE i.id = p_identity AND i.revision = p_revision AND NOT i.disabled) THEN
    outcome := 'identity_changed';
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT * INTO s FROM coffer.secrets x
    WHERE x.tenant_id = p_tenant AND x.environment = p_env AND x.kind = p_kind AND x.owner = p_owner AND x.name = p_name
      AND x.deleted_at IS NULL;
  IF NOT FOUND THEN
    outcome := 'not_found';
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT * INTO v FROM coffer.secret_versions y
    WHERE y.secret_id = s.id
      AND y.version = CASE WHEN p_previous THEN s.current_version - 1 ELSE coalesce(p_version, s.current_version) END;
  outcome := CASE
    WHEN v.version IS NULL THEN 'no_version'
    WHEN s.expires_at IS NOT NULL AND s.expires_at <= now() THEN 'expired'
    WHEN v.ciphertext IS NULL THEN 'destroyed'
    WHEN v.revoked_at IS NOT NULL THEN 'revoked'
    WHEN v.served_until IS NOT NULL AND v.served_until <= now() THEN 'rotated_out'
    WHEN p_keys[v.dek_version] IS NULL THEN 'key_missing'
    ELSE 'ok' END;
  IF outcome = 'ok' THEN
    plaintext := pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version]);
  END IF;
  secret_id := s.id;
  current_version := s.current_version;
  description := s.description;
  tags := s.tags;
  format := s.format;
  expires_at := s.expires_at;
  created_at := s.created_at;
  updated_at := s.updated_at;
  created_by := s.created_by;
  version := v.version;
  served_until := v.served_until;
  rotation_interval_days := s.rotation_interval_days;
  rotation_grace_hours := s.rotation_grace_hours;
  generator := s.generator;
  last_rotated_at := s.last_rotated_at;
  next_rotation_at := s.next_rotation_at;
  secret_mac := s.mac;
  version_mac := v.mac;
  class := s.class;
  strategy := s.strategy;
  owner_team := s.owner_team;
  contact := s.contact;
  revoked_at := v.revoked_at;
  deployment_id := v.deployment_id;
  RETURN NEXT;
END
$$;
