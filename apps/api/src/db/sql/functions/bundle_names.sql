-- Names of an owner's live secrets in one environment (no values): what a bundle could contain, for the caller's policy filter.
CREATE OR REPLACE FUNCTION coffer.bundle_names(p_tenant uuid, p_env text, p_kind text, p_owner text)
  RETURNS TABLE (name text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.name FROM coffer.secrets s
    WHERE s.tenant_id = p_tenant AND s.environment = p_env AND s.kind = p_kind AND s.owner = p_owner AND s.deleted_at IS NULL
      AND (s.expires_at IS NULL OR s.expires_at > now())
    ORDER BY s.name;
END
$$;
