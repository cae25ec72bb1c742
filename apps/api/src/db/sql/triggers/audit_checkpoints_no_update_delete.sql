CREATE OR REPLACE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON coffer.audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION coffer.audit_checkpoints_append_only();
