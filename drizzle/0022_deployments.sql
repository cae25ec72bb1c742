CREATE TABLE "coffer"."deployment_items" (
	"tenant_id" uuid NOT NULL,
	"deployment_id" uuid NOT NULL,
	"position" integer NOT NULL,
	"secret_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"owner" text NOT NULL,
	"name" text NOT NULL,
	"action" text NOT NULL,
	"reason" text NOT NULL,
	"class" text,
	"version" integer,
	"prompt" jsonb,
	CONSTRAINT "deployment_items_pkey" PRIMARY KEY("deployment_id","position")
);
--> statement-breakpoint
CREATE TABLE "coffer"."deployment_receipts" (
	"tenant_id" uuid NOT NULL,
	"deployment_id" uuid NOT NULL,
	"secret_id" uuid NOT NULL,
	"path" text NOT NULL,
	"version" integer NOT NULL,
	"action" text NOT NULL,
	"via" text NOT NULL,
	"identity_id" uuid NOT NULL,
	"identity_name" text,
	"first_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_at" timestamp with time zone DEFAULT now() NOT NULL,
	"reads" integer DEFAULT 1 NOT NULL,
	CONSTRAINT "deployment_receipts_pkey" PRIMARY KEY("deployment_id","secret_id","version","identity_id","via")
);
--> statement-breakpoint
CREATE TABLE "coffer"."deployments" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"environment" text NOT NULL,
	"tier" text NOT NULL,
	"bundles" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid,
	"created_by_name" text,
	"revoked_at" timestamp with time zone,
	"revocation" jsonb
);
--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD COLUMN "revoked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD COLUMN "revoked_by" uuid;--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD COLUMN "deployment_id" uuid;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "class" text;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "strategy" jsonb;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "owner_team" text;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "contact" text;--> statement-breakpoint
ALTER TABLE "coffer"."deployment_items" ADD CONSTRAINT "deployment_items_deployment_id_deployments_id_fk" FOREIGN KEY ("deployment_id") REFERENCES "coffer"."deployments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."deployment_receipts" ADD CONSTRAINT "deployment_receipts_deployment_id_deployments_id_fk" FOREIGN KEY ("deployment_id") REFERENCES "coffer"."deployments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."deployments" ADD CONSTRAINT "deployments_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "deployment_items_secret_idx" ON "coffer"."deployment_items" USING btree ("tenant_id","secret_id");--> statement-breakpoint
CREATE INDEX "deployments_tenant_idx" ON "coffer"."deployments" USING btree ("tenant_id","id");--> statement-breakpoint
CREATE INDEX "deployments_tenant_env_idx" ON "coffer"."deployments" USING btree ("tenant_id","environment","id");--> statement-breakpoint
CREATE INDEX "secret_versions_deployment_idx" ON "coffer"."secret_versions" USING btree ("tenant_id","deployment_id") WHERE "coffer"."secret_versions"."deployment_id" is not null;--> statement-breakpoint
-- The app keeps the record of deployments: it adds and updates rows, and never deletes one (a tenant's deletion
-- cascades as the owner).
GRANT SELECT, INSERT, UPDATE ON coffer.deployments, coffer.deployment_receipts TO coffer_app;
--> statement-breakpoint
GRANT SELECT, INSERT ON coffer.deployment_items TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.deployments ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.deployments FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.deployments
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
ALTER TABLE coffer.deployment_items ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.deployment_items FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.deployment_items
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
ALTER TABLE coffer.deployment_receipts ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.deployment_receipts FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.deployment_receipts
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- Only the listed classes and actions are stored (the contracts' SecretClass and PlanAction).
ALTER TABLE coffer.secrets ADD CONSTRAINT secrets_class_check
  CHECK (class IS NULL OR class IN ('infrastructure', 'service', 'user'));
--> statement-breakpoint
ALTER TABLE coffer.deployment_items ADD CONSTRAINT deployment_items_action_check
  CHECK (action IN ('strip', 'generate', 'prompt', 'inject'));
