CREATE TABLE "coffer"."rotation_schedule" (
	"secret_id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"due_at" timestamp with time zone NOT NULL,
	"automatic" boolean NOT NULL
);
--> statement-breakpoint
CREATE TABLE "coffer"."webhook_deliveries" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"webhook_id" uuid NOT NULL,
	"event" text NOT NULL,
	"payload" jsonb NOT NULL,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone NOT NULL,
	"last_status_code" integer,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "coffer"."webhooks" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"url" text NOT NULL,
	"events" jsonb NOT NULL,
	"secret_wrapped" "bytea" NOT NULL,
	"secret_master_key_id" text NOT NULL,
	"disabled" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid
);
--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD COLUMN "served_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "rotation_interval_days" integer;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "rotation_grace_hours" integer;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "generator" jsonb;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "last_rotated_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "next_rotation_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "coffer"."rotation_schedule" ADD CONSTRAINT "rotation_schedule_secret_id_secrets_id_fk" FOREIGN KEY ("secret_id") REFERENCES "coffer"."secrets"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_webhook_id_webhooks_id_fk" FOREIGN KEY ("webhook_id") REFERENCES "coffer"."webhooks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."webhooks" ADD CONSTRAINT "webhooks_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "rotation_schedule_due_idx" ON "coffer"."rotation_schedule" USING btree ("due_at") WHERE "coffer"."rotation_schedule"."automatic";--> statement-breakpoint
CREATE INDEX "webhook_deliveries_due_idx" ON "coffer"."webhook_deliveries" USING btree ("next_attempt_at") WHERE "coffer"."webhook_deliveries"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "webhook_deliveries_webhook_idx" ON "coffer"."webhook_deliveries" USING btree ("tenant_id","webhook_id","created_at");--> statement-breakpoint
CREATE INDEX "webhooks_tenant_idx" ON "coffer"."webhooks" USING btree ("tenant_id");--> statement-breakpoint
CREATE INDEX "secrets_next_rotation_idx" ON "coffer"."secrets" USING btree ("tenant_id","next_rotation_at");--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.rotation_schedule, coffer.webhooks, coffer.webhook_deliveries TO coffer_app;
--> statement-breakpoint
GRANT UPDATE (mac, master_key_id) ON coffer.audit_checkpoints TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.rotation_schedule ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.rotation_schedule FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.rotation_schedule
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- The scheduler finds and claims due rotations across tenants (ids and times only), then rotates each in its
-- tenant's scope.
CREATE POLICY platform_claim_select ON coffer.rotation_schedule FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
CREATE POLICY platform_claim_update ON coffer.rotation_schedule FOR UPDATE
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
ALTER TABLE coffer.webhooks ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.webhooks FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.webhooks
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
ALTER TABLE coffer.webhook_deliveries ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.webhook_deliveries FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.webhook_deliveries
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
CREATE POLICY platform_claim_select ON coffer.webhook_deliveries FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
CREATE POLICY platform_claim_update ON coffer.webhook_deliveries FOR UPDATE
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
-- Master-key rotation re-wraps every tenant's keys and re-signs checkpoints from the platform scope.
CREATE POLICY platform_rewrap ON coffer.tenant_keys FOR UPDATE
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
CREATE POLICY platform_resign ON coffer.audit_checkpoints FOR UPDATE
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint

-- New ciphertexts are sealed only under the tenant's active data key. A replica whose key cache is stale after a
-- rotation gets SQLSTATE CF001 and retries with fresh keys; retiring a key locks its row, so no writer can seal
-- under a key while it is being erased.
CREATE FUNCTION coffer.secret_versions_active_key() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NEW.ciphertext IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM coffer.tenant_keys k
    WHERE k.tenant_id = NEW.tenant_id AND k.version = NEW.dek_version AND k.state = 'active'
    FOR SHARE
  ) THEN
    RAISE EXCEPTION 'data key version % is not the active key of the tenant', NEW.dek_version USING ERRCODE = 'CF001';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER secret_versions_active_key BEFORE INSERT OR UPDATE OF dek_version ON coffer.secret_versions
  FOR EACH ROW EXECUTE FUNCTION coffer.secret_versions_active_key();
--> statement-breakpoint

-- read_secret learns `previous` (p_version = -1) and the grace period: a version superseded by a rotation is
-- served until served_until, and is neither decrypted nor returned after.
DROP FUNCTION coffer.read_secret(uuid, text, text, text, integer, text[]);
--> statement-breakpoint
CREATE FUNCTION coffer.read_secret(p_tenant uuid, p_kind text, p_owner text, p_name text, p_version integer,
    p_keys text[])
  RETURNS TABLE (secret_id uuid, current_version integer, description text, tags jsonb, format jsonb,
    expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid, version integer,
    dek_version integer, destroyed boolean, expired boolean, served_until timestamptz, plaintext text,
    rotation_interval_days integer, rotation_grace_hours integer, generator jsonb, last_rotated_at timestamptz,
    next_rotation_at timestamptz)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.id, s.current_version, s.description, s.tags, s.format, s.expires_at, s.created_at, s.updated_at,
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
-- The delivery worker reads webhook targets across tenants, and master-key rotation re-wraps their secrets.
CREATE POLICY platform_read ON coffer.webhooks FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
CREATE POLICY platform_rewrap ON coffer.webhooks FOR UPDATE
  USING (coffer.current_tenant() = coffer.platform_tenant());
