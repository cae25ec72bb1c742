ALTER TABLE "coffer"."deployments" ADD COLUMN "mac" text;--> statement-breakpoint
-- The deployments that exist now have no MAC, and the secrets and versions whose deployment columns are set carry a
-- MAC made before it covered them: list them, and the API MACs them once at start (row-mac-backfill.ts). A listed
-- secret or version is MACed again only if its old MAC still verifies; one without a MAC here is left alone (it is
-- either listed by the row_macs migration already or was stripped of its MAC, and fails its check).
DO $$
DECLARE
  t uuid;
BEGIN
  PERFORM set_config('app.tenant_id', coffer.platform_tenant()::text, true);
  FOR t IN SELECT id FROM coffer.tenants LOOP
    PERFORM set_config('app.tenant_id', t::text, true);
    INSERT INTO coffer.row_mac_backfill (tenant_id, row_kind, row_id, version)
      SELECT tenant_id, 'secret', id, 0 FROM coffer.secrets
        WHERE tenant_id = t AND mac IS NOT NULL
          AND (class IS NOT NULL OR strategy IS NOT NULL OR owner_team IS NOT NULL OR contact IS NOT NULL)
      UNION ALL SELECT tenant_id, 'version', secret_id, version FROM coffer.secret_versions
        WHERE tenant_id = t AND mac IS NOT NULL AND (revoked_at IS NOT NULL OR deployment_id IS NOT NULL)
      UNION ALL SELECT tenant_id, 'deployment', id, 0 FROM coffer.deployments WHERE tenant_id = t
      ON CONFLICT DO NOTHING;
  END LOOP;
  PERFORM set_config('app.tenant_id', '', true);
END
$$;
