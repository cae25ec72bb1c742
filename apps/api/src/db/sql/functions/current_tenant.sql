-- The tenant a transaction acts for, set with set_config('app.tenant_id', id, true). Unset means no rows: every
-- RLS policy compares with it.
CREATE OR REPLACE FUNCTION coffer.current_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
