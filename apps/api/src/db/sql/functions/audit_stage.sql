-- Stages a tenant's events in the caller's transaction (chained at commit by audit_chain_staged) and scopes the
-- transaction to that tenant. The link key is kept in a transaction-local setting, in the backend's memory only: in
-- the staged row it would outlive the transaction in a heap page.
CREATE OR REPLACE FUNCTION coffer.audit_stage(p_tenant uuid, p_events jsonb, p_key_id text, p_key bytea) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  PERFORM set_config('coffer_audit_key.t' || replace(p_tenant::text, '-', ''), p_key_id || ' ' || encode(p_key, 'hex'),
    true);
  INSERT INTO coffer.audit_staged (tenant_id, events) VALUES (p_tenant, p_events);
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_stage(uuid, jsonb, text, bytea) TO coffer_app;
