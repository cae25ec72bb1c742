-- The platform's own tenant: platform identities live there and platform events are chained there.
CREATE OR REPLACE FUNCTION coffer.platform_tenant() RETURNS uuid
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
