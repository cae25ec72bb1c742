-- Made by `npm run db:sql` from apps/api/src/db/sql/ (bundle_names, list_secrets, read_bundle, read_secret).
-- Edit those files and run it again; do not edit this migration.
-- Names of an owner's live secrets in one environment (no values): what a bundle could contain, for the caller's policy filter.
CREATE OR REPLACE FUNCTION coffer.bundle_names(p_tenant uuid, p_env text, p_kind text, p_owner text)
  RETURNS TABLE (name text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.name FROM coffer.secrets s
    WHERE s.tenant_id = p_tenant AND s.environment = p_env AND s.kind = p_kind AND s.owner = p_owner AND s.deleted_at IS NULL
      AND (s.expires_at IS NULL OR s.expires_at > now())
    ORDER BY s.name;
END
$$;
--> statement-breakpoint
-- One page of one environment's live secrets' metadata in (kind, owner, name) order after the given key (keyset pagination: stable
-- under concurrent inserts), filtered by kind, owner and name prefix.
CREATE OR REPLACE FUNCTION coffer.list_secrets(p_tenant uuid, p_env text, p_kind text, p_owner text, p_prefix text, p_after_kind text,
    p_after_owner text, p_after_name text, p_limit integer)
  RETURNS SETOF coffer.secrets
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.* FROM coffer.secrets s
    WHERE s.tenant_id = p_tenant AND s.environment = p_env AND s.deleted_at IS NULL
      AND (p_kind IS NULL OR s.kind = p_kind)
      AND (p_owner IS NULL OR s.owner = p_owner)
      AND (p_prefix IS NULL OR starts_with(s.name, p_prefix))
      AND (p_after_kind IS NULL OR (s.kind, s.owner, s.name) > (p_after_kind, p_after_owner, p_after_name))
    ORDER BY s.kind, s.owner, s.name
    LIMIT p_limit;
END
$$;
--> statement-breakpoint
-- Every live (not deleted, not expired, not destroyed) secret of one owner in one environment, current versions
-- decrypted; p_names null means all of them, otherwise only those names (what the caller may read). Each row's `outcome` is ok or
-- key_missing (p_keys lacks the data key that sealed it: nothing decrypted); when the caller's identity changed since
-- its principal was cached, the only row is identity_changed and nothing is read. Each row carries the columns the
-- API's MACs cover (secret_mac, version_mac), for the API to check.
CREATE OR REPLACE FUNCTION coffer.read_bundle(p_tenant uuid, p_identity uuid, p_revision integer, p_env text,
    p_kind text, p_owner text, p_names text[], p_keys text[])
  RETURNS TABLE (outcome text, secret_id uuid, name text, version integer, plaintext text, expires_at timestamptz,
    served_until timestamptz, secret_mac text, version_mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.identities i
                 WHERE i.id = p_identity AND i.revision = p_revision AND NOT i.disabled) THEN
    RETURN QUERY SELECT 'identity_changed'::text, NULL::uuid, NULL::text, NULL::integer, NULL::text,
      NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::text;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT CASE WHEN p_keys[v.dek_version] IS NULL THEN 'key_missing' ELSE 'ok' END, s.id, s.name, v.version,
      pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version]), s.expires_at, v.served_until, s.mac, v.mac
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
-- The hot read, one round trip, and the one place its outcome is decided: re-checks the caller's identity revision,
-- finds the secret by its unique path (environment, kind, owner, name), fetches the wanted version by primary key (under forced RLS an expression
-- join would not use the index) and decrypts it with the key set passed as a bind parameter. Always one row, whose
-- `outcome` says why there is no plaintext: identity_changed (nothing else returned), not_found (nothing else),
-- no_version, expired, destroyed, rotated_out (past served_until), key_missing (p_keys lacks the data key that
-- sealed the version), or ok. Only ok decrypts. pgcrypto raises 39000 for a ciphertext not under that key.
-- secret_mac and version_mac are the API's MACs over the columns that decided the outcome (current version, expiry,
-- grace period, path): the database cannot check them, it only hands them back with those columns.
CREATE OR REPLACE FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_env text,
    p_kind text, p_owner text, p_name text, p_version integer, p_previous boolean, p_keys text[])
  RETURNS TABLE (outcome text, secret_id uuid, current_version integer, description text, tags jsonb,
    format jsonb, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid,
    version integer, served_until timestamptz, plaintext text, rotation_interval_days integer,
    rotation_grace_hours integer, generator jsonb, last_rotated_at timestamptz, next_rotation_at timestamptz,
    secret_mac text, version_mac text)
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
  RETURN NEXT;
END
$$;
