-- Several tenants' events in one call, so a group commit of reads is one round trip in autocommit mode (one
-- statement = one transaction = one WAL flush). Callers pass tenants in a fixed (sorted) order, so two batches
-- never wait on each other's heads in a cycle. Each tenant appends in its own subtransaction: a tenant whose events
-- cannot be chained (its head broken, its head locked past the timeout) is rolled back alone and returned, so the
-- caller fails only that tenant's requests, never the other tenants' that shared the commit.
CREATE OR REPLACE FUNCTION coffer.audit_append_batch(p_tenants uuid[], p_events jsonb[], p_key_ids text[], p_keys bytea[])
  RETURNS uuid[]
  LANGUAGE plpgsql
  AS $$
DECLARE
  i integer;
  v_failed uuid[] := '{}';
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_tenants, 1), 0) LOOP
    BEGIN
      PERFORM coffer.audit_append(p_tenants[i], p_events[i], p_key_ids[i], p_keys[i]);
    EXCEPTION WHEN OTHERS THEN
      v_failed := v_failed || p_tenants[i];
    END;
  END LOOP;
  RETURN v_failed;
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append_batch(uuid[], jsonb[], text[], bytea[]) TO coffer_app;
