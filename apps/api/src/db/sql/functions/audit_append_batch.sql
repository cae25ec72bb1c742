-- Several tenants' events in one call, so a group commit of reads is one round trip in autocommit mode (one
-- statement = one transaction = one WAL flush). Callers pass tenants in a fixed (sorted) order, so two batches
-- never wait on each other's heads in a cycle.
CREATE OR REPLACE FUNCTION coffer.audit_append_batch(p_tenants uuid[], p_events jsonb[], p_key_ids text[], p_keys bytea[])
  RETURNS integer
  LANGUAGE plpgsql
  AS $$
DECLARE
  i integer;
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_tenants, 1), 0) LOOP
    PERFORM coffer.audit_append(p_tenants[i], p_events[i], p_key_ids[i], p_keys[i]);
  END LOOP;
  RETURN coalesce(array_length(p_tenants, 1), 0);
END
$$;
