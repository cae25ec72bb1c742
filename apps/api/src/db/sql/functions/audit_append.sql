-- Appends events to one tenant's chain: hash = sha256(prev_hash || int8send(seq) || digest), digests computed by
-- the caller. The head row lock serialises appends of one tenant only, so hold it as briefly as possible (callers
-- reach it through the deferred audit_chain_staged trigger or audit_append_batch, never mid-transaction). Linear in
-- the batch size: a group commit of reads can be hundreds of events. SECURITY INVOKER: RLS and grants still apply.
CREATE OR REPLACE FUNCTION coffer.audit_append(p_tenant uuid, p_events jsonb) RETURNS bigint
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_seq bigint;
  v_hash bytea;
  v_digest bytea;
  v_seqs bigint[] := '{}';
  v_prevs bytea[] := '{}';
  v_hashes bytea[] := '{}';
  v_digests bytea[] := '{}';
  v_hex text;
  i integer := 0;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  SELECT h.seq, h.hash INTO v_seq, v_hash FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO coffer.audit_heads (tenant_id, seq, hash)
      VALUES (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
      ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.hash INTO v_seq, v_hash FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  END IF;
  FOR v_hex IN SELECT e.value ->> 'digest' FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(value, n)
               ORDER BY e.n LOOP
    i := i + 1;
    v_digest := decode(v_hex, 'hex');
    v_prevs[i] := v_hash;
    v_seq := v_seq + 1;
    v_hash := sha256(v_hash || int8send(v_seq) || v_digest);
    v_seqs[i] := v_seq;
    v_hashes[i] := v_hash;
    v_digests[i] := v_digest;
  END LOOP;
  IF i = 0 THEN
    RETURN v_seq;
  END IF;
  INSERT INTO coffer.audit_events (tenant_id, seq, occurred_at, actor_id, actor_name, action, resource, version,
    outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, digest, prev_hash, hash)
  SELECT p_tenant, v_seqs[x.n], x.occurred_at, x.actor_id, x.actor_name, x.action, x.resource, x.version,
    x.outcome, x.error_code, x.request_id, x.source_ip, x.user_agent, x.fingerprint, x.details,
    v_digests[x.n], v_prevs[x.n], v_hashes[x.n]
  FROM ROWS FROM (jsonb_to_recordset(p_events) AS (
    occurred_at timestamptz, actor_id uuid, actor_name text, action text, resource text, version integer,
    outcome text, error_code text, request_id text, source_ip text, user_agent text, fingerprint text,
    details jsonb)) WITH ORDINALITY AS x(occurred_at, actor_id, actor_name, action, resource, version,
    outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, n);
  UPDATE coffer.audit_heads SET seq = v_seq, hash = v_hash, updated_at = now() WHERE tenant_id = p_tenant;
  RETURN v_seq;
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append(uuid, jsonb) TO coffer_app;
