-- Made by `npm run db:sql` from apps/api/src/db/sql/ (identity_for_login, identity_for_token, read_bundle, read_secret).
-- Edit those files and run it again; do not edit this migration.
DROP FUNCTION coffer.identity_for_login(p_client_id text);
--> statement-breakpoint
-- Login knows only the client id: scope the read to that one identity (policy login_lookup) and read it in one
-- round trip. Output columns are qualified because plpgsql makes them variables. Policies, federation bindings,
-- revision and the MAC come along so that the API can check the row's MAC (the database cannot), and a federated
-- login matches the very bindings the MAC covered.
CREATE OR REPLACE FUNCTION coffer.identity_for_login(p_client_id text)
  RETURNS TABLE (id uuid, tenant_id uuid, client_id text, name text, role text, secret_hash text,
    credential_version integer, token_ttl_seconds integer, disabled boolean, policies jsonb, federation jsonb,
    revision integer, mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.login_client_id', p_client_id, true);
  RETURN QUERY SELECT i.id, i.tenant_id, i.client_id, i.name, i.role, i.secret_hash, i.credential_version,
    i.token_ttl_seconds, i.disabled, i.policies, i.federation, i.revision, i.mac FROM coffer.identities i
    WHERE i.client_id = p_client_id;
  PERFORM set_config('app.login_client_id', '', true);
END
$$;
--> statement-breakpoint
DROP FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid);
--> statement-breakpoint
-- The per-request identity lookup, with the tenant's rate limit and the identity's revision, in one round trip.
-- It also returns the secret hash, the federation bindings and the MAC, so that the API can check the row's MAC
-- (the database cannot).
CREATE OR REPLACE FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid)
  RETURNS TABLE (id uuid, client_id text, name text, role text, policies jsonb, credential_version integer,
    disabled boolean, rate_limit_per_second integer, revision integer, tenant_id uuid, secret_hash text,
    federation jsonb, mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY SELECT i.id, i.client_id, i.name, i.role, i.policies, i.credential_version, i.disabled,
      t.rate_limit_per_second, i.revision, i.tenant_id, i.secret_hash, i.federation, i.mac
    FROM coffer.identities i LEFT JOIN coffer.tenants t ON t.id = i.tenant_id
    WHERE i.id = p_identity;
END
$$;
--> statement-breakpoint
DROP FUNCTION coffer.read_bundle(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text,
    p_owner text, p_names text[], p_keys text[]);
--> statement-breakpoint
-- Every live (not deleted, not expired, not destroyed) secret of one owner, current versions decrypted; p_names null
-- means all of them, otherwise only those names (what the caller may read). Each row's `outcome` is ok or
-- key_missing (p_keys lacks the data key that sealed it: nothing decrypted); when the caller's identity changed since
-- its principal was cached, the only row is identity_changed and nothing is read. Each row carries the columns the
-- API's MACs cover (secret_mac, version_mac), for the API to check.
CREATE OR REPLACE FUNCTION coffer.read_bundle(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text,
    p_owner text, p_names text[], p_keys text[])
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
    WHERE s.tenant_id = p_tenant AND s.kind = p_kind AND s.owner = p_owner AND s.deleted_at IS NULL
      AND (s.expires_at IS NULL OR s.expires_at > now())
      AND v.ciphertext IS NOT NULL
      AND (p_names IS NULL OR s.name = ANY (p_names))
    ORDER BY s.name;
END
$$;
--> statement-breakpoint
DROP FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text,
    p_owner text, p_name text, p_version integer, p_previous boolean, p_keys text[]);
--> statement-breakpoint
-- The hot read, one round trip, and the one place its outcome is decided: re-checks the caller's identity revision,
-- finds the secret by its unique path, fetches the wanted version by primary key (under forced RLS an expression
-- join would not use the index) and decrypts it with the key set passed as a bind parameter. Always one row, whose
-- `outcome` says why there is no plaintext: identity_changed (nothing else returned), not_found (nothing else),
-- no_version, expired, destroyed, rotated_out (past served_until), key_missing (p_keys lacks the data key that
-- sealed the version), or ok. Only ok decrypts. pgcrypto raises 39000 for a ciphertext not under that key.
-- secret_mac and version_mac are the API's MACs over the columns that decided the outcome (current version, expiry,
-- grace period, path): the database cannot check them, it only hands them back with those columns.
CREATE OR REPLACE FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text,
    p_owner text, p_name text, p_version integer, p_previous boolean, p_keys text[])
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
    WHERE x.tenant_id = p_tenant AND x.kind = p_kind AND x.owner = p_owner AND x.name = p_name
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
