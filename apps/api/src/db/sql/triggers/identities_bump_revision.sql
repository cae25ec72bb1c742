-- Every UPDATE of an identity, whatever the column: see functions/identities_bump_revision.sql.
CREATE TRIGGER identities_bump_revision BEFORE UPDATE ON coffer.identities
  FOR EACH ROW EXECUTE FUNCTION coffer.identities_bump_revision();
