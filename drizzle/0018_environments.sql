CREATE TABLE "coffer"."environments" (
	"tenant_id" uuid NOT NULL,
	"slug" text NOT NULL,
	"name" text NOT NULL,
	"protected" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "environments_pkey" PRIMARY KEY("tenant_id","slug")
);
--> statement-breakpoint
-- Every tenant (the platform's own included) gets `default`, where all existing secrets go.
INSERT INTO "coffer"."environments" ("tenant_id", "slug", "name") SELECT "id", 'default', 'Default' FROM "coffer"."tenants";
--> statement-breakpoint
ALTER TABLE "coffer"."secrets" DROP CONSTRAINT "secrets_path_key";--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD COLUMN "fingerprint" text;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "environment" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "coffer"."environments" ADD CONSTRAINT "environments_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD CONSTRAINT "secrets_environment_fk" FOREIGN KEY ("tenant_id","environment") REFERENCES "coffer"."environments"("tenant_id","slug") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD CONSTRAINT "secrets_path_key" UNIQUE("tenant_id","environment","kind","owner","name");--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.environments TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.environments ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.environments FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.environments
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- The reads gain the environment as a parameter; the old signatures go (the next migration defines the new ones).
DROP FUNCTION coffer.read_secret(uuid, uuid, integer, text, text, text, integer, boolean, text[]);
--> statement-breakpoint
DROP FUNCTION coffer.read_bundle(uuid, uuid, integer, text, text, text[], text[]);
--> statement-breakpoint
DROP FUNCTION coffer.bundle_names(uuid, text, text);
--> statement-breakpoint
DROP FUNCTION coffer.list_secrets(uuid, text, text, text, text, text, text, integer);
