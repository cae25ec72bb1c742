-- Made by `npm run db:sql` from apps/api/src/db/sql/ (identity_for_login, identity_for_token).
-- Edit those files and run it again; do not edit this migration.
DROP FUNCTION coffer.identity_for_login(p_client_id text);
--> statement-breakpoint
-- Login knows only the client id: scope the read to that one identity (policy login_lookup) and read it in one
-- round trip. Output columns are qualified because plpgsql makes them variables. Policies, revision and the MAC come
-- along so that the API can check the row's MAC (the database cannot).
CREATE OR REPLACE FUNCTION coffer.identity_for_login(p_client_id text)
  RETURNS TABLE (id uuid, tenant_id uuid, client_id text, name text, role text, secret_hash text,
    credential_version integer, token_ttl_seconds integer, disabled boolean, policies jsonb, revision integer,
    mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.login_client_id', p_client_id, true);
  RETURN QUERY SELECT i.id, i.tenant_id, i.client_id, i.name, i.role, i.secret_hash, i.credential_version,
    i.token_ttl_seconds, i.disabled, i.policies, i.revision, i.mac FROM coffer.identities i
    WHERE i.client_id = p_client_id;
  PERFORM set_config('app.login_client_id', '', true);
END
$$;
--> statement-breakpoint
DROP FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid);
--> statement-breakpoint
-- The per-request identity lookup, with the tenant's rate limit and the identity's revision, in one round trip.
-- It also returns the secret hash and the MAC, so that the API can check the row's MAC (the database cannot).
CREATE OR REPLACE FUNCTION coffer.identity_for_token(p_tenant uuid, p_identity uuid)
  RETURNS TABLE (id uuid, client_id text, name text, role text, policies jsonb, credential_version integer,
    disabled boolean, rate_limit_per_second integer, revision integer, tenant_id uuid, secret_hash text, mac text)
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  RETURN QUERY SELECT i.id, i.client_id, i.name, i.role, i.policies, i.credential_version, i.disabled,
      t.rate_limit_per_second, i.revision, i.tenant_id, i.secret_hash, i.mac
    FROM coffer.identities i LEFT JOIN coffer.tenants t ON t.id = i.tenant_id
    WHERE i.id = p_identity;
END
$$;
