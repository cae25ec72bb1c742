-- Any change to an identity (policies, disabled, credentials, name) bumps its revision, which the hot reads compare
-- with the revision a cached principal was built from.
CREATE OR REPLACE FUNCTION coffer.identities_bump_revision() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  NEW.revision := OLD.revision + 1;
  RETURN NEW;
END
$$;
