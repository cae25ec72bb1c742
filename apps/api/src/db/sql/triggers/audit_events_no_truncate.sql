-- TRUNCATE bypasses row triggers: refuse it too.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON coffer.audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_events_append_only();
