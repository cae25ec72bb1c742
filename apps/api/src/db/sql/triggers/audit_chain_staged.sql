-- Deferred to COMMIT: see functions/audit_chain_staged.sql.
CREATE CONSTRAINT TRIGGER audit_chain_staged AFTER INSERT ON coffer.audit_staged
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION coffer.audit_chain_staged();
