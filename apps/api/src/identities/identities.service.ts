import type {
  ClientCredentials,
  CreateIdentityRequest,
  CreateIdentityResponse,
  Identity,
  IdentityPage,
  UpdateIdentityRequest,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import { hashClientSecret } from '../crypto/client-secret-hash.ts';
import { newClientId, newClientSecret, newId } from '../crypto/ids.ts';
import type { Database, Tx } from '../db/database.ts';
import type { LeaseService } from '../dynamic/leases.service.ts';
import { AppError, conflict, notFound } from '../errors/app-error.ts';
import { decodeIdCursor, pageOf } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { TenantQueries } from '../tenants/tenants.queries.ts';
import type { TrustQueries } from '../trust/trust.queries.ts';
import type { IdentityQueries, IdentityRow } from './identities.queries.ts';

export interface IdentityServiceDeps {
  db: Pick<Database, 'withTenant'>;
  identities: IdentityQueries;
  tenants: Pick<TenantQueries, 'lock'>;
  audit: AuditSink;
  /** The tenant's trusted issuers, which federation bindings must name. */
  issuers: Pick<TrustQueries, 'list'>;
  /** Disabling or deleting an identity ends its dynamic-credential leases. */
  leases: Pick<LeaseService, 'revokeForIdentityInTx' | 'kick'>;
}

export function toIdentity(row: IdentityRow): Identity {
  return {
    id: row.id,
    tenantId: row.tenantId,
    clientId: row.clientId,
    name: row.name,
    role: row.role as Identity['role'],
    policies: row.policies as Identity['policies'],
    federation: row.federation as Identity['federation'],
    tokenTtlSeconds: row.tokenTtlSeconds,
    disabled: row.disabled,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    secretRotatedAt: row.secretRotatedAt.toISOString(),
  };
}

const resource = (id: string) => `identities/${id}`;

/** Machine identities of one tenant, managed by its admins. The tenant always comes from the caller's token. */
export function identityService(deps: IdentityServiceDeps) {
  const { db, identities, tenants, audit } = deps;

  /** Every binding must name an issuer the tenant trusts (by name or id): a typo must not silently bind nothing. */
  async function checkBindings(tenantId: string, bindings: Identity['federation'] | undefined, tx: Tx) {
    if (!bindings || bindings.length === 0) return;
    const known = new Set((await deps.issuers.list(tenantId, tx)).flatMap((i) => [i.name, i.id]));
    const unknown = bindings.map((b) => b.issuer).filter((i) => !known.has(i));
    if (unknown.length > 0) {
      throw new AppError('validation_failed', `no trusted issuer named ${[...new Set(unknown)].join(', ')}`, [
        { path: 'body.federation', message: 'each binding must name a trusted issuer (POST /v1/trust/issuers)' },
      ]);
    }
  }

  return {
    async create(ctx: RequestContext, input: CreateIdentityRequest): Promise<CreateIdentityResponse> {
      const tenantId = principalOf(ctx).tenantId;
      const clientSecret = newClientSecret();
      const secretHash = await hashClientSecret(clientSecret);
      const row = await db.withTenant(tenantId, async (tx) => {
        await checkBindings(tenantId, input.federation, tx);
        const created = await identities.insert(
          tenantId,
          {
            id: newId(),
            clientId: newClientId(),
            name: input.name,
            role: input.role,
            secretHash,
            policies: input.policies ?? [],
            federation: input.federation ?? [],
            tokenTtlSeconds: input.tokenTtlSeconds ?? null,
          },
          tx,
        );
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'identities.create',
            outcome: 'allowed',
            resource: resource(created.id),
            details: { role: created.role, name: created.name },
          }),
        ]);
        return created;
      });
      return { identity: toIdentity(row), clientSecret };
    },

    async list(ctx: RequestContext, q: { limit: number; cursor?: string | undefined }): Promise<IdentityPage> {
      const tenantId = principalOf(ctx).tenantId;
      const rows = await identities.page(tenantId, decodeIdCursor(q.cursor), q.limit + 1);
      const { items, nextCursor } = pageOf(rows, q.limit);
      await audit.record(auditEvent(ctx, { action: 'identities.list', outcome: 'allowed', resource: 'identities' }));
      return { items: items.map(toIdentity), nextCursor };
    },

    async get(ctx: RequestContext, id: string): Promise<Identity> {
      const tenantId = principalOf(ctx).tenantId;
      const row = await identities.findById(tenantId, id);
      if (!row) throw notFound('identity');
      await audit.record(auditEvent(ctx, { action: 'identities.read', outcome: 'allowed', resource: resource(id) }));
      return toIdentity(row);
    },

    async update(ctx: RequestContext, id: string, patch: UpdateIdentityRequest): Promise<Identity> {
      const tenantId = principalOf(ctx).tenantId;
      const row = await db.withTenant(tenantId, async (tx) => {
        await tenants.lock(tenantId, tx);
        const current = await identities.findByIdForUpdate(tenantId, id, tx);
        if (!current) throw notFound('identity');
        if (patch.policies !== undefined && patch.policies.length > 0 && current.role !== 'service') {
          throw new AppError('validation_failed', 'only service identities carry policies', [
            { path: 'body.policies', message: `identity has role ${current.role}` },
          ]);
        }
        await checkBindings(tenantId, patch.federation, tx);
        if (patch.disabled === true && current.role === 'admin' && !current.disabled) {
          await ensureAnotherAdmin(tenantId, id, tx);
        }
        const updated = await identities.update(
          tenantId,
          id,
          {
            ...(patch.name !== undefined ? { name: patch.name } : {}),
            ...(patch.policies !== undefined ? { policies: patch.policies } : {}),
            ...(patch.disabled !== undefined ? { disabled: patch.disabled } : {}),
            ...(patch.tokenTtlSeconds !== undefined ? { tokenTtlSeconds: patch.tokenTtlSeconds } : {}),
            ...(patch.federation !== undefined ? { federation: patch.federation } : {}),
            // Tokens issued before a disable stay dead after a re-enable: the identity logs in again. Changing how an
            // identity may log in ends the sessions the old bindings opened.
            ...((patch.disabled === true && !current.disabled) || patch.federation !== undefined
              ? { revokeTokens: true }
              : {}),
          },
          tx,
        );
        const ended =
          patch.disabled === true && !current.disabled
            ? await deps.leases.revokeForIdentityInTx(tenantId, id, 'identity_disabled', tx)
            : [];
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'identities.update',
            outcome: 'allowed',
            resource: resource(id),
            details: {
              fields: Object.keys(patch).sort().join(','),
              ...(ended.length > 0 ? { leasesRevoked: ended.length } : {}),
            },
          }),
        ]);
        return { updated: updated as IdentityRow, ended: ended.length };
      });
      if (row.ended > 0) deps.leases.kick();
      return toIdentity(row.updated);
    },

    async remove(ctx: RequestContext, id: string): Promise<void> {
      const tenantId = principalOf(ctx).tenantId;
      const ended = await db.withTenant(tenantId, async (tx) => {
        await tenants.lock(tenantId, tx);
        const current = await identities.findByIdForUpdate(tenantId, id, tx);
        if (!current) throw notFound('identity');
        if (current.role === 'admin' && !current.disabled) await ensureAnotherAdmin(tenantId, id, tx);
        const ended = await deps.leases.revokeForIdentityInTx(tenantId, id, 'identity_deleted', tx);
        await identities.delete(tenantId, id, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'identities.delete',
            outcome: 'allowed',
            resource: resource(id),
            ...(ended.length > 0 ? { details: { leasesRevoked: ended.length } } : {}),
          }),
        ]);
        return ended.length;
      });
      if (ended > 0) deps.leases.kick();
    },

    async rotateSecret(ctx: RequestContext, id: string): Promise<ClientCredentials> {
      const tenantId = principalOf(ctx).tenantId;
      const clientSecret = newClientSecret();
      const secretHash = await hashClientSecret(clientSecret);
      const row = await db.withTenant(tenantId, async (tx) => {
        const updated = await identities.update(tenantId, id, { secretHash, bumpCredentials: true }, tx);
        if (!updated) throw notFound('identity');
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'identities.rotate_secret', outcome: 'allowed', resource: resource(id) }),
        ]);
        return updated;
      });
      return { clientId: row.clientId, clientSecret };
    },
  };

  async function ensureAnotherAdmin(tenantId: string, exceptId: string, tx: Parameters<AuditSink['appendInTx']>[0]) {
    if ((await identities.countOtherEnabledAdmins(tenantId, exceptId, tx)) === 0) {
      throw conflict('this is the tenant’s last enabled admin: create or enable another admin first');
    }
  }
}

export type IdentityService = ReturnType<typeof identityService>;
