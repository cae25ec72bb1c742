-- Appends the events of the reads a statement served, in that statement: a read and its audit event are one round
-- trip, one transaction and one commit, so the event is durable when the read's response leaves, as with the group
-- commit of coffer.audit_append_batch, without a second statement. An empty array appends nothing and takes no lock.
-- Any failure to chain (a head broken or locked past the timeout, no link key) fails the statement with CF002:
-- nothing is served without its event.
CREATE OR REPLACE FUNCTION coffer.audit_append_served(p_tenant uuid, p_events jsonb, p_key_id text, p_key bytea)
  RETURNS bigint
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF p_events IS NULL OR jsonb_array_length(p_events) = 0 THEN
    RETURN NULL;
  END IF;
  BEGIN
    RETURN coffer.audit_append(p_tenant, p_events, p_key_id, p_key);
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'the audit log refused the events of this read' USING ERRCODE = 'CF002';
  END;
END
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION coffer.audit_append_served(uuid, jsonb, text, bytea) TO coffer_app;
