-- Made by `npm run db:sql` from apps/api/src/db/sql/ (audit_events_no_update_delete).
-- Edit those files and run it again; do not edit this migration.
DROP TRIGGER IF EXISTS audit_events_no_update_delete ON coffer.audit_events;
--> statement-breakpoint
-- Refuses UPDATE and DELETE of any audit row. Trigger files are written as pg_get_triggerdef prints them (events
-- in INSERT, DELETE, UPDATE order): the database check compares triggers as text.
CREATE TRIGGER audit_events_no_update_delete BEFORE DELETE OR UPDATE ON coffer.audit_events
  FOR EACH ROW EXECUTE FUNCTION coffer.audit_events_append_only();
