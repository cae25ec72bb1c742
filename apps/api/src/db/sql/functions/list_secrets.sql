-- One page of one environment's live secrets' metadata in (kind, owner, name) order after the given key (keyset pagination: stable
-- under concurrent inserts), filtered by kind, owner and name prefix.
CREATE OR REPLACE FUNCTION coffer.list_secrets(p_tenant uuid, p_env text, p_kind text, p_owner text, p_prefix text, p_after_kind text,
    p_after_owner text, p_after_name text, p_limit integer)
  RETURNS SETOF coffer.secrets
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT s.* FROM coffer.secrets s
    WHERE s.tenant_id = p_tenant AND s.environment = p_env AND s.deleted_at IS NULL
      AND (p_kind IS NULL OR s.kind = p_kind)
      AND (p_owner IS NULL OR s.owner = p_owner)
      AND (p_prefix IS NULL OR starts_with(s.name, p_prefix))
      AND (p_after_kind IS NULL OR (s.kind, s.owner, s.name) > (p_after_kind, p_after_owner, p_after_name))
    ORDER BY s.kind, s.owner, s.name
    LIMIT p_limit;
END
$$;
