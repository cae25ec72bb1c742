-- Checked on insert and whenever the key version changes (re-encryption by data-key rotation).
CREATE TRIGGER secret_versions_active_key BEFORE INSERT OR UPDATE OF dek_version ON coffer.secret_versions
  FOR EACH ROW EXECUTE FUNCTION coffer.secret_versions_active_key();
