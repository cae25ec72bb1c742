-- Refuses DELETE of a checkpoint and any UPDATE but a re-signature (see functions/audit_checkpoints_append_only.sql).
-- Written as pg_get_triggerdef prints it (events in INSERT, DELETE, UPDATE order).
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE DELETE OR UPDATE ON coffer.audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION coffer.audit_checkpoints_append_only();
