CREATE TABLE "coffer"."sessions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"identity_id" uuid NOT NULL,
	"name" text,
	"method" text NOT NULL,
	"public_key" "bytea" NOT NULL,
	"refresh_hash" "bytea" NOT NULL,
	"generation" integer DEFAULT 1 NOT NULL,
	"credential_version" integer NOT NULL,
	"claims" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"last_refreshed_at" timestamp with time zone,
	"last_source_ip" text,
	"revoked_at" timestamp with time zone,
	"revoked_reason" text
);
--> statement-breakpoint
ALTER TABLE "coffer"."sessions" ADD CONSTRAINT "sessions_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."sessions" ADD CONSTRAINT "sessions_identity_id_identities_id_fk" FOREIGN KEY ("identity_id") REFERENCES "coffer"."identities"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "sessions_identity_idx" ON "coffer"."sessions" USING btree ("tenant_id","identity_id","created_at");--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.sessions TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.sessions ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.sessions FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.sessions
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- A refresh knows only the session id (it carries no token to name a tenant): it may read that one session,
-- whatever its tenant, and nothing else; the change itself then runs scoped to the session's tenant.
CREATE POLICY refresh_lookup ON coffer.sessions FOR SELECT
  USING (id = nullif(current_setting('app.refresh_session_id', true), '')::uuid);

