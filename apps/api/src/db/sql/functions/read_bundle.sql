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
