-- The one way to change a tenant's audit retention (the app role may only read coffer.audit_retention). Holds the
-- bounds whoever calls, and appends the caller's events for the change to the platform's chain (the platform admin's
-- actions are recorded there, never in the tenant's) in the same transaction, through audit_append: a change without
-- an event cannot be made, and one made without the platform's link key shows in verify.
CREATE OR REPLACE FUNCTION coffer.audit_set_retention(p_tenant uuid, p_days integer, p_events jsonb, p_key_id text,
  p_key bytea) RETURNS integer
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = coffer, public, pg_temp
  AS $$
DECLARE
  v_previous integer;
BEGIN
  IF p_days IS NULL OR p_days < 30 OR p_days > 3650 THEN
    RAISE EXCEPTION 'audit retention must be 30 to 3650 days, not %', p_days USING ERRCODE = 'check_violation';
  END IF;
  IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' OR jsonb_array_length(p_events) = 0 THEN
    RAISE EXCEPTION 'a change of audit retention needs its audit event' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  SELECT r.days INTO v_previous FROM coffer.audit_retention r WHERE r.tenant_id = p_tenant FOR UPDATE;
  INSERT INTO coffer.audit_retention (tenant_id, days) VALUES (p_tenant, p_days)
    ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days, updated_at = now();
  PERFORM coffer.audit_append(coffer.platform_tenant(), p_events, p_key_id, p_key);
  RETURN coalesce(v_previous, 400);
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION coffer.audit_set_retention(uuid, integer, jsonb, text, bytea) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_set_retention(uuid, integer, jsonb, text, bytea) TO coffer_app;
