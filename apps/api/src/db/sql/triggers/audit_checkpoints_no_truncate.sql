-- TRUNCATE bypasses row triggers: refuse it too.
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON coffer.audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_checkpoints_append_only();
