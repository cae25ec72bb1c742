import { DEFAULT_ENVIRONMENT } from '@coffer/contracts';
import { sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/database.ts';

/** One consumer of a secret: an identity, and the deployment it read for (if any), with its last read. */
export type ConsumerRow = {
  actor_id: string | null;
  actor_name: string | null;
  deployment: string | null;
  occurred_at: Date;
  version: number;
  source: 'secret' | 'bundle' | 'deployment';
  reads: string;
};

/** At most this many consumers are reported: identities × deployments of one secret. */
export const MAX_CONSUMERS = 1000;

/**
 * Who reads a secret, from the audit chain, which already holds every read: a secret's own reads (resource
 * `kind/owner/name`), bundle reads (resource `kind/owner`, whose `details.secrets` lists `NAME@version` of each
 * secret returned) and the versions generated for deployments (writes `via: deployment`, handed to the caller that
 * made the deployment). Each filter leads with the tenant and the resource, which the resource index serves.
 */
export function consumerQueries(db: Database) {
  return {
    async consumers(
      tenantId: string,
      p: { environment: string; kind: string; owner: string; name: string },
      since: Date,
      tx?: Tx,
    ): Promise<ConsumerRow[]> {
      const path = `${p.kind}/${p.owner}/${p.name}`;
      const bundle = `${p.kind}/${p.owner}`;
      const env =
        p.environment === DEFAULT_ENVIRONMENT
          ? sql`(e.details ->> 'environment') is null`
          : sql`(e.details ->> 'environment') = ${p.environment}::text`;
      return db.inTenant(tenantId, tx, async (t) => {
        const { rows } = await t.execute<ConsumerRow>(sql`
          with reads as (
            select e.seq, e.occurred_at, e.actor_id, e.actor_name, e.version, 'secret'::text as source,
              e.details ->> 'deployment' as deployment
            from coffer.audit_events e
            where e.tenant_id = ${tenantId} and e.resource = ${path} and e.action = 'secrets.read'
              and e.outcome = 'allowed' and e.occurred_at >= ${since} and ${env}
            union all
            select e.seq, e.occurred_at, e.actor_id, e.actor_name, split_part(x.item, '@', 2)::integer, 'bundle',
              e.details ->> 'deployment'
            from coffer.audit_events e
              cross join lateral regexp_split_to_table(e.details ->> 'secrets', ',') as x(item)
            where e.tenant_id = ${tenantId} and e.resource = ${bundle} and e.action = 'bundles.read'
              and e.outcome = 'allowed' and e.occurred_at >= ${since} and ${env}
              and coalesce(e.details ->> 'secrets', '') <> '' and split_part(x.item, '@', 1) = ${p.name}
            union all
            select e.seq, e.occurred_at, e.actor_id, e.actor_name, e.version, 'deployment',
              e.details ->> 'deployment'
            from coffer.audit_events e
            where e.tenant_id = ${tenantId} and e.resource = ${path} and e.action = 'secrets.write'
              and e.outcome = 'allowed' and e.details ->> 'via' = 'deployment'
              and e.occurred_at >= ${since} and ${env}
          )
          select distinct on (r.actor_id, r.deployment)
            r.actor_id, r.actor_name, r.deployment, r.occurred_at, r.version, r.source,
            count(*) over (partition by r.actor_id, r.deployment) as reads
          from reads r
          order by r.actor_id, r.deployment, r.seq desc
          limit ${MAX_CONSUMERS}`);
        return rows.map((r) => ({ ...r, occurred_at: new Date(r.occurred_at) }));
      });
    },
  };
}

export type ConsumerQueries = ReturnType<typeof consumerQueries>;
