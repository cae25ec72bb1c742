CREATE TABLE "coffer"."dynamic_backends" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"engine" text NOT NULL,
	"connection_secret" text NOT NULL,
	"creation_statements" jsonb NOT NULL,
	"revocation_statements" jsonb NOT NULL,
	"renew_statements" jsonb NOT NULL,
	"default_ttl_seconds" integer NOT NULL,
	"max_ttl_seconds" integer NOT NULL,
	"username_template" text NOT NULL,
	"seal" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid,
	CONSTRAINT "dynamic_backends_tenant_name_key" UNIQUE("tenant_id","name")
);
--> statement-breakpoint
CREATE TABLE "coffer"."leases" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"backend_id" uuid,
	"backend_name" text NOT NULL,
	"identity_id" uuid NOT NULL,
	"identity_name" text NOT NULL,
	"deployment_id" uuid,
	"username" text NOT NULL,
	"seal" "bytea" NOT NULL,
	"state" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"max_expires_at" timestamp with time zone NOT NULL,
	"renewed_at" timestamp with time zone,
	"revoke_reason" text,
	"revoke_requested_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"revoke_attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone,
	"claim_token" uuid,
	"last_error" text,
	CONSTRAINT "leases_tenant_backend_username_key" UNIQUE("tenant_id","backend_id","username")
);
--> statement-breakpoint
ALTER TABLE "coffer"."dynamic_backends" ADD CONSTRAINT "dynamic_backends_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."leases" ADD CONSTRAINT "leases_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."leases" ADD CONSTRAINT "leases_backend_id_dynamic_backends_id_fk" FOREIGN KEY ("backend_id") REFERENCES "coffer"."dynamic_backends"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "leases_tenant_identity_idx" ON "coffer"."leases" USING btree ("tenant_id","identity_id");--> statement-breakpoint
CREATE INDEX "leases_tenant_backend_idx" ON "coffer"."leases" USING btree ("tenant_id","backend_id","state");--> statement-breakpoint
CREATE INDEX "leases_expiry_idx" ON "coffer"."leases" USING btree ("expires_at") WHERE "coffer"."leases"."state" = 'active';--> statement-breakpoint
CREATE INDEX "leases_revoke_due_idx" ON "coffer"."leases" USING btree ("next_attempt_at") WHERE "coffer"."leases"."state" in ('creating', 'revoking', 'revoke_failed');--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.dynamic_backends TO coffer_app;
--> statement-breakpoint
-- Leases are never deleted by the API: a lease stays in the inventory whatever became of it.
GRANT SELECT, INSERT, UPDATE ON coffer.leases TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.dynamic_backends ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.dynamic_backends FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.dynamic_backends
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
ALTER TABLE coffer.leases ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.leases FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.leases
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- The expiry job finds and claims due revocations across tenants (ids, states and times), then revokes each in its
-- tenant's scope.
CREATE POLICY platform_claim_select ON coffer.leases FOR SELECT
  USING (coffer.current_tenant() = coffer.platform_tenant());
--> statement-breakpoint
CREATE POLICY platform_claim_update ON coffer.leases FOR UPDATE
  USING (coffer.current_tenant() = coffer.platform_tenant());
