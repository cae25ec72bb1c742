-- Runs at COMMIT (deferred constraint trigger on audit_staged): chains the transaction's staged events, so the
-- tenant's head lock is held for the commit alone. Any failure becomes SQLSTATE CF002 and fails the COMMIT: no
-- change commits without its audit events.
CREATE OR REPLACE FUNCTION coffer.audit_chain_staged() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  BEGIN
    PERFORM coffer.audit_append(NEW.tenant_id, NEW.events);
    DELETE FROM coffer.audit_staged WHERE id = NEW.id;
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'the audit log refused the events of this transaction' USING ERRCODE = 'CF002';
  END;
  RETURN NULL;
END
$$;
