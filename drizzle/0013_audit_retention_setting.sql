CREATE TABLE "coffer"."audit_retention" (
	"tenant_id" uuid PRIMARY KEY NOT NULL,
	"days" integer NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "audit_retention_days_bounds" CHECK ("coffer"."audit_retention"."days" between 30 and 3650)
);
--> statement-breakpoint
ALTER TABLE "coffer"."audit_retention" ADD CONSTRAINT "audit_retention_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;
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
