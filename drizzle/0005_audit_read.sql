CREATE TABLE "coffer"."audit_checkpoints" (
	"tenant_id" uuid NOT NULL,
	"seq" bigint NOT NULL,
	"hash" "bytea" NOT NULL,
	"mac" "bytea" NOT NULL,
	"master_key_id" text NOT NULL,
	"kind" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "audit_checkpoints_tenant_id_seq_pk" PRIMARY KEY("tenant_id","seq")
);
--> statement-breakpoint
ALTER TABLE "coffer"."audit_events" DROP CONSTRAINT "audit_events_tenant_seq_key";--> statement-breakpoint
DROP INDEX "coffer"."audit_events_tenant_time_idx";--> statement-breakpoint
ALTER TABLE "coffer"."audit_events" DROP CONSTRAINT "audit_events_pkey";--> statement-breakpoint
ALTER TABLE "coffer"."audit_events" ADD CONSTRAINT "audit_events_pkey" PRIMARY KEY("tenant_id","seq");--> statement-breakpoint
ALTER TABLE "coffer"."tenants" ADD COLUMN "audit_retention_days" integer DEFAULT 400 NOT NULL;--> statement-breakpoint
CREATE INDEX "audit_events_time_idx" ON "coffer"."audit_events" USING btree ("tenant_id","occurred_at");--> statement-breakpoint
CREATE INDEX "audit_events_actor_idx" ON "coffer"."audit_events" USING btree ("tenant_id","actor_id","seq");--> statement-breakpoint
CREATE INDEX "audit_events_action_idx" ON "coffer"."audit_events" USING btree ("tenant_id","action" text_pattern_ops,"seq");--> statement-breakpoint
CREATE INDEX "audit_events_resource_idx" ON "coffer"."audit_events" USING btree ("tenant_id","resource" text_pattern_ops,"seq");--> statement-breakpoint
CREATE INDEX "audit_events_not_allowed_idx" ON "coffer"."audit_events" USING btree ("tenant_id","seq") WHERE "coffer"."audit_events"."outcome" <> 'allowed';--> statement-breakpoint
GRANT SELECT, INSERT ON coffer.audit_checkpoints TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.audit_checkpoints ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.audit_checkpoints FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.audit_checkpoints
  USING (tenant_id = coffer.current_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- The checkpoint job (platform scope) finds chains that moved since their last checkpoint.
CREATE POLICY platform_read ON coffer.audit_heads FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
CREATE POLICY platform_read ON coffer.audit_checkpoints FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint

-- Retention is the one way audit rows leave: this function, owned by the schema owner, drops a tenant's events up
-- to a cut point after the app has written a signed checkpoint there, at most p_limit rows a call. The append-only
-- trigger lets a DELETE through only inside it (the app role has no DELETE grant to try anything else).
CREATE OR REPLACE FUNCTION coffer.audit_events_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('coffer.retention_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'coffer.audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
--> statement-breakpoint
CREATE FUNCTION coffer.audit_retention_purge(p_tenant uuid, p_through_seq bigint, p_limit integer)
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
  SELECT t.audit_retention_days INTO v_retention FROM coffer.tenants t WHERE t.id = p_tenant;
  IF v_retention IS NULL THEN
    RAISE EXCEPTION 'no tenant %', p_tenant USING ERRCODE = 'no_data_found';
  END IF;
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
ALTER TABLE coffer.tenants ADD CONSTRAINT tenants_audit_retention_days_check CHECK (audit_retention_days >= 1);
