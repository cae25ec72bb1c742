CREATE TABLE "coffer"."row_mac_backfill" (
	"tenant_id" uuid NOT NULL,
	"row_kind" text NOT NULL,
	"row_id" uuid NOT NULL,
	"version" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "row_mac_backfill_row_kind_row_id_version_pk" PRIMARY KEY("row_kind","row_id","version")
);
--> statement-breakpoint
ALTER TABLE "coffer"."identities" ADD COLUMN "mac" text;--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD COLUMN "mac" text;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD COLUMN "mac" text;--> statement-breakpoint
ALTER TABLE "coffer"."trusted_issuers" ADD COLUMN "mac" text;--> statement-breakpoint
-- The rows that exist now have no MAC and the database cannot make one (it never holds the key): list them, and the
-- API MACs exactly these once at start. coffer_app may read and remove entries, never add one.
ALTER TABLE coffer.row_mac_backfill ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE coffer.row_mac_backfill FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY tenant_scope ON coffer.row_mac_backfill
  USING (tenant_id = coffer.current_tenant() OR coffer.current_tenant() = coffer.platform_tenant())
  WITH CHECK (tenant_id = coffer.current_tenant());
--> statement-breakpoint
GRANT SELECT, DELETE ON coffer.row_mac_backfill TO coffer_app;
--> statement-breakpoint
-- Tenant by tenant, so that it also works for a migrating role that is subject to the forced RLS.
DO $$
DECLARE
  t uuid;
BEGIN
  PERFORM set_config('app.tenant_id', coffer.platform_tenant()::text, true);
  FOR t IN SELECT id FROM coffer.tenants LOOP
    PERFORM set_config('app.tenant_id', t::text, true);
    INSERT INTO coffer.row_mac_backfill (tenant_id, row_kind, row_id, version)
      SELECT tenant_id, 'secret', id, 0 FROM coffer.secrets WHERE tenant_id = t
      UNION ALL SELECT tenant_id, 'version', secret_id, version FROM coffer.secret_versions WHERE tenant_id = t
      UNION ALL SELECT tenant_id, 'identity', id, 0 FROM coffer.identities WHERE tenant_id = t
      UNION ALL SELECT tenant_id, 'issuer', id, 0 FROM coffer.trusted_issuers WHERE tenant_id = t
      ON CONFLICT DO NOTHING;
  END LOOP;
  PERFORM set_config('app.tenant_id', '', true);
END
$$;
