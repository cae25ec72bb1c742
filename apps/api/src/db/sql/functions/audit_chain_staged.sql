-- At commit, chains the events a transaction staged, with the link key audit_stage kept for their tenant. Any
-- failure fails the COMMIT with CF002, so the change is not made without its events.
CREATE OR REPLACE FUNCTION coffer.audit_chain_staged() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  v_key text;
BEGIN
  BEGIN
    v_key := current_setting('coffer_audit_key.t' || replace(NEW.tenant_id::text, '-', ''), true);
    PERFORM coffer.audit_append(NEW.tenant_id, NEW.events, split_part(v_key, ' ', 1),
      decode(split_part(v_key, ' ', 2), 'hex'));
    DELETE FROM coffer.audit_staged WHERE id = NEW.id;
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'the audit log refused the events of this transaction' USING ERRCODE = 'CF002';
  END;
  RETURN NULL;
END
$$;
