import type { InventoryPage, SecretClass, SecretKind } from '@coffer/contracts';
import { and, asc, eq, gt, isNull, or } from 'drizzle-orm';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import type { Database } from '../db/database.ts';
import { secrets } from '../db/schema.ts';
import type { CursorCodec } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import { pathOf } from '../secrets/secret-writes.ts';
import type { SecretRow } from '../secrets/secrets.queries.ts';

export interface InventoryFilter {
  env?: string | undefined;
  kind?: SecretKind | undefined;
  owner?: string | undefined;
  team?: string | undefined;
  class?: SecretClass | undefined;
}

/** Live secrets' metadata in (environment, kind, owner, name) order after the given key. Never a value. */
export function inventoryQueries(db: Database) {
  return {
    page(
      tenantId: string,
      f: InventoryFilter,
      after: { e: string; k: string; o: string; n: string } | undefined,
      limit: number,
    ): Promise<SecretRow[]> {
      return db.inTenant(tenantId, undefined, (t) =>
        t
          .select()
          .from(secrets)
          .where(
            and(
              eq(secrets.tenantId, tenantId),
              isNull(secrets.deletedAt),
              f.env !== undefined ? eq(secrets.environment, f.env) : undefined,
              f.kind !== undefined ? eq(secrets.kind, f.kind) : undefined,
              f.owner !== undefined ? eq(secrets.owner, f.owner) : undefined,
              f.team !== undefined ? eq(secrets.ownerTeam, f.team) : undefined,
              f.class !== undefined ? eq(secrets.class, f.class) : undefined,
              after
                ? or(
                    gt(secrets.environment, after.e),
                    and(eq(secrets.environment, after.e), gt(secrets.kind, after.k as SecretKind)),
                    and(
                      eq(secrets.environment, after.e),
                      eq(secrets.kind, after.k as SecretKind),
                      gt(secrets.owner, after.o),
                    ),
                    and(
                      eq(secrets.environment, after.e),
                      eq(secrets.kind, after.k as SecretKind),
                      eq(secrets.owner, after.o),
                      gt(secrets.name, after.n),
                    ),
                  )
                : undefined,
            ),
          )
          .orderBy(asc(secrets.environment), asc(secrets.kind), asc(secrets.owner), asc(secrets.name))
          .limit(limit),
      );
    },
  };
}

export type InventoryQueries = ReturnType<typeof inventoryQueries>;

export interface InventoryServiceDeps {
  queries: InventoryQueries;
  audit: Pick<AuditSink, 'record'>;
  cursors: CursorCodec;
}

/**
 * The inventory the rotation checklist starts from: every secret in every environment with its class, owning team,
 * contact and rotation cadence. Admins and auditors only (authorize.ts), who see every secret's metadata anyway.
 */
export function inventoryService(deps: InventoryServiceDeps) {
  return {
    async list(
      ctx: RequestContext,
      q: InventoryFilter & { limit: number; cursor?: string | undefined },
    ): Promise<InventoryPage> {
      const p = principalOf(ctx);
      const scope = {
        route: 'inventory.read',
        tenantId: p.tenantId,
        identityId: p.identityId,
        filters: { env: q.env, kind: q.kind, owner: q.owner, team: q.team, class: q.class },
      };
      const cursor = deps.cursors.open(scope, q.cursor, ['e', 'k', 'o', 'n'] as const);
      const rows = await deps.queries.page(p.tenantId, q, cursor, q.limit + 1);
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      const now = Date.now();
      await deps.audit.record(
        auditEvent(ctx, {
          action: 'inventory.read',
          outcome: 'allowed',
          resource: 'inventory',
          ...(q.env ? { environment: q.env } : {}),
          details: { count: page.length },
        }),
      );
      return {
        items: page.map((r) => ({
          environment: r.environment,
          path: pathOf(r),
          kind: r.kind,
          owner: r.owner,
          name: r.name,
          class: r.class,
          ownerTeam: r.ownerTeam,
          contact: r.contact,
          version: r.currentVersion,
          rotationIntervalDays: r.rotationIntervalDays,
          automatic: r.rotationIntervalDays !== null && r.generator !== null,
          lastRotatedAt: r.lastRotatedAt?.toISOString() ?? null,
          nextRotationAt: r.nextRotationAt?.toISOString() ?? null,
          overdue: r.nextRotationAt !== null && r.nextRotationAt.getTime() <= now,
          updatedAt: r.updatedAt.toISOString(),
          expiresAt: r.expiresAt?.toISOString() ?? null,
        })),
        nextCursor:
          rows.length > q.limit && last
            ? deps.cursors.seal(scope, { e: last.environment, k: last.kind, o: last.owner, n: last.name })
            : null,
      };
    },
  };
}

export type InventoryService = ReturnType<typeof inventoryService>;
