-- An intake link's holder has only its token: scope the read to the one link whose token hashes to it (policy
-- intake_lookup), whatever its tenant, and read it in one round trip.
CREATE OR REPLACE FUNCTION coffer.intake_for_token(p_token_hash bytea)
  RETURNS SETOF coffer.intake_links
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM set_config('app.intake_token_hash', encode(p_token_hash, 'hex'), true);
  RETURN QUERY SELECT l.* FROM coffer.intake_links l WHERE l.token_hash = p_token_hash;
  PERFORM set_config('app.intake_token_hash', '', true);
END
$$;
