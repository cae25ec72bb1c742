-- Appends events to one tenant's chain in the caller's transaction; the only way into coffer.audit_events. The
-- database computes each event's digest from the columns it stores (sha256 of a canonical JSON array, format 2), so
-- a caller cannot pair content with a digest of something else. Each link is keyed: hash = HMAC-SHA256(p_key,
-- prev_hash || int8send(seq) || digest), where p_key is derived by the API from the master key for this tenant and
-- reaches the database only as a bind parameter of this call, never stored. Without it nobody, the owner included,
-- can make a link that verifies. The head is signed under the same key. The head row lock serialises writers of the
-- same tenant only. SECURITY DEFINER so the app role needs no write grant on the audit tables.
CREATE OR REPLACE FUNCTION coffer.audit_append(p_tenant uuid, p_events jsonb, p_key_id text, p_key bytea) RETURNS bigint
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = coffer, public, pg_temp
  AS $$
DECLARE
  v_seq bigint;
  v_hash bytea;
  v_keyed_from bigint;
  v_key_id text;
  v_signed_at timestamptz;
  v_mac bytea;
  v_at timestamptz;
  v_digests bytea[];
  v_seqs bigint[] := '{}';
  v_prevs bytea[] := '{}';
  v_hashes bytea[] := '{}';
  v_n integer;
  i integer;
BEGIN
  IF p_key_id IS NULL OR p_key IS NULL OR length(p_key) <> 32 THEN
    RAISE EXCEPTION 'audit_append needs the tenant''s link key' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  SELECT h.seq, h.hash, h.keyed_from, h.key_id, h.signed_at, h.mac
    INTO v_seq, v_hash, v_keyed_from, v_key_id, v_signed_at, v_mac
    FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO coffer.audit_heads (tenant_id, seq, hash, keyed_from)
      VALUES (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 1)
      ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.hash, h.keyed_from, h.key_id, h.signed_at, h.mac
      INTO v_seq, v_hash, v_keyed_from, v_key_id, v_signed_at, v_mac
      FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  END IF;
  -- A head moved by hand (rewound over a truncated tail, or pointed elsewhere) no longer matches its signature:
  -- chaining onto it would sign it afresh, so the tenant's appends stop instead and verify names the head. Under a
  -- master key that has since rotated out of the active slot the signature cannot be checked here; verify does.
  IF v_mac IS NOT NULL AND v_key_id = p_key_id AND v_mac IS DISTINCT FROM hmac(convert_to(concat_ws(':',
       'coffer/audit-head/v1', p_tenant::text, v_seq::text, encode(v_hash, 'hex'), v_keyed_from::text,
       ((extract(epoch FROM v_signed_at) * 1000)::bigint)::text), 'UTF8'), p_key, 'sha256') THEN
    RAISE EXCEPTION 'the audit chain head of tenant % does not match its signature', p_tenant
      USING ERRCODE = 'data_corrupted';
  END IF;
  -- Unsigned is a new chain, or one written before heads were signed as migration 0015 left it (no keyed event yet:
  -- seq = keyed_from - 1). Any other unsigned head had its signature removed by hand: chaining onto it would sign it.
  IF v_mac IS NULL AND v_seq <> v_keyed_from - 1 THEN
    RAISE EXCEPTION 'the audit chain head of tenant % is unsigned', p_tenant USING ERRCODE = 'data_corrupted';
  END IF;
  -- The canonical form; coffer's verify selects the same expression over the stored columns (audit.queries.ts).
  SELECT array_agg(sha256(convert_to(jsonb_build_array(2, p_tenant,
           to_char(x.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), x.actor_id, x.actor_name,
           x.action, x.resource, x.version, x.outcome, x.error_code, x.request_id, x.source_ip, x.user_agent,
           x.fingerprint, x.details)::text, 'UTF8')) ORDER BY x.n)
    INTO v_digests
    FROM ROWS FROM (jsonb_to_recordset(p_events) AS (
      occurred_at timestamptz, actor_id uuid, actor_name text, action text, resource text, version integer,
      outcome text, error_code text, request_id text, source_ip text, user_agent text, fingerprint text,
      details jsonb)) WITH ORDINALITY AS x(occurred_at, actor_id, actor_name, action, resource, version,
      outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, n);
  v_n := coalesce(array_length(v_digests, 1), 0);
  IF v_n = 0 THEN
    RETURN v_seq;
  END IF;
  FOR i IN 1 .. v_n LOOP
    v_prevs[i] := v_hash;
    v_seq := v_seq + 1;
    v_hash := hmac(v_hash || int8send(v_seq) || v_digests[i], p_key, 'sha256');
    v_seqs[i] := v_seq;
    v_hashes[i] := v_hash;
  END LOOP;
  INSERT INTO coffer.audit_events (tenant_id, seq, occurred_at, actor_id, actor_name, action, resource, version,
    outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, digest, prev_hash, hash, link_key_id)
  SELECT p_tenant, v_seqs[x.n], x.occurred_at, x.actor_id, x.actor_name, x.action, x.resource, x.version,
    x.outcome, x.error_code, x.request_id, x.source_ip, x.user_agent, x.fingerprint, x.details,
    v_digests[x.n], v_prevs[x.n], v_hashes[x.n], p_key_id
  FROM ROWS FROM (jsonb_to_recordset(p_events) AS (
    occurred_at timestamptz, actor_id uuid, actor_name text, action text, resource text, version integer,
    outcome text, error_code text, request_id text, source_ip text, user_agent text, fingerprint text,
    details jsonb)) WITH ORDINALITY AS x(occurred_at, actor_id, actor_name, action, resource, version,
    outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, n);
  -- Milliseconds, so the API reads back exactly the instant it checks the signature over.
  v_at := date_trunc('milliseconds', now());
  UPDATE coffer.audit_heads
    SET seq = v_seq, hash = v_hash, updated_at = now(), key_id = p_key_id, signed_at = v_at,
        mac = hmac(convert_to(concat_ws(':', 'coffer/audit-head/v1', p_tenant::text, v_seq::text, encode(v_hash, 'hex'),
          v_keyed_from::text, ((extract(epoch FROM v_at) * 1000)::bigint)::text), 'UTF8'), p_key, 'sha256')
    WHERE tenant_id = p_tenant;
  RETURN v_seq;
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION coffer.audit_append(uuid, jsonb, text, bytea) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append(uuid, jsonb, text, bytea) TO coffer_app;
