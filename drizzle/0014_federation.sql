CREATE TABLE "coffer"."federation_replays" (
	"tenant_id" uuid NOT NULL,
	"issuer_id" uuid NOT NULL,
	"token_hash" "bytea" NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "federation_replays_tenant_id_issuer_id_token_hash_pk" PRIMARY KEY("tenant_id","issuer_id","token_hash")
);
--> statement-breakpoint
CREATE TABLE "coffer"."trusted_issuers" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"issuer" text NOT NULL,
	"jwks" jsonb NOT NULL,
	"audiences" text[] NOT NULL,
	"algorithms" text[] NOT NULL,
	"max_token_age_seconds" integer NOT NULL,
	"clock_skew_seconds" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "trusted_issuers_tenant_name_key" UNIQUE("tenant_id","name"),
	CONSTRAINT "trusted_issuers_tenant_issuer_key" UNIQUE("tenant_id","issuer")
);
--> statement-breakpoint
ALTER TABLE "coffer"."identities" ADD COLUMN "federation" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "coffer"."federation_replays" ADD CONSTRAINT "federation_replays_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."federation_replays" ADD CONSTRAINT "federation_replays_issuer_id_trusted_issuers_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "coffer"."trusted_issuers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."trusted_issuers" ADD CONSTRAINT "trusted_issuers_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "federation_replays_expiry_idx" ON "coffer"."federation_replays" USING btree ("tenant_id","expires_at");--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.trusted_issuers, coffer.federation_replays TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.trusted_issuers ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.trusted_issuers FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.trusted_issuers
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
ALTER TABLE coffer.federation_replays ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.federation_replays FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.federation_replays
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
