-- New ciphertexts are sealed only under the tenant's active data key: a writer with a stale key cache gets SQLSTATE
-- CF001 and retries with fresh keys. FOR SHARE: retiring a key locks its row, so nobody seals under a key while it
-- is being erased.
CREATE OR REPLACE FUNCTION coffer.secret_versions_active_key() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NEW.ciphertext IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM coffer.tenant_keys k
    WHERE k.tenant_id = NEW.tenant_id AND k.version = NEW.dek_version AND k.state = 'active'
    FOR SHARE
  ) THEN
    RAISE EXCEPTION 'data key version % is not the active key of the tenant', NEW.dek_version USING ERRCODE = 'CF001';
  END IF;
  RETURN NEW;
END
$$;
