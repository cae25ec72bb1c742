import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { dataKeyContext, type MasterKeyring, newDataKey } from '../../apps/api/src/crypto/keyring.ts';
import { RowMacs } from '../../apps/api/src/crypto/row-macs.ts';
import { PGP_OPTIONS } from '../../apps/api/src/secrets/secrets.queries.ts';

/**
 * Bulk data for the benchmark, written straight into PostgreSQL as the owner: the same rows, ciphertexts and row
 * MACs the API would write (plaintexts bound to their tenant, secret, version and path, under the tenant's data
 * key; MACs under the master keyring), made by generate_series instead of requests.
 */

/** The binding line of secrets.queries.ts's bindingLine, in SQL, for rows `s` of coffer.secrets and version `v`. */
const BINDING_SQL = `'coffer:v2:' || s.tenant_id || ':' || s.id || ':' || v || ':' || s.kind || '/' || s.owner || '/' || s.name || E'\\n'`;

/**
 * MACs the secrets (and their versions) of one tenant that `where` selects, as the API's writes would: the database
 * cannot make them. Two statements however many rows; the caller's transaction and tenant scope.
 */
async function macRows(c: pg.Client, macs: RowMacs, tenantId: string, where: string, params: unknown[]) {
  const { rows } = await c.query<{ id: string; kind: string; owner: string; name: string; current_version: number }>(
    `select s.id, s.kind, s.owner, s.name, s.current_version from coffer.secrets s where s.tenant_id = $1 and ${where}`,
    [tenantId, ...params],
  );
  const secretMacs = rows.map((r) =>
    macs.secret({
      tenantId,
      id: r.id,
      environment: 'default',
      kind: r.kind,
      owner: r.owner,
      name: r.name,
      currentVersion: r.current_version,
      expiresAt: null,
      deleted: false,
      class: null,
      strategy: null,
      ownerTeam: null,
      contact: null,
    }),
  );
  await c.query(
    'update coffer.secrets s set mac = m.mac from unnest($1::uuid[], $2::text[]) m(id, mac) where s.id = m.id',
    [rows.map((r) => r.id), secretMacs],
  );
  const versions = rows.flatMap((r) =>
    Array.from({ length: r.current_version }, (_, i) => ({ secretId: r.id, version: i + 1 })),
  );
  await c.query(
    `update coffer.secret_versions v set mac = m.mac from unnest($1::uuid[], $2::int[], $3::text[]) m(id, version, mac)
     where v.secret_id = m.id and v.version = m.version`,
    [
      versions.map((v) => v.secretId),
      versions.map((v) => v.version),
      versions.map((v) => macs.version({ tenantId, ...v, servedUntil: null, revokedAt: null, deploymentId: null })),
    ],
  );
}

async function tenantDek(
  c: pg.Client,
  keyring: MasterKeyring,
  tenantId: string,
): Promise<{ hex: string; version: number }> {
  await c.query(`select set_config('app.tenant_id', $1, false)`, [tenantId]);
  const { rows } = await c.query<{ version: number; wrapped_key: Buffer; master_key_id: string }>(
    `select version, wrapped_key, master_key_id from coffer.tenant_keys where tenant_id = $1 and state = 'active'`,
    [tenantId],
  );
  const r = rows[0];
  if (!r) throw new Error(`tenant ${tenantId} has no active key`);
  const key = keyring.unwrap(
    { wrapped: r.wrapped_key, masterKeyId: r.master_key_id },
    dataKeyContext(tenantId, r.version),
  );
  return { hex: key.toString('hex'), version: r.version };
}

/** `secrets` secrets under kind/owner, each with `versions` versions, in one transaction. */
export async function seedVersions(
  url: string,
  keyring: MasterKeyring,
  tenantId: string,
  o: { kind: string; owner: string; secrets: number; versions: number; prefix?: string },
): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const dek = await tenantDek(c, keyring, tenantId);
    const macs = new RowMacs(keyring);
    await c.query('begin');
    await c.query(`select set_config('app.tenant_id', $1, true)`, [tenantId]);
    await c.query(
      `insert into coffer.secrets (id, tenant_id, kind, owner, name, current_version)
       select gen_random_uuid(), $1, $2, $3, $4 || g, $5 from generate_series(1, $6) g`,
      [tenantId, o.kind, o.owner, o.prefix ?? 'BULK_', o.versions, o.secrets],
    );
    await c.query(
      `insert into coffer.secret_versions (tenant_id, secret_id, version, ciphertext, dek_version)
       select $1::uuid, s.id, v,
         pgp_sym_encrypt(${BINDING_SQL} || 'value-' || s.name || '-' || v, $2, $3), $4
       from coffer.secrets s, generate_series(1, $5) v
       where s.tenant_id = $1::uuid and s.kind = $6 and s.owner = $7`,
      [tenantId, dek.hex, PGP_OPTIONS, dek.version, o.versions, o.kind, o.owner],
    );
    await macRows(c, macs, tenantId, 's.kind = $2 and s.owner = $3 and s.mac is null', [o.kind, o.owner]);
    await c.query('commit');
  } finally {
    await c.end();
  }
}

/**
 * `tenants` tenants (each with its own wrapped data key), each with `secrets` secrets of `versions` versions:
 * the haystack of the scale pass. Committed in chunks so progress is steady and memory flat.
 */
export async function seedTenants(
  url: string,
  keyring: MasterKeyring,
  o: { tenants: number; secrets: number; versions: number; onProgress?: (done: number) => void },
): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  const macs = new RowMacs(keyring);
  await c.connect();
  try {
    for (let done = 0; done < o.tenants; ) {
      const chunk = Math.min(50, o.tenants - done);
      await c.query('begin');
      for (let i = 0; i < chunk; i++) {
        const id = randomUUID();
        const dek = newDataKey();
        const wrapped = keyring.wrap(dek, dataKeyContext(id, 1));
        await c.query(`select set_config('app.tenant_id', $1, true)`, [id]);
        await c.query(`insert into coffer.tenants (id, slug, name) values ($1, $2, 'scale')`, [
          id,
          `scale-${id.slice(0, 18)}`,
        ]);
        await c.query(`insert into coffer.environments (tenant_id, slug, name) values ($1, 'default', 'Default')`, [
          id,
        ]);
        await c.query(
          `insert into coffer.tenant_keys (tenant_id, version, wrapped_key, master_key_id, state) values ($1, 1, $2, $3, 'active')`,
          [id, wrapped.wrapped, wrapped.masterKeyId],
        );
        await c.query(
          `insert into coffer.secrets (id, tenant_id, kind, owner, name, current_version)
           select gen_random_uuid(), $1, 'sandbox', 'scale', 'S_' || g, $2 from generate_series(1, $3) g`,
          [id, o.versions, o.secrets],
        );
        await c.query(
          `insert into coffer.secret_versions (tenant_id, secret_id, version, ciphertext, dek_version)
           select $1::uuid, s.id, v, pgp_sym_encrypt(${BINDING_SQL} || 'x', $2, $3), 1
           from coffer.secrets s, generate_series(1, $4) v where s.tenant_id = $1::uuid`,
          [id, dek.toString('hex'), PGP_OPTIONS, o.versions],
        );
        await macRows(c, macs, id, 'true', []);
        dek.fill(0);
      }
      await c.query('commit');
      done += chunk;
      o.onProgress?.(done);
    }
    await c.query('analyze coffer.secrets, coffer.secret_versions, coffer.tenants, coffer.tenant_keys');
  } finally {
    await c.end();
  }
}

/** Versions still sealed by data keys other than the active one (re-encryption progress). */
export async function staleVersions(url: string, tenantId: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`select set_config('app.tenant_id', $1, false)`, [tenantId]);
    const { rows } = await c.query<{ n: string }>(
      `select count(*) as n from coffer.secret_versions v
       where v.tenant_id = $1 and v.dek_version <> (select version from coffer.tenant_keys where tenant_id = $1 and state = 'active')`,
      [tenantId],
    );
    return Number(rows[0]?.n ?? 0);
  } finally {
    await c.end();
  }
}

/**
 * `count` audit events for one tenant, chained by coffer.audit_append exactly as the API appends them (so verify
 * checks every link), in batches of 5 000. A mix the audit queries can filter on: a few actors, reads, writes,
 * logins and deletes over a hundred owners, one event in twenty denied, spread over the last 30 days in order.
 */
export async function seedAuditEvents(
  ownerUrl: string,
  o: {
    tenantId: string;
    keyring: MasterKeyring;
    count: number;
    actors: { id: string; name: string }[];
    onProgress?: (n: number) => void;
  },
): Promise<void> {
  const { linkKeys, toAppendRow } = await import('../../apps/api/src/audit/audit.digest.ts');
  const k = linkKeys(o.keyring)(o.tenantId);
  const c = new pg.Client({ connectionString: ownerUrl });
  await c.connect();
  try {
    const actions = ['secrets.read', 'secrets.read', 'secrets.read', 'secrets.write', 'auth.token', 'secrets.delete'];
    const start = Date.now() - 30 * 86_400_000;
    const step = (30 * 86_400_000) / o.count;
    for (let done = 0; done < o.count; ) {
      const n = Math.min(5_000, o.count - done);
      const rows = Array.from({ length: n }, (_, k) => {
        const i = done + k;
        const actor = o.actors[i % o.actors.length] as { id: string; name: string };
        const action = actions[i % actions.length] as string;
        return toAppendRow({
          tenantId: o.tenantId,
          occurredAt: new Date(start + i * step),
          actorId: actor.id,
          actorName: actor.name,
          action,
          resource: action === 'auth.token' ? `identity/${actor.id}` : `sandbox/app-${i % 100}/KEY_${i % 50}`,
          version: action === 'auth.token' ? null : (i % 7) + 1,
          outcome: i % 20 === 0 ? 'denied' : 'allowed',
          errorCode: i % 20 === 0 ? 'forbidden' : null,
          requestId: randomUUID(),
          sourceIp: '10.0.0.1',
          userAgent: 'coffer-bench',
          fingerprint: null,
          details: null,
        });
      });
      await c.query('select coffer.audit_append($1::uuid, $2::jsonb, $3, $4)', [
        o.tenantId,
        JSON.stringify(rows),
        k.id,
        k.key,
      ]);
      done += n;
      o.onProgress?.(done);
    }
  } finally {
    await c.end();
  }
}
