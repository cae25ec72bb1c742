-- Refuses UPDATE and DELETE of any audit row. Trigger files are written as pg_get_triggerdef prints them (events
-- in INSERT, DELETE, UPDATE order): the database check compares triggers as text.
CREATE TRIGGER audit_events_no_update_delete BEFORE DELETE OR UPDATE ON coffer.audit_events
  FOR EACH ROW EXECUTE FUNCTION coffer.audit_events_append_only();
