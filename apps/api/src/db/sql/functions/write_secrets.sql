-- Secret writes in one round trip: PUTs and bundle writes of one tenant, several requests ("calls") in one statement,
-- so they share one transaction, one commit and one link onto the tenant's audit chain. The API plans each call on
-- the rows as it last saw them (each with its xmin) and sends the finished rows: row MACs and binding lines are made
-- under keys the database never holds, so they cannot be made here. Per call, in this order (the order of the
-- errors a request sees): the identity's revision; the environment (exists, key-share locked; a protected one takes
-- writes only from admins; an admin writing to `default` skips it); the call's new custom patterns compile; every
-- row is still the one planned on (same xmin, or still absent; or, for an item planned on the row an earlier call of
-- this statement leaves, that call's row: its xmin and MAC), locked in the order given; values match their
-- custom patterns; then the changes. Each applying call runs in a subtransaction of its own, so one call that is
-- stale, fails its format or meets an error changes nothing and leaves the others be. A call that does not apply
-- (the API already refuses it on what it saw) only checks that what it saw is current, without locking.
-- Rows returned, per call: identity_changed, environment_not_found, environment_protected, bad_pattern (item_index:
-- which of the call's patterns), or one row per item: ok (the row as written), stale (the row as it is now, or no
-- row), format (pattern_ok per item), checked (pattern_ok per item), key_retired (CF001: the data key was retired),
-- failed (error_code: the SQLSTATE; 55P03 when a row stayed locked past p_lock_wait_ms). secret is to_jsonb of the
-- row; row_xmin its xmin. Values travel apart from the
-- calls, in p_values (each call's from its value_base), and the data key and the audit link key as parameters.
CREATE OR REPLACE FUNCTION coffer.write_secrets(p_tenant uuid, p_calls jsonb, p_values text[], p_key text,
    p_pgp_options text, p_link_key_id text, p_link_key bytea, p_lock_wait_ms integer)
  RETURNS TABLE (call_index integer, outcome text, item_index integer, pattern_ok boolean, row_xmin text,
    secret jsonb, error_code text)
  LANGUAGE plpgsql
  AS $$
DECLARE
  c jsonb;
  v_items jsonb;
  it jsonb;
  v jsonb;
  r coffer.secrets%ROWTYPE;
  ci integer;
  ii integer;
  n integer;
  v_base integer;
  v_role text;
  v_protected boolean;
  v_env text;
  v_kind text;
  v_owner text;
  v_apply boolean;
  v_cur jsonb;
  v_cur_id uuid;
  v_cur_mac text;
  v_xmin text;
  v_id uuid;
  v_value text;
  v_outcome text;
  v_code text;
  v_rows jsonb[];
  v_xmins text[];
  v_ok boolean[];
  v_events jsonb := '[]'::jsonb;
  v_notices jsonb := '[]'::jsonb;
  -- The xmin each row was left with by the calls applied so far, by secret id: what a chained item is checked on.
  v_left jsonb := '{}'::jsonb;
  v_identities jsonb := '{}'::jsonb;
  v_environments jsonb := '{}'::jsonb;
  v_lock_timeout text := current_setting('lock_timeout');
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  FOR ci IN 1 .. jsonb_array_length(p_calls) LOOP
    c := p_calls -> (ci - 1);
    v_env := c ->> 'env';
    v_kind := c ->> 'kind';
    v_owner := c ->> 'owner';
    v_apply := (c ->> 'apply')::boolean;
    v_base := (c ->> 'value_base')::integer;
    v_items := c -> 'items';
    n := jsonb_array_length(v_items);
    call_index := ci;
    item_index := NULL;
    pattern_ok := NULL;
    row_xmin := NULL;
    secret := NULL;
    error_code := NULL;

    -- An identity or environment checked once holds for the rest of the statement.
    v_role := v_identities ->> ((c ->> 'identity') || ':' || (c ->> 'revision'));
    IF v_role IS NULL THEN
      SELECT i.role INTO v_role FROM coffer.identities i
        WHERE i.id = (c ->> 'identity')::uuid AND i.revision = (c ->> 'revision')::integer AND NOT i.disabled;
      IF NOT FOUND THEN
        outcome := 'identity_changed';
        RETURN NEXT;
        CONTINUE;
      END IF;
      v_identities := v_identities || jsonb_build_object((c ->> 'identity') || ':' || (c ->> 'revision'), v_role);
    END IF;
    IF NOT (v_env = 'default' AND v_role = 'admin') THEN
      v_protected := (v_environments ->> v_env)::boolean;
      IF v_protected IS NULL THEN
        SELECT e.protected INTO v_protected FROM coffer.environments e
          WHERE e.tenant_id = p_tenant AND e.slug = v_env FOR KEY SHARE;
        IF NOT FOUND THEN
          outcome := 'environment_not_found';
          RETURN NEXT;
          CONTINUE;
        END IF;
        v_environments := v_environments || jsonb_build_object(v_env, v_protected);
      END IF;
      IF v_protected AND v_role <> 'admin' THEN
        outcome := 'environment_protected';
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    IF jsonb_array_length(c -> 'patterns') > 0 THEN
      v_outcome := NULL;
      BEGIN
        FOR ii IN 0 .. jsonb_array_length(c -> 'patterns') - 1 LOOP
          item_index := ii;
          PERFORM ''::text ~ (c -> 'patterns' ->> ii);
        END LOOP;
      EXCEPTION WHEN invalid_regular_expression THEN
        v_outcome := 'bad_pattern';
      END;
      IF v_outcome IS NOT NULL THEN
        outcome := v_outcome;
        RETURN NEXT;
        CONTINUE;
      END IF;
      item_index := NULL;
    END IF;

    v_rows := '{}';
    v_xmins := '{}';
    v_ok := '{}';
    v_outcome := NULL;
    v_code := NULL;
    BEGIN
      -- A call waits for a row lock only briefly (then `failed` with 55P03, and the API sends it again), so a row
      -- another transaction holds does not hold up the other calls of the statement. Restored at the block's end,
      -- or by its rollback.
      PERFORM set_config('lock_timeout', p_lock_wait_ms || 'ms', true);
      -- Each row as planned on: locked (when the call applies) in the order given, and compared.
      FOR ii IN 0 .. n - 1 LOOP
        it := v_items -> ii;
        IF v_apply THEN
          SELECT x.id, x.mac, x.xmin::text INTO v_cur_id, v_cur_mac, v_xmin FROM coffer.secrets x
            WHERE x.tenant_id = p_tenant AND x.environment = v_env AND x.kind = v_kind AND x.owner = v_owner
              AND x.name = it ->> 'name'
            FOR UPDATE;
        ELSE
          SELECT x.id, x.mac, x.xmin::text INTO v_cur_id, v_cur_mac, v_xmin FROM coffer.secrets x
            WHERE x.tenant_id = p_tenant AND x.environment = v_env AND x.kind = v_kind AND x.owner = v_owner
              AND x.name = it ->> 'name';
        END IF;
        IF NOT FOUND THEN
          v_cur_id := NULL;
          v_xmin := NULL;
        END IF;
        IF NOT coalesce(CASE WHEN it ->> 'left_mac' IS NOT NULL
            THEN v_left ->> v_cur_id::text = v_xmin AND v_cur_mac = it ->> 'left_mac'
            ELSE v_xmin IS NOT DISTINCT FROM it ->> 'xmin' END, false) THEN
          RAISE EXCEPTION 'stale' USING ERRCODE = 'CF003';
        END IF;
        IF it ->> 'pattern' IS NOT NULL THEN
          v_ok[ii + 1] := p_values[v_base + (it -> 'version' ->> 'value')::integer] ~ (it ->> 'pattern');
        END IF;
      END LOOP;
      IF NOT v_apply THEN
        RAISE EXCEPTION 'checked' USING ERRCODE = 'CF005';
      END IF;
      IF false = ANY (v_ok) THEN
        RAISE EXCEPTION 'format' USING ERRCODE = 'CF004';
      END IF;
      FOR ii IN 0 .. n - 1 LOOP
        it := v_items -> ii;
        r := jsonb_populate_record(NULL::coffer.secrets, it -> 'row');
        v_id := r.id;
        IF (it ->> 'purge')::boolean THEN
          DELETE FROM coffer.secrets x WHERE x.id = (it ->> 'purge_id')::uuid;
        END IF;
        IF it ->> 'op' = 'delete' THEN
          UPDATE coffer.secrets x
            SET deleted_at = now(), deleted_by = (c ->> 'identity')::uuid, updated_at = now(), mac = r.mac
            WHERE x.id = v_id
            RETURNING to_jsonb(x), x.xmin::text INTO v_cur, v_xmin;
          DELETE FROM coffer.rotation_schedule s WHERE s.secret_id = v_id;
        ELSE
          IF (it ->> 'create')::boolean THEN
            INSERT INTO coffer.secrets AS x (id, tenant_id, environment, kind, owner, name, current_version,
                description, tags, format, expires_at, created_by, updated_by, rotation_interval_days,
                rotation_grace_hours, generator, last_rotated_at, next_rotation_at, mac, class, strategy,
                owner_team, contact)
              VALUES (v_id, p_tenant, v_env, v_kind, v_owner, it ->> 'name', r.current_version, r.description,
                coalesce(r.tags, '[]'::jsonb), r.format, r.expires_at, r.created_by, r.updated_by,
                r.rotation_interval_days, r.rotation_grace_hours, r.generator, r.last_rotated_at,
                r.next_rotation_at, r.mac, r.class, r.strategy, r.owner_team, r.contact)
              ON CONFLICT ON CONSTRAINT secrets_path_key DO NOTHING
              RETURNING to_jsonb(x), x.xmin::text INTO v_cur, v_xmin;
            IF NOT FOUND THEN
              -- Created by another writer since it was found missing.
              RAISE EXCEPTION 'stale' USING ERRCODE = 'CF003';
            END IF;
          ELSE
            UPDATE coffer.secrets x
              SET current_version = r.current_version, description = r.description, tags = r.tags,
                format = r.format, expires_at = r.expires_at, updated_by = r.updated_by, updated_at = now(),
                rotation_interval_days = r.rotation_interval_days, rotation_grace_hours = r.rotation_grace_hours,
                generator = r.generator, last_rotated_at = r.last_rotated_at, next_rotation_at = r.next_rotation_at,
                mac = r.mac, class = r.class, strategy = r.strategy, owner_team = r.owner_team, contact = r.contact
              WHERE x.id = v_id
              RETURNING to_jsonb(x), x.xmin::text INTO v_cur, v_xmin;
          END IF;
          v := it -> 'version';
          v_value := p_values[v_base + (v ->> 'value')::integer];
          INSERT INTO coffer.secret_versions (tenant_id, secret_id, version, ciphertext, dek_version, created_by,
              fingerprint, mac, deployment_id)
            VALUES (p_tenant, v_id, (v ->> 'version')::integer,
              pgp_sym_encrypt((v ->> 'binding') || v_value, p_key, p_pgp_options),
              (v ->> 'dek_version')::integer, (v ->> 'created_by')::uuid, v ->> 'fingerprint', v ->> 'mac',
              (v ->> 'deployment_id')::uuid);
          IF (it ->> 'schedule')::boolean THEN
            IF r.next_rotation_at IS NULL THEN
              DELETE FROM coffer.rotation_schedule s WHERE s.secret_id = v_id;
            ELSE
              INSERT INTO coffer.rotation_schedule AS s (secret_id, tenant_id, due_at, automatic)
                VALUES (v_id, p_tenant, r.next_rotation_at, r.generator IS NOT NULL)
                ON CONFLICT (secret_id) DO UPDATE SET due_at = excluded.due_at, automatic = excluded.automatic;
            END IF;
          END IF;
        END IF;
        v_rows[ii + 1] := v_cur;
        v_xmins[ii + 1] := v_xmin;
      END LOOP;
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      v_outcome := 'ok';
    EXCEPTION
      WHEN SQLSTATE 'CF003' THEN
        v_outcome := 'stale';
      WHEN SQLSTATE 'CF004' THEN
        v_outcome := 'format';
      WHEN SQLSTATE 'CF005' THEN
        v_outcome := 'checked';
      WHEN SQLSTATE 'CF001' THEN
        v_outcome := 'key_retired';
      WHEN OTHERS THEN
        v_outcome := 'failed';
        v_code := SQLSTATE;
    END;
    IF v_outcome IN ('stale', 'format', 'checked') THEN
      -- Nothing of the call was applied: each row as it is now, what the call should be planned on instead.
      FOR ii IN 0 .. n - 1 LOOP
        SELECT to_jsonb(x), x.xmin::text INTO v_cur, v_xmin FROM coffer.secrets x
          WHERE x.tenant_id = p_tenant AND x.environment = v_env AND x.kind = v_kind AND x.owner = v_owner
            AND x.name = v_items -> ii ->> 'name';
        IF NOT FOUND THEN
          v_cur := NULL;
          v_xmin := NULL;
        END IF;
        v_rows[ii + 1] := v_cur;
        v_xmins[ii + 1] := v_xmin;
      END LOOP;
    ELSIF v_outcome = 'ok' THEN
      v_events := v_events || (c -> 'events');
      v_notices := v_notices || (c -> 'notices');
      FOR ii IN 0 .. n - 1 LOOP
        v_left := v_left || jsonb_build_object(v_rows[ii + 1] ->> 'id', v_xmins[ii + 1]);
      END LOOP;
    END IF;

    outcome := v_outcome;
    IF v_outcome IN ('key_retired', 'failed') THEN
      error_code := v_code;
      RETURN NEXT;
      CONTINUE;
    END IF;
    FOR ii IN 0 .. n - 1 LOOP
      item_index := ii;
      secret := v_rows[ii + 1];
      row_xmin := v_xmins[ii + 1];
      pattern_ok := v_ok[ii + 1];
      RETURN NEXT;
    END LOOP;
  END LOOP;

  IF jsonb_array_length(v_notices) > 0 THEN
    INSERT INTO coffer.webhook_deliveries (id, tenant_id, webhook_id, event, payload, status, next_attempt_at)
      SELECT gen_random_uuid(), w.tenant_id, w.id, e.event, e.payload, 'pending', now()
      FROM jsonb_to_recordset(v_notices) AS e(event text, payload jsonb)
      JOIN coffer.webhooks w ON w.events ? e.event
      WHERE w.tenant_id = p_tenant AND NOT w.disabled;
  END IF;
  IF jsonb_array_length(v_events) > 0 THEN
    PERFORM coffer.audit_stage(p_tenant, v_events, p_link_key_id, p_link_key);
  END IF;
END
$$;
