-- Checked whenever a version's tenant or secret is set.
CREATE TRIGGER secret_versions_same_tenant BEFORE INSERT OR UPDATE OF tenant_id, secret_id ON coffer.secret_versions
  FOR EACH ROW EXECUTE FUNCTION coffer.secret_versions_same_tenant();
