-- Made by `npm run db:sql` from apps/api/src/db/sql/ (read_secrets).
-- Edit those files and run it again; do not edit this migration.
-- The hot reads of one tenant in one statement (the API's ReadBatcher groups those that arrive together), each
-- with its audit event or none: coffer.read_secret once per read, in their order (each sets the tenant scope it
-- reads under, checks its own caller's identity revision and decides its own outcome, exactly as alone), then the
-- events of the reads it served, version filled in, appended to the tenant's chain (coffer.audit_append_served).
-- A read and its event commit together or not at all. Rows come back in the reads' order, n numbering them from 1.
-- Planned once per backend (a generic plan): custom plans made this statement plan itself on every call, which
-- cost more than running it.
CREATE OR REPLACE FUNCTION coffer.read_secrets(p_tenant uuid, p_identities uuid[], p_revisions integer[],
    p_envs text[], p_kinds text[], p_owners text[], p_names text[], p_versions integer[], p_previous boolean[],
    p_keys text[], p_events jsonb, p_key_id text, p_key bytea)
  RETURNS TABLE (n bigint, outcome text, secret_id uuid, current_version integer, description text, tags jsonb,
    format jsonb, expires_at timestamptz, created_at timestamptz, updated_at timestamptz, created_by uuid,
    version integer, served_until timestamptz, plaintext text, rotation_interval_days integer,
    rotation_grace_hours integer, generator jsonb, last_rotated_at timestamptz, next_rotation_at timestamptz,
    secret_mac text, version_mac text, class text, strategy jsonb, owner_team text, contact text,
    revoked_at timestamptz, deployment_id uuid)
  LANGUAGE plpgsql
  SET plan_cache_mode = force_generic_plan
  AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH b AS (
      SELECT * FROM unnest(p_identities, p_revisions, p_envs, p_kinds, p_owners, p_names, p_versions, p_previous)
        WITH ORDINALITY AS b(identity, revision, env, kind, owner, name, version, previous, n)
    ), r AS MATERIALIZED (
      SELECT b.n, x.* FROM b CROSS JOIN LATERAL coffer.read_secret(p_tenant, b.identity, b.revision, b.env, b.kind,
        b.owner, b.name, b.version, b.previous, p_keys) x
    ), a AS (
      SELECT coffer.audit_append_served(p_tenant, coalesce(
        jsonb_agg(jsonb_set(p_events -> (r.n::int - 1), '{version}', to_jsonb(r.version)) ORDER BY r.n)
          FILTER (WHERE r.outcome = 'ok' AND jsonb_typeof(p_events -> (r.n::int - 1)) = 'object'),
        '[]'::jsonb), p_key_id, p_key) AS seq
      FROM r
    )
    SELECT r.* FROM r CROSS JOIN a ORDER BY r.n;
END
$$;
