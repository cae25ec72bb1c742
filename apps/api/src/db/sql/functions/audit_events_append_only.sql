-- Audit rows are never edited or removed through SQL, whoever asks (grants keep the app role out; this stops the
-- owner by accident). The one exception is a DELETE inside audit_retention_purge, which sets
-- coffer.retention_purge for its own statement.
CREATE OR REPLACE FUNCTION coffer.audit_events_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('coffer.retention_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'coffer.audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
