-- Retention is the one way audit rows leave: this function, owned by the schema owner, drops a tenant's events up
-- to a cut point after the app has written a signed checkpoint there, at most p_limit rows a call. The retention
-- comes from coffer.audit_retention (which the app role cannot write), never below 30 days whatever that row says.
CREATE OR REPLACE FUNCTION coffer.audit_retention_purge(p_tenant uuid, p_through_seq bigint, p_limit integer)
  RETURNS bigint
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = coffer, pg_temp
  AS $$
DECLARE
  v_deleted bigint;
  v_retention integer;
  v_cut bigint;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  IF NOT EXISTS (SELECT 1 FROM coffer.tenants t WHERE t.id = p_tenant) THEN
    RAISE EXCEPTION 'no tenant %', p_tenant USING ERRCODE = 'no_data_found';
  END IF;
  SELECT greatest(coalesce((SELECT r.days FROM coffer.audit_retention r WHERE r.tenant_id = p_tenant), 400), 30)
    INTO v_retention;
  IF NOT EXISTS (
    SELECT 1 FROM coffer.audit_checkpoints c WHERE c.tenant_id = p_tenant AND c.seq >= p_through_seq
  ) THEN
    RAISE EXCEPTION 'no checkpoint at or after seq % for tenant %: write one before dropping events', p_through_seq, p_tenant
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  -- Only a prefix of the chain older than the tenant's retention goes, whatever cut point the caller names:
  -- stop before the first event inside the retention period, so no gap opens in what remains.
  SELECT least(p_through_seq, coalesce(min(x.seq) - 1, p_through_seq)) INTO v_cut
    FROM coffer.audit_events x
    WHERE x.tenant_id = p_tenant AND x.occurred_at >= now() - make_interval(days => v_retention);
  PERFORM set_config('coffer.retention_purge', 'on', true);
  DELETE FROM coffer.audit_events e
    WHERE e.tenant_id = p_tenant
      AND e.seq IN (SELECT x.seq FROM coffer.audit_events x
                    WHERE x.tenant_id = p_tenant AND x.seq <= v_cut
                    ORDER BY x.seq LIMIT p_limit);
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  PERFORM set_config('coffer.retention_purge', 'off', true);
  RETURN v_deleted;
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION coffer.audit_retention_purge(uuid, bigint, integer) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_retention_purge(uuid, bigint, integer) TO coffer_app;
