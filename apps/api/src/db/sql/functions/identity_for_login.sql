-- Login knows only the client id: scope the read to that one identity (policy login_lookup) and read it in one
-- round trip. Output columns are qualified because plpgsql makes them variables. Policies, federation bindings,
-- revision and the MAC come along so that the API can check the row's MAC (the database cannot), and a federated
-- login matches the very bindings the MAC covered.
CREATE OR REPLACE FUNCTION coffer.identity_for_login(p_client_id text)
  RETURNS TABLE (id uuid, tenant_id uuid, client_id text, name text, role text, secret_hash text,
    credential_version integer, token_ttl_seconds integer, disabled boolean, policies jsonb, federation jsonb,
    revision integer, mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.login_client_id', p_client_id, true);
  RETURN QUERY SELECT i.id, i.tenant_id, i.client_id, i.name, i.role, i.secret_hash, i.credential_version,
    i.token_ttl_seconds, i.disabled, i.policies, i.federation, i.revision, i.mac FROM coffer.identities i
    WHERE i.client_id = p_client_id;
  PERFORM set_config('app.login_client_id', '', true);
END
$$;
