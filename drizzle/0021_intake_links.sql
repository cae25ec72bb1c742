CREATE TABLE "coffer"."intake_links" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"token_hash" "bytea" NOT NULL,
	"environment" text NOT NULL,
	"kind" text NOT NULL,
	"owner" text NOT NULL,
	"name" text NOT NULL,
	"format" jsonb,
	"label" text NOT NULL,
	"help" text,
	"expected_version" integer NOT NULL,
	"created_by" uuid NOT NULL,
	"creator_credential_version" integer NOT NULL,
	"creator_claims" jsonb,
	"state" text DEFAULT 'pending' NOT NULL,
	"received_version" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"closed_at" timestamp with time zone,
	CONSTRAINT "intake_links_token_hash_key" UNIQUE("token_hash")
);
--> statement-breakpoint
ALTER TABLE "coffer"."intake_links" ADD CONSTRAINT "intake_links_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."intake_links" ADD CONSTRAINT "intake_links_environment_fk" FOREIGN KEY ("tenant_id","environment") REFERENCES "coffer"."environments"("tenant_id","slug") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "intake_links_tenant_created_idx" ON "coffer"."intake_links" USING btree ("tenant_id","created_at");--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.intake_links TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.intake_links ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.intake_links FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.intake_links
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- The public intake routes know only the token: they may read the one link whose token hashes to it, whatever its
-- tenant, and nothing else (as login_lookup does for a client id).
CREATE POLICY intake_lookup ON coffer.intake_links FOR SELECT
  USING (token_hash = decode(nullif(current_setting('app.intake_token_hash', true), ''), 'hex'));
--> statement-breakpoint
-- An intake link's holder has only its token: scope the read to the one link whose token hashes to it (policy
-- intake_lookup), whatever its tenant, and read it in one round trip.
CREATE OR REPLACE FUNCTION coffer.intake_for_token(p_token_hash bytea)
  RETURNS SETOF coffer.intake_links
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.intake_token_hash', encode(p_token_hash, 'hex'), true);
  RETURN QUERY SELECT l.* FROM coffer.intake_links l WHERE l.token_hash = p_token_hash;
  PERFORM set_config('app.intake_token_hash', '', true);
END
$$;
