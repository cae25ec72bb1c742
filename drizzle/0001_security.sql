-- Security foundation: pgcrypto, the restricted query role, grants, row-level security,
-- the append-only audit chain, and the platform tenant. Runs as the schema owner.

CREATE EXTENSION IF NOT EXISTS pgcrypto;
--> statement-breakpoint

-- The API's query role: owns nothing, is no superuser, cannot bypass RLS. main.ts gives it LOGIN and a
-- password when it provisions it from an owner connection; operators may create it themselves instead.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'coffer_app') THEN
    CREATE ROLE coffer_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION NOINHERIT;
  END IF;
END
$$;
--> statement-breakpoint

-- Keys and their parameters reach Postgres only as bind parameters of this role's statements; keep them
-- out of the server log even if an operator raises logging for the cluster. Needs superuser (or GRANT SET
-- ON PARAMETER); where the migrating role lacks it, the README tells the operator what never to turn on.
DO $$
BEGIN
  ALTER ROLE coffer_app SET log_statement = 'none';
  ALTER ROLE coffer_app SET log_min_duration_statement = -1;
  ALTER ROLE coffer_app SET log_min_duration_sample = -1;
  ALTER ROLE coffer_app SET log_transaction_sample_rate = 0;
  ALTER ROLE coffer_app SET log_min_error_statement = 'panic';
  ALTER ROLE coffer_app SET log_parameter_max_length = 0;
  ALTER ROLE coffer_app SET log_parameter_max_length_on_error = 0;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'coffer: could not turn off statement logging for coffer_app (needs superuser); see README "Operating safely"';
END
$$;
--> statement-breakpoint

GRANT USAGE ON SCHEMA coffer TO coffer_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.tenants, coffer.identities, coffer.tenant_keys TO coffer_app;
--> statement-breakpoint
GRANT SELECT, INSERT ON coffer.audit_events TO coffer_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE ON coffer.audit_heads TO coffer_app;
--> statement-breakpoint
GRANT USAGE ON SCHEMA drizzle TO coffer_app;
--> statement-breakpoint
GRANT SELECT ON drizzle.__drizzle_migrations TO coffer_app;
--> statement-breakpoint

-- The tenant a transaction acts for, set with set_config('app.tenant_id', id, true). Unset means no rows.
CREATE FUNCTION coffer.current_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
--> statement-breakpoint

CREATE FUNCTION coffer.platform_tenant() RETURNS uuid
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
--> statement-breakpoint

ALTER TABLE coffer.tenants ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.tenants FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
-- A tenant sees itself; the platform scope (tenant creation and listing) sees every tenant.
CREATE POLICY tenant_scope ON coffer.tenants
  USING (id = coffer.current_tenant() OR coffer.current_tenant() = coffer.platform_tenant())
  WITH CHECK (id = coffer.current_tenant() OR coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint

ALTER TABLE coffer.identities ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.identities FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.identities
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- Login knows only the client id: it may read that one identity, whatever its tenant, and nothing else.
CREATE POLICY login_lookup ON coffer.identities FOR SELECT
  USING (client_id = nullif(current_setting('app.login_client_id', true), ''));
--> statement-breakpoint

ALTER TABLE coffer.tenant_keys ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.tenant_keys FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
-- The platform scope sees every tenant's wrapped keys (never a value): readiness names master keys the keyring
-- lacks, and master-key rotation re-wraps every DEK. Writes stay per tenant.
CREATE POLICY tenant_scope ON coffer.tenant_keys
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
CREATE POLICY platform_read ON coffer.tenant_keys FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint

ALTER TABLE coffer.audit_events ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.audit_events FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.audit_events
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint

ALTER TABLE coffer.audit_heads ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.audit_heads FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.audit_heads
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint

-- Audit rows are never edited or removed through SQL, whoever asks. (Grants already keep the app role out;
-- the trigger also stops the owner by accident. Retention goes through its own audited path.)
CREATE FUNCTION coffer.audit_events_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  RAISE EXCEPTION 'coffer.audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
--> statement-breakpoint
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON coffer.audit_events
  FOR EACH ROW EXECUTE FUNCTION coffer.audit_events_append_only();
--> statement-breakpoint
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON coffer.audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_events_append_only();
--> statement-breakpoint

-- Appends events to one tenant's chain in the caller's transaction. The head row lock serialises writers of
-- the same tenant only; different tenants append in parallel. The caller computes each event's digest
-- (sha256 of its canonical form) and this links them: hash = sha256(prev_hash || int8send(seq) || digest).
-- SECURITY INVOKER: RLS and the app role's grants still apply.
CREATE FUNCTION coffer.audit_append(p_tenant uuid, p_events jsonb) RETURNS bigint
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_seq bigint;
  v_hash bytea;
  v_next bytea;
  e record;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  INSERT INTO coffer.audit_heads (tenant_id, seq, hash)
    VALUES (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
    ON CONFLICT (tenant_id) DO NOTHING;
  SELECT h.seq, h.hash INTO v_seq, v_hash FROM coffer.audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
  FOR e IN
    SELECT * FROM jsonb_to_recordset(p_events) AS x(
      occurred_at timestamptz, actor_id uuid, actor_name text, action text, resource text, version integer,
      outcome text, error_code text, request_id text, source_ip text, user_agent text, fingerprint text,
      details jsonb, digest text)
  LOOP
    v_seq := v_seq + 1;
    v_next := sha256(v_hash || int8send(v_seq) || decode(e.digest, 'hex'));
    INSERT INTO coffer.audit_events (tenant_id, seq, occurred_at, actor_id, actor_name, action, resource, version,
      outcome, error_code, request_id, source_ip, user_agent, fingerprint, details, digest, prev_hash, hash)
    VALUES (p_tenant, v_seq, e.occurred_at, e.actor_id, e.actor_name, e.action, e.resource, e.version,
      e.outcome, e.error_code, e.request_id, e.source_ip, e.user_agent, e.fingerprint, e.details,
      decode(e.digest, 'hex'), v_hash, v_next);
    v_hash := v_next;
  END LOOP;
  UPDATE coffer.audit_heads SET seq = v_seq, hash = v_hash, updated_at = now() WHERE tenant_id = p_tenant;
  RETURN v_seq;
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append(uuid, jsonb) TO coffer_app;
--> statement-breakpoint

-- One round trip each for the two lookups on every request path: set the scope and read, in one implicit
-- transaction. Output columns are qualified because plpgsql makes them variables.
CREATE FUNCTION coffer.identity_for_login(p_client_id text)
  RETURNS TABLE (id uuid, tenant_id uuid, client_id text, name text, role text, secret_hash text,
    credential_version integer, token_ttl_seconds integer, disabled boolean)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.login_client_id', p_client_id, true);
  RETURN QUERY SELECT i.id, i.tenant_id, i.client_id, i.name, i.role, i.secret_hash, i.credential_version,
    i.token_ttl_seconds, i.disabled FROM coffer.identities i WHERE i.client_id = p_client_id;
  PERFORM set_config('app.login_client_id', '', true);
END
$$;
--> statement-breakpoint
CREATE FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid)
  RETURNS TABLE (id uuid, client_id text, name text, role text, policies jsonb, credential_version integer,
    disabled boolean)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY SELECT i.id, i.client_id, i.name, i.role, i.policies, i.credential_version, i.disabled
    FROM coffer.identities i WHERE i.id = p_identity;
END
$$;
--> statement-breakpoint

-- The platform's own "tenant": where platform identities live and platform events are chained.
SELECT set_config('app.tenant_id', '00000000-0000-0000-0000-000000000000', true);
--> statement-breakpoint
INSERT INTO coffer.tenants (id, slug, name) VALUES ('00000000-0000-0000-0000-000000000000', '_platform', 'Coffer platform');
