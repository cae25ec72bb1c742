ALTER TABLE "coffer"."identities" ADD COLUMN "revision" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
-- Any change to an identity (policies, disabled, credentials, name) bumps its revision.
CREATE FUNCTION coffer.identities_bump_revision() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  NEW.revision := OLD.revision + 1;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER identities_bump_revision BEFORE UPDATE ON coffer.identities
  FOR EACH ROW EXECUTE FUNCTION coffer.identities_bump_revision();
--> statement-breakpoint
DROP FUNCTION coffer.identity_for_token(uuid, uuid);
--> statement-breakpoint
CREATE FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid)
  RETURNS TABLE (id uuid, client_id text, name text, role text, policies jsonb, credential_version integer,
    disabled boolean, rate_limit_per_second integer, revision integer)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY SELECT i.id, i.client_id, i.name, i.role, i.policies, i.credential_version, i.disabled,
      t.rate_limit_per_second, i.revision
    FROM coffer.identities i LEFT JOIN coffer.tenants t ON t.id = i.tenant_id
    WHERE i.id = p_identity;
END
$$;
--> statement-breakpoint

-- The hot reads take the caller's identity and the revision its cached principal was built from, and refuse
-- (identity_ok = false, nothing decrypted) when the identity changed, was disabled or deleted since: the app then
-- reloads it and decides again. One round trip per read, and a change still applies on the very next request.
DROP FUNCTION coffer.read_secret(uuid, text, text, text, integer, text[]);
--> statement-breakpoint
CREATE FUNCTION coffer.read_secret(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text, p_owner text,
    p_name text, p_version integer, p_keys text[])
  RETURNS TABLE (identity_ok boolean, secret_id uuid, current_version integer, description text, tags jsonb,
    format jsonb, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid,
    version integer, dek_version integer, destroyed boolean, expired boolean, served_until timestamptz,
    plaintext text, rotation_interval_days integer, rotation_grace_hours integer, generator jsonb,
    last_rotated_at timestamptz, next_rotation_at timestamptz)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.identities i
                 WHERE i.id = p_identity AND i.revision = p_revision AND NOT i.disabled) THEN
    RETURN QUERY SELECT false, NULL::uuid, NULL::integer, NULL::text, NULL::jsonb, NULL::jsonb, NULL::timestamptz,
      NULL::timestamptz, NULL::timestamptz, NULL::uuid, NULL::integer, NULL::integer, NULL::boolean, NULL::boolean,
      NULL::timestamptz, NULL::text, NULL::integer, NULL::integer, NULL::jsonb, NULL::timestamptz, NULL::timestamptz;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT true, s.id, s.current_version, s.description, s.tags, s.format, s.expires_at, s.created_at, s.updated_at,
      s.created_by, v.version, v.dek_version, v.ciphertext IS NULL,
      s.expires_at IS NOT NULL AND s.expires_at <= now(),
      v.served_until,
      CASE WHEN v.ciphertext IS NULL OR (s.expires_at IS NOT NULL AND s.expires_at <= now())
          OR (v.served_until IS NOT NULL AND v.served_until <= now()) THEN NULL
        ELSE pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version]) END,
      s.rotation_interval_days, s.rotation_grace_hours, s.generator, s.last_rotated_at, s.next_rotation_at
    FROM coffer.secrets s
    LEFT JOIN coffer.secret_versions v ON v.secret_id = s.id
      AND v.version = CASE WHEN p_version = -1 THEN s.current_version - 1 ELSE coalesce(p_version, s.current_version) END
    WHERE s.tenant_id = p_tenant AND s.kind = p_kind AND s.owner = p_owner AND s.name = p_name
      AND s.deleted_at IS NULL;
END
$$;
--> statement-breakpoint
DROP FUNCTION coffer.read_bundle(uuid, text, text, text[], text[]);
--> statement-breakpoint
CREATE FUNCTION coffer.read_bundle(p_tenant uuid, p_identity uuid, p_revision integer, p_kind text, p_owner text,
    p_names text[], p_keys text[])
  RETURNS TABLE (identity_ok boolean, secret_id uuid, name text, version integer, dek_version integer, plaintext text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.identities i
                 WHERE i.id = p_identity AND i.revision = p_revision AND NOT i.disabled) THEN
    RETURN QUERY SELECT false, NULL::uuid, NULL::text, NULL::integer, NULL::integer, NULL::text;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT true, s.id, s.name, v.version, v.dek_version, pgp_sym_decrypt(v.ciphertext, p_keys[v.dek_version])
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

-- Audit appends, set-based: the head is locked once, the batch's links are computed by a recursive query and
-- inserted by one statement. audit_append_batch takes several tenants' events in one call, so a group commit of
-- reads is one round trip in autocommit mode (one statement = one transaction = one WAL flush).
CREATE OR REPLACE FUNCTION coffer.audit_append(p_tenant uuid, p_events jsonb) RETURNS bigint
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_seq bigint;
  v_hash bytea;
  v_last_seq bigint;
  v_last_hash bytea;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  SELECT h.seq, h.hash INTO v_seq, v_hash FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO coffer.audit_heads (tenant_id, seq, hash)
      VALUES (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
      ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.hash INTO v_seq, v_hash FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  END IF;
  WITH RECURSIVE ev AS (
    SELECT x.*, x.n AS pos FROM ROWS FROM (jsonb_to_recordset(p_events) AS (
      occurred_at timestamptz, actor_id uuid, actor_name text, action text, resource text, version integer,
      outcome text, error_code text, request_id text, source_ip text, user_agent text, fingerprint text,
      details jsonb, digest text)) WITH ORDINALITY AS x(occurred_at, actor_id, actor_name, action, resource, version,
      outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, digest, n)
  ), chain (pos, seq, prev, hash) AS (
    SELECT 0::bigint, v_seq, NULL::bytea, v_hash
    UNION ALL
    SELECT ev.pos, c.seq + 1, c.hash, sha256(c.hash || int8send(c.seq + 1) || decode(ev.digest, 'hex'))
    FROM chain c JOIN ev ON ev.pos = c.pos + 1
  ), ins AS (
    INSERT INTO coffer.audit_events (tenant_id, seq, occurred_at, actor_id, actor_name, action, resource, version,
      outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, digest, prev_hash, hash)
    SELECT p_tenant, c.seq, ev.occurred_at, ev.actor_id, ev.actor_name, ev.action, ev.resource, ev.version,
      ev.outcome, ev.error_code, ev.request_id, ev.source_ip, ev.user_agent, ev.fingerprint, ev.details,
      decode(ev.digest, 'hex'), c.prev, c.hash
    FROM chain c JOIN ev ON ev.pos = c.pos
    RETURNING seq, hash
  )
  SELECT i.seq, i.hash INTO v_last_seq, v_last_hash FROM ins i ORDER BY i.seq DESC LIMIT 1;
  IF v_last_seq IS NOT NULL THEN
    UPDATE coffer.audit_heads SET seq = v_last_seq, hash = v_last_hash, updated_at = now() WHERE tenant_id = p_tenant;
  END IF;
  RETURN coalesce(v_last_seq, v_seq);
END
$$;
--> statement-breakpoint
CREATE FUNCTION coffer.audit_append_batch(p_tenants uuid[], p_events jsonb[]) RETURNS integer
  LANGUAGE plpgsql
  AS $$
DECLARE
  i integer;
BEGIN
  -- Callers pass tenants in a fixed (sorted) order, so two batches never wait on each other's heads in a cycle.
  FOR i IN 1 .. coalesce(array_length(p_tenants, 1), 0) LOOP
    PERFORM coffer.audit_append(p_tenants[i], p_events[i]);
  END LOOP;
  RETURN coalesce(array_length(p_tenants, 1), 0);
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append_batch(uuid[], jsonb[]) TO coffer_app;
