import { and, asc, eq, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { environments, secrets } from '../db/schema.ts';

export type EnvironmentRow = typeof environments.$inferSelect;

/** A tenant's environments. Every function takes the tenant first and an optional transaction last. */
export function environmentQueries(db: Database) {
  return {
    list(tenantId: string, tx?: Tx): Promise<EnvironmentRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t.select().from(environments).where(eq(environments.tenantId, tenantId)).orderBy(asc(environments.slug)),
      );
    },

    /** The environment, share-locked for the rest of a transaction: it cannot be deleted under a write to it. */
    async get(tenantId: string, slug: string, tx?: Tx, lock = false): Promise<EnvironmentRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const q = t
          .select()
          .from(environments)
          .where(and(eq(environments.tenantId, tenantId), eq(environments.slug, slug)));
        const [row] = lock ? await q.for('key share') : await q;
        return row;
      });
    },

    /** Undefined when the slug is taken. */
    insert(
      tenantId: string,
      row: { slug: string; name: string; protected?: boolean | undefined },
      tx?: Tx,
    ): Promise<EnvironmentRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [created] = await t
          .insert(environments)
          .values({ tenantId, slug: row.slug, name: row.name, protected: row.protected ?? false })
          .onConflictDoNothing()
          .returning();
        return created;
      });
    },

    update(
      tenantId: string,
      slug: string,
      patch: { name?: string | undefined; protected?: boolean | undefined },
      tx?: Tx,
    ): Promise<EnvironmentRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(environments)
          .set({
            ...(patch.name !== undefined ? { name: patch.name } : {}),
            ...(patch.protected !== undefined ? { protected: patch.protected } : {}),
            updatedAt: sql`now()`,
          })
          .where(and(eq(environments.tenantId, tenantId), eq(environments.slug, slug)))
          .returning();
        return row;
      });
    },

    /** Secrets (soft-deleted ones included: they are restorable) that still live in the environment. */
    async secretCount(tenantId: string, slug: string, tx?: Tx): Promise<number> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .select({ n: sql<number>`count(*)::int` })
          .from(secrets)
          .where(and(eq(secrets.tenantId, tenantId), eq(secrets.environment, slug)));
        return row?.n ?? 0;
      });
    },

    /** Names of an owner's live secrets in one environment (no values). */
    async liveNames(tenantId: string, environment: string, kind: string, owner: string, tx: Tx): Promise<string[]> {
      return db.inTenant(tenantId, tx, async (t) => {
        const { rows } = await t.execute<{ name: string }>(
          sql`select name from coffer.bundle_names(${tenantId}, ${environment}, ${kind}, ${owner})`,
        );
        return rows.map((r) => r.name);
      });
    },

    remove(tenantId: string, slug: string, tx?: Tx): Promise<boolean> {
      return db.inTenant(tenantId, tx, async (t) => {
        const rows = await t
          .delete(environments)
          .where(and(eq(environments.tenantId, tenantId), eq(environments.slug, slug)))
          .returning({ slug: environments.slug });
        return rows.length > 0;
      });
    },
  };
}

export type EnvironmentQueries = ReturnType<typeof environmentQueries>;

/** One live secret of an owner in one of the environments compared or promoted, with its current version. */
export interface CurrentRow {
  environment: string;
  id: string;
  name: string;
  current_version: number;
  format: unknown;
  description: string | null;
  tags: string[];
  rotation_interval_days: number | null;
  rotation_grace_hours: number | null;
  generator: unknown;
  fingerprint: string | null;
  expires_at: Date | null;
  served_until: Date | null;
  /** The API's MACs of the secret row and of its current version (row-macs.ts), for the caller to check. */
  secret_mac: string | null;
  version_mac: string | null;
  /** The other columns those MACs cover. */
  class: 'infrastructure' | 'service' | 'user' | null;
  strategy: Record<string, unknown> | null;
  owner_team: string | null;
  contact: string | null;
  revoked_at: Date | null;
  deployment_id: string | null;
  /** Only when asked for, or when the version predates stored fingerprints (then the caller computes one). */
  plaintext: string | null;
  key_missing: boolean;
}

/**
 * The live secrets (not deleted, not expired, current version not destroyed) of one owner in the given
 * environments. `decrypt`: every plaintext (promotion); otherwise only those of versions stored without a
 * fingerprint. `lock`: the rows are locked in (environment, name) order, the one order every multi-row writer uses,
 * so two promotions in opposite directions cannot deadlock.
 */
export async function currentRows(
  tx: Tx,
  o: {
    environments: string[];
    kind: string;
    owner: string;
    names: string[] | null;
    keys: (string | null)[];
    decrypt: boolean;
    lock: boolean;
  },
): Promise<CurrentRow[]> {
  const { rows } = await tx.execute<CurrentRow & Record<string, unknown>>(sql`
    select s.environment, s.id, s.name, s.current_version, s.format, s.description, s.tags,
      s.rotation_interval_days, s.rotation_grace_hours, s.generator, v.fingerprint, s.expires_at, v.served_until,
      s.mac as secret_mac, v.mac as version_mac,
      s.class, s.strategy, s.owner_team, s.contact, v.revoked_at, v.deployment_id,
      case when (${o.decrypt} or v.fingerprint is null) and (${sql.param(o.keys)}::text[])[v.dek_version] is not null
        then pgp_sym_decrypt(v.ciphertext, (${sql.param(o.keys)}::text[])[v.dek_version]) end as plaintext,
      (${sql.param(o.keys)}::text[])[v.dek_version] is null as key_missing
    from coffer.secrets s
    join coffer.secret_versions v on v.secret_id = s.id and v.version = s.current_version
    where s.environment = any(${sql.param(o.environments)}::text[]) and s.kind = ${o.kind} and s.owner = ${o.owner}
      and s.deleted_at is null and (s.expires_at is null or s.expires_at > now()) and v.ciphertext is not null
      and (${sql.param(o.names)}::text[] is null or s.name = any(${sql.param(o.names)}::text[]))
    order by s.environment, s.name
    ${o.lock ? sql`for update of s` : sql``}`);
  // drizzle hands raw statements' timestamps back as text: the MAC checks need the Dates the interface promises.
  const at = (x: unknown) => (x === null || x === undefined ? null : new Date(x as string | Date));
  return rows.map((r) => ({
    ...r,
    expires_at: at(r.expires_at),
    served_until: at(r.served_until),
    revoked_at: at(r.revoked_at),
  }));
}
