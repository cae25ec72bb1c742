import type { IntakeState, Policy, PrincipalRole } from '@coffer/contracts';
import { and, desc, eq, gt, lte, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';
import { identities, intakeLinks } from '../db/schema.ts';

export type IntakeRow = typeof intakeLinks.$inferSelect;
export type NewIntakeRow = Omit<typeof intakeLinks.$inferInsert, 'tenantId'>;

/** What a link needs to know of its creator to act for it. */
export interface CreatorRow {
  id: string;
  clientId: string;
  name: string;
  role: PrincipalRole;
  policies: Policy[];
  credentialVersion: number;
  disabled: boolean;
  revision: number;
}

interface SqlIntakeRow {
  id: string;
  tenant_id: string;
  token_hash: Buffer;
  environment: string;
  kind: IntakeRow['kind'];
  owner: string;
  name: string;
  format: unknown;
  label: string;
  help: string | null;
  expected_version: number;
  created_by: string;
  creator_credential_version: number;
  creator_claims: Record<string, string> | null;
  state: IntakeRow['state'];
  received_version: number | null;
  created_at: Date;
  expires_at: Date;
  closed_at: Date | null;
}

const fromSqlRow = (r: SqlIntakeRow): IntakeRow => ({
  id: r.id,
  tenantId: r.tenant_id,
  tokenHash: r.token_hash,
  environment: r.environment,
  kind: r.kind,
  owner: r.owner,
  name: r.name,
  format: r.format,
  label: r.label,
  help: r.help,
  expectedVersion: r.expected_version,
  createdBy: r.created_by,
  creatorCredentialVersion: r.creator_credential_version,
  creatorClaims: r.creator_claims,
  state: r.state,
  receivedVersion: r.received_version,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  closedAt: r.closed_at,
});

/** Data access for intake links. Every function takes the tenant first and an optional transaction last. */
export function intakeQueries(db: Database) {
  return {
    /**
     * The one link, of whichever tenant, whose token hashes to `tokenHash`: the only read without a tenant, through
     * coffer.intake_for_token (policy intake_lookup), for the public routes that know nothing but the token.
     */
    async byTokenHash(tokenHash: Buffer): Promise<IntakeRow | undefined> {
      const { rows } = await db.pool.query<SqlIntakeRow>('select * from coffer.intake_for_token($1)', [tokenHash]);
      return rows[0] ? fromSqlRow(rows[0]) : undefined;
    },

    insert(tenantId: string, row: NewIntakeRow, tx?: Tx): Promise<IntakeRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .insert(intakeLinks)
          .values({ ...row, tenantId })
          .returning();
        return r as IntakeRow;
      });
    },

    /** The link, locked for the rest of the transaction: its use, its refusal and its revocation are serialised. */
    lock(tenantId: string, id: string, tx: Tx): Promise<IntakeRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select()
          .from(intakeLinks)
          .where(and(eq(intakeLinks.tenantId, tenantId), eq(intakeLinks.id, id)))
          .for('update');
        return r;
      });
    },

    close(
      tenantId: string,
      id: string,
      state: Exclude<IntakeRow['state'], 'pending'>,
      receivedVersion: number | null,
      tx: Tx,
    ): Promise<IntakeRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .update(intakeLinks)
          .set({ state, receivedVersion, closedAt: sql`now()` })
          .where(and(eq(intakeLinks.tenantId, tenantId), eq(intakeLinks.id, id)))
          .returning();
        return r as IntakeRow;
      });
    },

    /** Newest first. `pending` and `expired` are both stored as pending, told apart by the expiry. */
    list(tenantId: string, o: { state?: IntakeState | undefined; limit: number }, tx?: Tx): Promise<IntakeRow[]> {
      const now = sql`now()`;
      const state =
        o.state === undefined
          ? undefined
          : o.state === 'pending'
            ? and(eq(intakeLinks.state, 'pending'), gt(intakeLinks.expiresAt, now))
            : o.state === 'expired'
              ? and(eq(intakeLinks.state, 'pending'), lte(intakeLinks.expiresAt, now))
              : eq(intakeLinks.state, o.state);
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(intakeLinks)
          .where(and(eq(intakeLinks.tenantId, tenantId), state))
          .orderBy(desc(intakeLinks.createdAt), desc(intakeLinks.id))
          .limit(o.limit),
      );
    },

    /** The identity a link acts for, as it is now (the link is refused once it may no longer act). */
    creator(tenantId: string, identityId: string, tx: Tx): Promise<CreatorRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [r] = await t
          .select({
            id: identities.id,
            clientId: identities.clientId,
            name: identities.name,
            role: identities.role,
            policies: identities.policies,
            credentialVersion: identities.credentialVersion,
            disabled: identities.disabled,
            revision: identities.revision,
          })
          .from(identities)
          .where(and(eq(identities.tenantId, tenantId), eq(identities.id, identityId)));
        return r as CreatorRow | undefined;
      });
    },
  };
}

export type IntakeQueries = ReturnType<typeof intakeQueries>;
