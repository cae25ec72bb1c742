-- Signed checkpoints are evidence: once written, what they vouch for (tenant, seq, hash, kind, time) never changes
-- and they are never removed, whoever asks. Only the signature may be replaced, by the master-key rewrap that
-- re-signs a checkpoint under the new key after checking the old signature (a wrong one shows in verify).
CREATE OR REPLACE FUNCTION coffer.audit_checkpoints_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.tenant_id = OLD.tenant_id AND NEW.seq = OLD.seq AND NEW.hash = OLD.hash
     AND NEW.kind = OLD.kind AND NEW.created_at = OLD.created_at THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'coffer.audit_checkpoints is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
