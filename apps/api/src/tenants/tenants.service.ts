import {
  type AuditRetention,
  type CreateTenantRequest,
  type CreateTenantResponse,
  PLATFORM_TENANT_ID,
  type Tenant,
  type TenantPage,
  type UpdateTenantRequest,
} from '@coffer/contracts';
import type { LinkKeys } from '../audit/audit.digest.ts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { hashClientSecret } from '../crypto/client-secret-hash.ts';
import { newClientId, newClientSecret, newId } from '../crypto/ids.ts';
import { dataKeyContext, fingerprintKeyContext, type MasterKeyring, newDataKey } from '../crypto/keyring.ts';
import type { Database } from '../db/database.ts';
import { pgConstraint, pgErrorCode } from '../db/pg-errors.ts';
import { conflict, notFound } from '../errors/app-error.ts';
import { decodeIdCursor, pageOf } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { IdentityQueries } from '../identities/identities.queries.ts';
import type { TenantQueries, TenantRow } from './tenants.queries.ts';

export interface TenantServiceDeps {
  db: Pick<Database, 'withTenant' | 'rescope'>;
  tenants: TenantQueries;
  identities: Pick<IdentityQueries, 'insert'>;
  keyring: Pick<MasterKeyring, 'wrap'>;
  audit: AuditSink;
  /** For the retention change, whose event the database function appends itself. */
  linkKey: LinkKeys;
}

export function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    rateLimitPerSecond: row.rateLimitPerSecond,
    createdAt: row.createdAt.toISOString(),
  };
}

/** Tenants are created and listed by the platform admin, who never sees inside one. */
export function tenantService(deps: TenantServiceDeps) {
  const { db, tenants, identities, keyring, audit } = deps;

  return {
    /** The tenant, its first data key (wrapped by the active master key) and its first admin, in one transaction. */
    async create(ctx: RequestContext, input: CreateTenantRequest): Promise<CreateTenantResponse> {
      const tenantId = newId();
      const adminId = newId();
      const clientId = newClientId();
      const clientSecret = newClientSecret();
      const secretHash = await hashClientSecret(clientSecret);
      const dek = newDataKey();
      const wrapped = keyring.wrap(dek, dataKeyContext(tenantId, 1));
      dek.fill(0);
      const fpKey = newDataKey();
      const fingerprint = keyring.wrap(fpKey, fingerprintKeyContext(tenantId));
      fpKey.fill(0);
      try {
        const row = await db.withTenant(PLATFORM_TENANT_ID, async (tx) => {
          const tenant = await tenants.insert(
            {
              id: tenantId,
              slug: input.slug,
              name: input.name,
              rateLimitPerSecond: input.rateLimitPerSecond ?? null,
              fingerprintKeyWrapped: fingerprint.wrapped,
              fingerprintKeyMasterId: fingerprint.masterKeyId,
            },
            tx,
          );
          await db.rescope(tx, tenantId);
          await tenants.insertDefaultEnvironment(tenantId, tx);
          await tenants.insertKey(
            tenantId,
            { version: 1, wrappedKey: wrapped.wrapped, masterKeyId: wrapped.masterKeyId, state: 'active' },
            tx,
          );
          await identities.insert(tenantId, { id: adminId, clientId, name: 'admin', role: 'admin', secretHash }, tx);
          await audit.appendInTx(tx, [
            auditEvent(ctx, {
              action: 'tenants.create',
              outcome: 'allowed',
              resource: `tenants/${tenantId}`,
              details: { slug: input.slug },
            }),
            // The new tenant's own chain starts with the identity the platform made for it.
            auditEvent(ctx, {
              tenantId,
              action: 'identities.create',
              outcome: 'allowed',
              resource: `identities/${adminId}`,
              details: { role: 'admin', name: 'admin' },
            }),
          ]);
          return tenant;
        });
        return { tenant: toTenant(row), admin: { clientId, clientSecret } };
      } catch (err) {
        if (pgErrorCode(err) === '23505' && pgConstraint(err) === 'tenants_slug_key') {
          throw conflict(`a tenant with slug "${input.slug}" already exists`);
        }
        throw err;
      }
    },

    async get(ctx: RequestContext, id: string): Promise<Tenant> {
      const row = await tenants.findById(id);
      if (!row) throw notFound('tenant');
      await audit.record(auditEvent(ctx, { action: 'tenants.read', outcome: 'allowed', resource: `tenants/${id}` }));
      return toTenant(row);
    },

    async update(ctx: RequestContext, id: string, patch: UpdateTenantRequest): Promise<Tenant> {
      const row = await db.withTenant(PLATFORM_TENANT_ID, async (tx) => {
        const updated = await tenants.update(
          id,
          {
            ...(patch.name !== undefined ? { name: patch.name } : {}),
            ...(patch.rateLimitPerSecond !== undefined ? { rateLimitPerSecond: patch.rateLimitPerSecond } : {}),
          },
          tx,
        );
        if (!updated) throw notFound('tenant');
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'tenants.update',
            outcome: 'allowed',
            resource: `tenants/${id}`,
            details: { fields: Object.keys(patch).sort().join(',') },
          }),
        ]);
        return updated;
      });
      return toTenant(row);
    },

    /**
     * Retention decides when audit events are dropped, so it is out of the app role's reach: the database function
     * holds the bounds and records the change in the platform's chain, with the change, in one transaction.
     */
    async setAuditRetention(ctx: RequestContext, id: string, days: number): Promise<AuditRetention> {
      if (!(await tenants.findById(id))) throw notFound('tenant');
      const event = auditEvent(ctx, {
        tenantId: PLATFORM_TENANT_ID,
        action: 'tenants.audit_retention',
        outcome: 'allowed',
        resource: `tenants/${id}`,
        details: { days },
      });
      const previousDays = await db.withTenant(id, (tx) =>
        tenants.setAuditRetention(id, days, [event], deps.linkKey(PLATFORM_TENANT_ID), tx),
      );
      return { tenantId: id, days, previousDays };
    },

    async list(ctx: RequestContext, q: { limit: number; cursor?: string | undefined }): Promise<TenantPage> {
      const rows = await tenants.page(decodeIdCursor(q.cursor), q.limit + 1);
      const { items, nextCursor } = pageOf(rows, q.limit);
      await audit.record(auditEvent(ctx, { action: 'tenants.list', outcome: 'allowed', resource: 'tenants' }));
      return { items: items.map(toTenant), nextCursor };
    },
  };
}

export type TenantService = ReturnType<typeof tenantService>;
