-- The hot read, one round trip: re-checks the caller's identity revision, finds the secret by its unique path,
-- computes the wanted version and fetches it by primary key (under forced RLS an expression join would not use the
-- index), and decrypts with the key set passed as a bind parameter. Nothing is decrypted for an expired secret or a
-- version that is destroyed or past its grace period. pgcrypto raises 39000 for a ciphertext not under that key.
CREATE OR REPLACE FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text,
    p_owner text, p_name text, p_version integer, p_keys text[])
  RETURNS TABLE (identity_ok boolean, secret_id uuid, current_version integer, description text, tags jsonb,
    format jsonb, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid,
    version integer, dek_version integer, destroyed boolean, expired boolean, served_until timestamptz,
    plaintext text, rotation_interval_days integer, rotation_grace_hours integer, generator jsonb,
    last_rotated_at timestamptz, next_rotation_at timestamptz)
  LANGUAGE plpgsql
  AS $$
DECLARE
  s coffer.secrets%ROWTYPE;
  v coffer.secret_versions%ROWTYPE;
  v_target integer;
  v_expired boolean;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.identities i
                 WHERE i.id = p_identity AND i.revision = p_revision AND NOT i.disabled) THEN
    identity_ok := false;
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT * INTO s FROM coffer.secrets x
    WHERE x.tenant_id = p_tenant AND x.kind = p_kind AND x.owner = p_owner AND x.name = p_name
      AND x.deleted_at IS NULL;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  v_target := CASE WHEN p_version = -1 THEN s.current_version - 1 ELSE coalesce(p_version, s.current_version) END;
  SELECT * INTO v FROM coffer.secret_versions y WHERE y.secret_id = s.id AND y.version = v_target;
  v_expired := s.expires_at IS NOT NULL AND s.expires_at <= now();
  identity_ok := true;
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
  dek_version := v.dek_version;
  destroyed := v.ciphertext IS NULL;
  expired := v_expired;
  served_until := v.served_until;
  plaintext := CASE WHEN v.ciphertext IS NULL OR v_expired OR (v.served_until IS NOT NULL AND v.served_until <= now())
      THEN NULL ELSE pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version]) END;
  rotation_interval_days := s.rotation_interval_days;
  rotation_grace_hours := s.rotation_grace_hours;
  generator := s.generator;
  last_rotated_at := s.last_rotated_at;
  next_rotation_at := s.next_rotation_at;
  RETURN NEXT;
END
$$;
