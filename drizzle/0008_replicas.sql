CREATE TABLE "coffer"."replicas" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"seen_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON coffer.replicas TO coffer_app;
--> statement-breakpoint
ALTER TABLE coffer.replicas ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.replicas FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.replicas
  USING (tenant_id = coffer.current_tenant()) WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
-- Timeouts as the query role's defaults, so they hold behind PgBouncer in transaction mode too (where startup
-- parameters cannot be passed); a direct connection's startup parameters still override them.
ALTER ROLE coffer_app SET statement_timeout = '15s';
--> statement-breakpoint
ALTER ROLE coffer_app SET lock_timeout = '5s';
--> statement-breakpoint
ALTER ROLE coffer_app SET idle_in_transaction_session_timeout = '30s';
