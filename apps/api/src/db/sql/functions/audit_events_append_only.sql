-- Audit rows are never edited or removed through SQL. The one exception is retention's DELETE, inside
-- coffer.audit_retention_purge: the transaction-local setting alone let any role through (anyone can set a custom
-- setting), so the delete must also run as that function's owner, and only for events a checkpoint covers.
-- (An owner who disables the trigger is not stopped here; verify finds what went, against checkpoints and the
-- witness.)
CREATE OR REPLACE FUNCTION coffer.audit_events_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('coffer.retention_purge', true) = 'on'
     AND current_user = (SELECT r.rolname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                         WHERE p.oid = 'coffer.audit_retention_purge(uuid, bigint, integer)'::regprocedure)
     AND EXISTS (SELECT 1 FROM coffer.audit_checkpoints c WHERE c.tenant_id = OLD.tenant_id AND c.seq >= OLD.seq) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'coffer.audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
