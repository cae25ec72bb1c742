import {
  type ClientCredentials,
  type CreatePlatformAdminRequest,
  type CreatePlatformAdminResponse,
  PLATFORM_TENANT_ID,
  type PlatformAdmin,
  type PlatformAdminList,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { hashClientSecret } from '../crypto/client-secret-hash.ts';
import { newClientId, newClientSecret, newId } from '../crypto/ids.ts';
import type { Database } from '../db/database.ts';
import { conflict, notFound } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { IdentityQueries, IdentityRow } from './identities.queries.ts';

export interface PlatformAdminServiceDeps {
  db: Pick<Database, 'withTenant'>;
  identities: Pick<IdentityQueries, 'insert' | 'page' | 'findByIdForUpdate' | 'update' | 'countOtherEnabledAdmins'>;
  audit: AuditSink;
}

function toPlatformAdmin(row: IdentityRow): PlatformAdmin {
  return {
    id: row.id,
    clientId: row.clientId,
    name: row.name,
    disabled: row.disabled,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    secretRotatedAt: row.secretRotatedAt.toISOString(),
  };
}

const T = PLATFORM_TENANT_ID;
const resource = (id: string) => `identities/${id}`;

/**
 * The platform admins, managed by themselves: the bootstrap credential must not be the one key to the platform
 * for ever. A platform admin may add another, rotate any one's secret (its own included: the bootstrap secret
 * then stops working) and disable or enable one, but never disable the last enabled one (409), so the platform
 * cannot lock itself out through the API. They live in the platform tenant, which no tenant admin reaches.
 * Recovery when every secret is lost is break-glass, outside the API (docs/platform-admin.md).
 */
export function platformAdminService(deps: PlatformAdminServiceDeps) {
  const { db, identities, audit } = deps;

  async function lockedAdmin(id: string, tx: Parameters<AuditSink['appendInTx']>[0]): Promise<IdentityRow> {
    const row = await identities.findByIdForUpdate(T, id, tx);
    if (row?.role !== 'platform') throw notFound('platform admin');
    return row;
  }

  return {
    async create(ctx: RequestContext, input: CreatePlatformAdminRequest): Promise<CreatePlatformAdminResponse> {
      const clientSecret = newClientSecret();
      const secretHash = await hashClientSecret(clientSecret);
      const row = await db.withTenant(T, async (tx) => {
        const created = await identities.insert(
          T,
          { id: newId(), clientId: newClientId(), name: input.name, role: 'platform', secretHash },
          tx,
        );
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'platform.admins.create',
            outcome: 'allowed',
            resource: resource(created.id),
            details: { name: created.name },
          }),
        ]);
        return created;
      });
      return { admin: toPlatformAdmin(row), clientSecret };
    },

    async list(ctx: RequestContext): Promise<PlatformAdminList> {
      // The platform tenant holds platform admins only, and few: one page is all of them.
      const rows = (await identities.page(T, undefined, 1_000)).filter((r) => r.role === 'platform');
      await audit.record(
        auditEvent(ctx, { action: 'platform.admins.list', outcome: 'allowed', resource: 'identities' }),
      );
      return { items: rows.map(toPlatformAdmin) };
    },

    async setDisabled(ctx: RequestContext, id: string, disabled: boolean): Promise<PlatformAdmin> {
      const row = await db.withTenant(T, async (tx) => {
        const current = await lockedAdmin(id, tx);
        if (disabled && !current.disabled && (await identities.countOtherEnabledAdmins(T, id, tx, 'platform')) === 0) {
          throw conflict('this is the last enabled platform admin: create or enable another one first');
        }
        const updated = await identities.update(
          T,
          id,
          // Tokens issued before a disable stay dead after a re-enable.
          { disabled, ...(disabled && !current.disabled ? { revokeTokens: true } : {}) },
          tx,
        );
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'platform.admins.update',
            outcome: 'allowed',
            resource: resource(id),
            details: { disabled },
          }),
        ]);
        return updated as IdentityRow;
      });
      return toPlatformAdmin(row);
    },

    async rotateSecret(ctx: RequestContext, id: string): Promise<ClientCredentials> {
      const clientSecret = newClientSecret();
      const secretHash = await hashClientSecret(clientSecret);
      const row = await db.withTenant(T, async (tx) => {
        await lockedAdmin(id, tx);
        const updated = await identities.update(T, id, { secretHash, bumpCredentials: true }, tx);
        await audit.appendInTx(tx, [
          auditEvent(ctx, { action: 'platform.admins.rotate_secret', outcome: 'allowed', resource: resource(id) }),
        ]);
        return updated as IdentityRow;
      });
      return { clientId: row.clientId, clientSecret };
    },
  };
}

export type PlatformAdminService = ReturnType<typeof platformAdminService>;
