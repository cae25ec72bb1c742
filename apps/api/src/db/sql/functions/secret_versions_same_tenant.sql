-- A version belongs to its secret's tenant: refuse a row whose tenant differs from its secret's (23000).
CREATE OR REPLACE FUNCTION coffer.secret_versions_same_tenant() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM coffer.secrets s WHERE s.id = NEW.secret_id AND s.tenant_id = NEW.tenant_id) THEN
    RAISE EXCEPTION 'secret version tenant does not match its secret' USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$$;
