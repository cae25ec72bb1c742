ALTER TABLE "coffer"."audit_events" ADD COLUMN "link_key_id" text;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "keyed_from" bigint DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "key_id" text;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "signed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "mac" "bytea";--> statement-breakpoint
-- Finding 12: the app role wrote audit rows and heads directly and handed audit_append a digest of its choosing,
-- over unkeyed links, so whoever held its credentials could append events that verified. From here the only way in
-- is audit_append, which computes the digest and keys each link with a key the database never stores.
-- Chains that exist already keep their unkeyed prefix: keyed_from marks where keyed links begin, and the signed
-- head covers it. FORCE RLS would hide every head from this (owner) session, so it is lifted for the update.
ALTER TABLE coffer.audit_heads NO FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
UPDATE coffer.audit_heads SET keyed_from = seq + 1;
--> statement-breakpoint
ALTER TABLE coffer.audit_heads FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
DROP FUNCTION coffer.audit_append_batch(uuid[], jsonb[]);
--> statement-breakpoint
DROP FUNCTION coffer.audit_append(uuid, jsonb);
--> statement-breakpoint
DROP FUNCTION coffer.audit_stage(uuid, jsonb);
--> statement-breakpoint
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
  SELECT h.seq, h.hash, h.keyed_from INTO v_seq, v_hash, v_keyed_from
    FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO coffer.audit_heads (tenant_id, seq, hash, keyed_from)
      VALUES (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 1)
      ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.hash, h.keyed_from INTO v_seq, v_hash, v_keyed_from
      FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
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
-- Several tenants' events in one call, so a group commit of reads is one round trip in autocommit mode (one
-- statement = one transaction = one WAL flush). Callers pass tenants in a fixed (sorted) order, so two batches
-- never wait on each other's heads in a cycle.
CREATE OR REPLACE FUNCTION coffer.audit_append_batch(p_tenants uuid[], p_events jsonb[], p_key_ids text[], p_keys bytea[])
  RETURNS integer
  LANGUAGE plpgsql
  AS $$
DECLARE
  i integer;
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_tenants, 1), 0) LOOP
    PERFORM coffer.audit_append(p_tenants[i], p_events[i], p_key_ids[i], p_keys[i]);
  END LOOP;
  RETURN coalesce(array_length(p_tenants, 1), 0);
END
$$;
--> statement-breakpoint
-- Stages a tenant's events in the caller's transaction (chained at commit by audit_chain_staged) and scopes the
-- transaction to that tenant. The link key is kept in a transaction-local setting, in the backend's memory only: in
-- the staged row it would outlive the transaction in a heap page.
CREATE OR REPLACE FUNCTION coffer.audit_stage(p_tenant uuid, p_events jsonb, p_key_id text, p_key bytea) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  PERFORM set_config('coffer_audit_key.t' || replace(p_tenant::text, '-', ''), p_key_id || ' ' || encode(p_key, 'hex'),
    true);
  INSERT INTO coffer.audit_staged (tenant_id, events) VALUES (p_tenant, p_events);
END
$$;
--> statement-breakpoint
-- At commit, chains the events a transaction staged, with the link key audit_stage kept for their tenant. Any
-- failure fails the COMMIT with CF002, so the change is not made without its events.
CREATE OR REPLACE FUNCTION coffer.audit_chain_staged() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_key text;
BEGIN
  BEGIN
    v_key := current_setting('coffer_audit_key.t' || replace(NEW.tenant_id::text, '-', ''), true);
    PERFORM coffer.audit_append(NEW.tenant_id, NEW.events, split_part(v_key, ' ', 1),
      decode(split_part(v_key, ' ', 2), 'hex'));
    DELETE FROM coffer.audit_staged WHERE id = NEW.id;
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'the audit log refused the events of this transaction' USING ERRCODE = 'CF002';
  END;
  RETURN NULL;
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION coffer.audit_append(uuid, jsonb, text, bytea) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append(uuid, jsonb, text, bytea) TO coffer_app;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append_batch(uuid[], jsonb[], text[], bytea[]) TO coffer_app;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_stage(uuid, jsonb, text, bytea) TO coffer_app;
--> statement-breakpoint
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON coffer.audit_events FROM coffer_app;
--> statement-breakpoint
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON coffer.audit_heads FROM coffer_app;
