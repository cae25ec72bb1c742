-- Stages a change's events in the caller's transaction; audit_chain_staged chains them at COMMIT. Also scopes the
-- transaction to the tenant, so statements after it behave as after audit_append.
CREATE OR REPLACE FUNCTION coffer.audit_stage(p_tenant uuid, p_events jsonb) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  INSERT INTO coffer.audit_staged (tenant_id, events) VALUES (p_tenant, p_events);
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_stage(uuid, jsonb) TO coffer_app;
