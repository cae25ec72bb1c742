-- Secrets: grants, forced row-level security, and the one-round-trip read paths.

GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.secrets, coffer.secret_versions TO coffer_app;
--> statement-breakpoint

ALTER TABLE coffer.secrets ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.secrets FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.secrets
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint

ALTER TABLE coffer.secret_versions ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.secret_versions FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.secret_versions
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint

-- A version belongs to its secret's tenant: refuse a row whose tenant differs from its secret's.
CREATE FUNCTION coffer.secret_versions_same_tenant() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM coffer.secrets s WHERE s.id = NEW.secret_id AND s.tenant_id = NEW.tenant_id) THEN
    RAISE EXCEPTION 'secret version tenant does not match its secret' USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER secret_versions_same_tenant BEFORE INSERT OR UPDATE OF tenant_id, secret_id ON coffer.secret_versions
  FOR EACH ROW EXECUTE FUNCTION coffer.secret_versions_same_tenant();
--> statement-breakpoint

-- The hot read: one secret's metadata and one version, decrypted inside PostgreSQL, in one statement (the tenant
-- scope is set by the function itself, so no explicit transaction is needed). The tenant's data keys come as a
-- bind parameter, indexed by key version; they are never stored or logged. An expired secret is not decrypted.
-- pgcrypto raises "Wrong key or corrupt data" (SQLSTATE 39000) for a ciphertext that is not under that key.
CREATE FUNCTION coffer.read_secret(p_tenant uuid, p_kind text, p_owner text, p_name text, p_version integer,
    p_keys text[])
  RETURNS TABLE (secret_id uuid, current_version integer, description text, tags jsonb, format jsonb,
    expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid, version integer,
    dek_version integer, destroyed boolean, expired boolean, plaintext text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.id, s.current_version, s.description, s.tags, s.format, s.expires_at, s.created_at, s.updated_at,
      s.created_by, v.version, v.dek_version, v.ciphertext IS NULL,
      s.expires_at IS NOT NULL AND s.expires_at <= now(),
      CASE WHEN v.ciphertext IS NULL OR (s.expires_at IS NOT NULL AND s.expires_at <= now()) THEN NULL
        ELSE pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version]) END
    FROM coffer.secrets s
    LEFT JOIN coffer.secret_versions v ON v.secret_id = s.id AND v.version = coalesce(p_version, s.current_version)
    WHERE s.tenant_id = p_tenant AND s.kind = p_kind AND s.owner = p_owner AND s.name = p_name
      AND s.deleted_at IS NULL;
END
$$;
--> statement-breakpoint

-- Every live (not deleted, not expired) secret of one owner, current versions decrypted; `p_names` null means
-- all of them, otherwise only those names (what the caller may read).
CREATE FUNCTION coffer.read_bundle(p_tenant uuid, p_kind text, p_owner text, p_names text[], p_keys text[])
  RETURNS TABLE (secret_id uuid, name text, version integer, dek_version integer, plaintext text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.id, s.name, v.version, v.dek_version, pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version])
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

-- Metadata of live secrets of one owner (no values): what a bundle could contain, for policy filtering.
CREATE FUNCTION coffer.bundle_names(p_tenant uuid, p_kind text, p_owner text)
  RETURNS TABLE (name text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.name FROM coffer.secrets s
    WHERE s.tenant_id = p_tenant AND s.kind = p_kind AND s.owner = p_owner AND s.deleted_at IS NULL
      AND (s.expires_at IS NULL OR s.expires_at > now())
    ORDER BY s.name;
END
$$;
--> statement-breakpoint

-- One page of live secrets' metadata in (kind, owner, name) order, after the given key (keyset pagination:
-- stable under concurrent inserts), filtered by kind, owner and name prefix.
CREATE FUNCTION coffer.list_secrets(p_tenant uuid, p_kind text, p_owner text, p_prefix text, p_after_kind text,
    p_after_owner text, p_after_name text, p_limit integer)
  RETURNS SETOF coffer.secrets
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.* FROM coffer.secrets s
    WHERE s.tenant_id = p_tenant AND s.deleted_at IS NULL
      AND (p_kind IS NULL OR s.kind = p_kind)
      AND (p_owner IS NULL OR s.owner = p_owner)
      AND (p_prefix IS NULL OR starts_with(s.name, p_prefix))
      AND (p_after_kind IS NULL OR (s.kind, s.owner, s.name) > (p_after_kind, p_after_owner, p_after_name))
    ORDER BY s.kind, s.owner, s.name
    LIMIT p_limit;
END
$$;
