-- The per-request identity lookup, with the tenant's rate limit and the identity's revision, in one round trip.
-- It also returns the secret hash, the federation bindings and the MAC, so that the API can check the row's MAC
-- (the database cannot).
CREATE OR REPLACE FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid)
  RETURNS TABLE (id uuid, client_id text, name text, role text, policies jsonb, credential_version integer,
    disabled boolean, rate_limit_per_second integer, revision integer, tenant_id uuid, secret_hash text,
    federation jsonb, mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY SELECT i.id, i.client_id, i.name, i.role, i.policies, i.credential_version, i.disabled,
      t.rate_limit_per_second, i.revision, i.tenant_id, i.secret_hash, i.federation, i.mac
    FROM coffer.identities i LEFT JOIN coffer.tenants t ON t.id = i.tenant_id
    WHERE i.id = p_identity;
END
$$;
