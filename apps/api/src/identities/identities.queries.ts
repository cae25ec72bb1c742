import type { Policy, PrincipalRole } from '@coffer/contracts';
import { and, asc, eq, gt, isNull, ne, sql } from 'drizzle-orm';
import type { IdentityMacFields, RowMacs } from '../crypto/row-macs.ts';
import type { Database, Tx } from '../db/database.ts';
import { identities, sessions } from '../db/schema.ts';

export type IdentityRow = typeof identities.$inferSelect;
export type FederationBinding = IdentityRow['federation'][number];

export interface TokenIdentity {
  id: string;
  clientId: string;
  name: string;
  role: PrincipalRole;
  policies: Policy[];
  credentialVersion: number;
  disabled: boolean;
  rateLimitPerSecond: number | null;
  /** Bumped on every change of the identity; hot reads check it in the database. */
  revision: number;
  /**
   * Whether the row's MAC matches its role, policies, federation bindings, credentials and revision (false:
   * coffer_app edited it).
   */
  intact: boolean;
}

export interface LoginIdentity {
  id: string;
  tenantId: string;
  clientId: string;
  name: string;
  role: PrincipalRole;
  secretHash: string;
  credentialVersion: number;
  tokenTtlSeconds: number | null;
  disabled: boolean;
  /** What a federated login matches and what its token's claim templates need: read with, and checked by, the MAC. */
  policies: Policy[];
  federation: FederationBinding[];
  /** As TokenIdentity.intact. */
  intact: boolean;
}

/** The columns of an identity row that its MAC covers. */
export const identityMacFields = (r: IdentityRow): IdentityMacFields => ({
  tenantId: r.tenantId,
  id: r.id,
  clientId: r.clientId,
  role: r.role,
  policies: r.policies,
  federation: r.federation,
  secretHash: r.secretHash,
  credentialVersion: r.credentialVersion,
  disabled: r.disabled,
  revision: r.revision,
});

/**
 * Stores the MAC of an identity row as written. The revision trigger bumps the revision on this UPDATE as well, so
 * the MAC covers the revision the row will have; `revision = R` makes sure no other write came in between.
 */
export async function sealIdentity(t: Tx, macs: RowMacs, row: IdentityRow): Promise<IdentityRow> {
  const next = { ...row, revision: row.revision + 1 };
  const mac = macs.identity(identityMacFields(next));
  const sealedRows = await t
    .update(identities)
    .set({ mac })
    .where(and(eq(identities.id, row.id), eq(identities.revision, row.revision)))
    .returning({ revision: identities.revision });
  if (sealedRows[0]?.revision !== next.revision) throw new Error(`identity ${row.id} changed while it was sealed`);
  return { ...next, mac };
}

/** Data access for identities. Every function takes the tenant first and an optional transaction last. */
export function identityQueries(db: Database, macs: RowMacs) {
  return {
    /** The identity a token names, read in one round trip (sets the tenant scope and reads in one statement). */
    async forToken(tenantId: string, id: string): Promise<TokenIdentity | undefined> {
      const { rows } = await db.pool.query<{
        id: string;
        client_id: string;
        name: string;
        role: PrincipalRole;
        policies: Policy[];
        credential_version: number;
        disabled: boolean;
        rate_limit_per_second: number | null;
        revision: number;
        tenant_id: string;
        secret_hash: string;
        federation: unknown;
        mac: string | null;
      }>('select * from coffer.identity_for_token($1, $2)', [tenantId, id]);
      const r = rows[0];
      return r
        ? {
            intact: macs.identityVerifies(r.mac, {
              tenantId: r.tenant_id,
              id: r.id,
              clientId: r.client_id,
              role: r.role,
              policies: r.policies,
              federation: r.federation,
              secretHash: r.secret_hash,
              credentialVersion: r.credential_version,
              disabled: r.disabled,
              revision: r.revision,
            }),
            id: r.id,
            clientId: r.client_id,
            name: r.name,
            role: r.role,
            policies: r.policies,
            credentialVersion: r.credential_version,
            disabled: r.disabled,
            rateLimitPerSecond: r.rate_limit_per_second,
            revision: r.revision,
          }
        : undefined;
    },

    /** Login knows only the client id; the database lets exactly that one row through. */
    async forLogin(clientId: string): Promise<LoginIdentity | undefined> {
      const { rows } = await db.pool.query<{
        id: string;
        tenant_id: string;
        client_id: string;
        name: string;
        role: PrincipalRole;
        secret_hash: string;
        credential_version: number;
        token_ttl_seconds: number | null;
        disabled: boolean;
        policies: Policy[];
        federation: FederationBinding[];
        revision: number;
        mac: string | null;
      }>('select * from coffer.identity_for_login($1)', [clientId]);
      const r = rows[0];
      return r
        ? {
            intact: macs.identityVerifies(r.mac, {
              tenantId: r.tenant_id,
              id: r.id,
              clientId: r.client_id,
              role: r.role,
              policies: r.policies,
              federation: r.federation,
              secretHash: r.secret_hash,
              credentialVersion: r.credential_version,
              disabled: r.disabled,
              revision: r.revision,
            }),
            id: r.id,
            tenantId: r.tenant_id,
            clientId: r.client_id,
            name: r.name,
            role: r.role,
            secretHash: r.secret_hash,
            credentialVersion: r.credential_version,
            tokenTtlSeconds: r.token_ttl_seconds,
            disabled: r.disabled,
            policies: r.policies,
            federation: r.federation,
          }
        : undefined;
    },

    insert(tenantId: string, row: Omit<typeof identities.$inferInsert, 'tenantId'>, tx?: Tx): Promise<IdentityRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [created] = await t
          .insert(identities)
          .values({ ...row, tenantId })
          .returning();
        return sealIdentity(t, macs, created as IdentityRow);
      });
    },

    findById(tenantId: string, id: string, tx?: Tx): Promise<IdentityRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t.select().from(identities).where(eq(identities.id, id));
        return row;
      });
    },

    /** Locks the row for the rest of the transaction (read-modify-write of one identity). */
    findByIdForUpdate(tenantId: string, id: string, tx: Tx): Promise<IdentityRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t.select().from(identities).where(eq(identities.id, id)).for('update');
        return row;
      });
    },

    page(tenantId: string, after: string | undefined, limit: number, tx?: Tx): Promise<IdentityRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(identities)
          .where(after ? gt(identities.id, after) : undefined)
          .orderBy(asc(identities.id))
          .limit(limit),
      );
    },

    update(
      tenantId: string,
      id: string,
      patch: Partial<
        Pick<IdentityRow, 'name' | 'policies' | 'federation' | 'disabled' | 'tokenTtlSeconds' | 'secretHash'>
      > & {
        bumpCredentials?: boolean;
        /** Invalidate every token issued so far (the client secret stays valid). */
        revokeTokens?: boolean;
      },
      tx?: Tx,
    ): Promise<IdentityRow | undefined> {
      const { bumpCredentials, revokeTokens, ...fields } = patch;
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(identities)
          .set({
            ...fields,
            updatedAt: sql`now()`,
            ...(bumpCredentials || revokeTokens ? { credentialVersion: sql`${identities.credentialVersion} + 1` } : {}),
            ...(bumpCredentials ? { secretRotatedAt: sql`now()` } : {}),
          })
          .where(eq(identities.id, id))
          .returning();
        // A new client secret, a disable or a change of how it may log in ends every session it had, with the
        // change: a session's refresh would refuse them anyway (its credential version moved), but the list
        // must say so now.
        if (row && (bumpCredentials || revokeTokens)) {
          await t
            .update(sessions)
            .set({ revokedAt: sql`now()`, revokedReason: 'identity_changed' })
            .where(and(eq(sessions.identityId, id), isNull(sessions.revokedAt)));
        }
        return row ? sealIdentity(t, macs, row) : undefined;
      });
    },

    delete(tenantId: string, id: string, tx?: Tx): Promise<boolean> {
      return db.inTenant(tenantId, tx, async (t) => {
        const rows = await t.delete(identities).where(eq(identities.id, id)).returning({ id: identities.id });
        return rows.length > 0;
      });
    },

    /** Enabled admins other than `exceptId`: a tenant must keep one, or nobody could manage it. */
    countOtherEnabledAdmins(
      tenantId: string,
      exceptId: string,
      tx?: Tx,
      role: PrincipalRole = 'admin',
    ): Promise<number> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .select({ n: sql<number>`count(*)::int` })
          .from(identities)
          .where(and(eq(identities.role, role), eq(identities.disabled, false), ne(identities.id, exceptId)));
        return row?.n ?? 0;
      });
    },
  };
}

export type IdentityQueries = ReturnType<typeof identityQueries>;
