-- Issue 16, findings 12, 13, 14 and 16a: the audit log holds against whoever has the database's credentials.
-- The table changes come from apps/api/src/db/schema.ts (drizzle-kit generate), the data and grant changes are
-- written here, and the functions and triggers after them are the canonical files of apps/api/src/db/sql/ as
-- `npm run db:sql` renders them (edit those files and run it again; do not edit that part of this migration).
CREATE TABLE "coffer"."audit_retention" (
	"tenant_id" uuid PRIMARY KEY NOT NULL,
	"days" integer NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "audit_retention_days_bounds" CHECK ("coffer"."audit_retention"."days" between 30 and 3650)
);
--> statement-breakpoint
ALTER TABLE "coffer"."audit_events" ADD COLUMN "link_key_id" text;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "keyed_from" bigint DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "key_id" text;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "signed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "coffer"."audit_heads" ADD COLUMN "mac" "bytea";--> statement-breakpoint
ALTER TABLE "coffer"."audit_retention" ADD CONSTRAINT "audit_retention_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
-- Finding 12: the app role wrote audit rows and heads directly and handed audit_append a digest of its choosing,
-- over unkeyed links, so whoever held its credentials could append events that verified. From here the only way in
-- is audit_append, which computes the digest and keys each link with a key the database never stores.
-- Chains that exist already keep their unkeyed prefix: keyed_from marks where keyed links begin, and the first
-- keyed append signs the head. FORCE RLS would hide every head from this (owner) session, so it is lifted for the
-- update.
ALTER TABLE coffer.audit_heads NO FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
UPDATE coffer.audit_heads SET keyed_from = seq + 1;
--> statement-breakpoint
ALTER TABLE coffer.audit_heads FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
-- Finding 13: retention lived in tenants.audit_retention_days, which the app role could UPDATE: set to 1 day, the
-- next retention run signed a checkpoint at the cut and dropped everything older, and verify still said ok. It now
-- lives in a table the app role can only read, written through audit_set_retention (bounded, audited). Values that
-- differ from the default move over, brought within the bounds. FORCE RLS would hide the tenants from this owner
-- session, so it is lifted for the copy.
ALTER TABLE coffer.tenants NO FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
INSERT INTO coffer.audit_retention (tenant_id, days)
  SELECT t.id, least(greatest(t.audit_retention_days, 30), 3650) FROM coffer.tenants t WHERE t.audit_retention_days <> 400;
--> statement-breakpoint
ALTER TABLE coffer.tenants FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "coffer"."tenants" DROP COLUMN "audit_retention_days";
--> statement-breakpoint
ALTER TABLE coffer.audit_retention ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.audit_retention FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.audit_retention
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
GRANT SELECT ON coffer.audit_retention TO coffer_app;
--> statement-breakpoint
-- Findings 12 and 14: no direct write on the audit tables for the app role. Checkpoints it may still insert (the
-- checkpoint job) and re-sign (the master-key rewrap), never delete.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON coffer.audit_events FROM coffer_app;
--> statement-breakpoint
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON coffer.audit_heads FROM coffer_app;
--> statement-breakpoint
REVOKE DELETE, TRUNCATE ON coffer.audit_checkpoints FROM coffer_app;
--> statement-breakpoint
-- Made by `npm run db:sql` from apps/api/src/db/sql/ (audit_append, audit_append_batch, audit_chain_staged, audit_checkpoints_append_only, audit_events_append_only, audit_retention_purge, audit_set_retention, audit_stage, audit_checkpoints_no_truncate, audit_checkpoints_no_update_delete).
-- Edit those files and run it again; do not edit this migration.
DROP FUNCTION coffer.audit_append(p_tenant uuid, p_events jsonb);
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
--> statement-breakpoint
DROP FUNCTION coffer.audit_append_batch(p_tenants uuid[], p_events jsonb[]);
--> statement-breakpoint
-- Several tenants' events in one call, so a group commit of reads is one round trip in autocommit mode (one
-- statement = one transaction = one WAL flush). Callers pass tenants in a fixed (sorted) order, so two batches
-- never wait on each other's heads in a cycle. Each tenant appends in its own subtransaction: a tenant whose events
-- cannot be chained (its head broken, its head locked past the timeout) is rolled back alone and returned, so the
-- caller fails only that tenant's requests, never the other tenants' that shared the commit.
CREATE OR REPLACE FUNCTION coffer.audit_append_batch(p_tenants uuid[], p_events jsonb[], p_key_ids text[], p_keys bytea[])
  RETURNS uuid[]
  LANGUAGE plpgsql
  AS $$
DECLARE
  i integer;
  v_failed uuid[] := '{}';
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_tenants, 1), 0) LOOP
    BEGIN
      PERFORM coffer.audit_append(p_tenants[i], p_events[i], p_key_ids[i], p_keys[i]);
    EXCEPTION WHEN OTHERS THEN
      v_failed := v_failed || p_tenants[i];
    END;
  END LOOP;
  RETURN v_failed;
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append_batch(uuid[], jsonb[], text[], bytea[]) TO coffer_app;
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
-- Signed checkpoints are evidence: once written, what they vouch for (tenant, seq, hash, kind, time) never changes
-- and they are never removed, whoever asks. Only the signature may be replaced, by the master-key rewrap that
-- re-signs a checkpoint under the new key after checking the old signature (a wrong one shows in verify).
CREATE OR REPLACE FUNCTION coffer.audit_checkpoints_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.tenant_id = OLD.tenant_id AND NEW.seq = OLD.seq AND NEW.hash = OLD.hash
     AND NEW.kind = OLD.kind AND NEW.created_at = OLD.created_at THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'coffer.audit_checkpoints is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
--> statement-breakpoint
-- Audit rows are never edited or removed through SQL. The one exception is retention's DELETE, inside
-- coffer.audit_retention_purge: the transaction-local setting alone let any role through (anyone can set a custom
-- setting), so the delete must also run as that function's owner, and only for events a checkpoint covers.
-- (An owner who disables the trigger is not stopped here; verify finds what went, against checkpoints and the
-- witness.)
CREATE OR REPLACE FUNCTION coffer.audit_events_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('coffer.retention_purge', true) = 'on'
     AND current_user = (SELECT r.rolname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                         WHERE p.oid = 'coffer.audit_retention_purge(uuid, bigint, integer)'::regprocedure)
     AND EXISTS (SELECT 1 FROM coffer.audit_checkpoints c WHERE c.tenant_id = OLD.tenant_id AND c.seq >= OLD.seq) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'coffer.audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
--> statement-breakpoint
-- Retention is the one way audit rows leave: this function, owned by the schema owner, drops a tenant's events up
-- to a cut point after the app has written a signed checkpoint there, at most p_limit rows a call. The retention
-- comes from coffer.audit_retention (which the app role cannot write), never below 30 days whatever that row says.
CREATE OR REPLACE FUNCTION coffer.audit_retention_purge(p_tenant uuid, p_through_seq bigint, p_limit integer)
  RETURNS bigint
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = coffer, pg_temp
  AS $$
DECLARE
  v_deleted bigint;
  v_retention integer;
  v_cut bigint;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.tenants t WHERE t.id = p_tenant) THEN
    RAISE EXCEPTION 'no tenant %', p_tenant USING ERRCODE = 'no_data_found';
  END IF;
  SELECT greatest(coalesce((SELECT r.days FROM coffer.audit_retention r WHERE r.tenant_id = p_tenant), 400), 30)
    INTO v_retention;
  IF NOT EXISTS (
    SELECT 1 FROM coffer.audit_checkpoints c WHERE c.tenant_id = p_tenant AND c.seq >= p_through_seq
  ) THEN
    RAISE EXCEPTION 'no checkpoint at or after seq % for tenant %: write one before dropping events', p_through_seq, p_tenant
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  -- Only a prefix of the chain older than the tenant's retention goes, whatever cut point the caller names:
  -- stop before the first event inside the retention period, so no gap opens in what remains.
  SELECT least(p_through_seq, coalesce(min(x.seq) - 1, p_through_seq)) INTO v_cut
    FROM coffer.audit_events x
    WHERE x.tenant_id = p_tenant AND x.occurred_at >= now() - make_interval(days => v_retention);
  PERFORM set_config('coffer.retention_purge', 'on', true);
  DELETE FROM coffer.audit_events e
    WHERE e.tenant_id = p_tenant
      AND e.seq IN (SELECT x.seq FROM coffer.audit_events x
                    WHERE x.tenant_id = p_tenant AND x.seq <= v_cut
                    ORDER BY x.seq LIMIT p_limit);
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  PERFORM set_config('coffer.retention_purge', 'off', true);
  RETURN v_deleted;
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION coffer.audit_retention_purge(uuid, bigint, integer) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_retention_purge(uuid, bigint, integer) TO coffer_app;
--> statement-breakpoint
-- The one way to change a tenant's audit retention (the app role may only read coffer.audit_retention). Holds the
-- bounds whoever calls, and appends the caller's events for the change to the platform's chain (the platform admin's
-- actions are recorded there, never in the tenant's) in the same transaction, through audit_append: a change without
-- an event cannot be made, and one made without the platform's link key shows in verify.
CREATE OR REPLACE FUNCTION coffer.audit_set_retention(p_tenant uuid, p_days integer, p_events jsonb, p_key_id text,
  p_key bytea) RETURNS integer
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = coffer, public, pg_temp
  AS $$
DECLARE
  v_previous integer;
BEGIN
  IF p_days IS NULL OR p_days < 30 OR p_days > 3650 THEN
    RAISE EXCEPTION 'audit retention must be 30 to 3650 days, not %', p_days USING ERRCODE = 'check_violation';
  END IF;
  IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' OR jsonb_array_length(p_events) = 0 THEN
    RAISE EXCEPTION 'a change of audit retention needs its audit event' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  SELECT r.days INTO v_previous FROM coffer.audit_retention r WHERE r.tenant_id = p_tenant FOR UPDATE;
  INSERT INTO coffer.audit_retention (tenant_id, days) VALUES (p_tenant, p_days)
    ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days, updated_at = now();
  PERFORM coffer.audit_append(coffer.platform_tenant(), p_events, p_key_id, p_key);
  RETURN coalesce(v_previous, 400);
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION coffer.audit_set_retention(uuid, integer, jsonb, text, bytea) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_set_retention(uuid, integer, jsonb, text, bytea) TO coffer_app;
--> statement-breakpoint
DROP FUNCTION coffer.audit_stage(p_tenant uuid, p_events jsonb);
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
GRANT EXECUTE ON FUNCTION coffer.audit_stage(uuid, jsonb, text, bytea) TO coffer_app;
--> statement-breakpoint
-- TRUNCATE bypasses row triggers: refuse it too.
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON coffer.audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_checkpoints_append_only();
--> statement-breakpoint
-- Refuses DELETE of a checkpoint and any UPDATE but a re-signature (see functions/audit_checkpoints_append_only.sql).
-- Written as pg_get_triggerdef prints it (events in INSERT, DELETE, UPDATE order).
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE DELETE OR UPDATE ON coffer.audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION coffer.audit_checkpoints_append_only();
