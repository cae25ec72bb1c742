import { randomUUID } from 'node:crypto';
import { PLATFORM_TENANT_ID } from '@coffer/contracts';
import { sql } from 'drizzle-orm';
import type { Database } from '../db/database.ts';

/**
 * Every replica refreshes its row in `coffer.replicas` every few seconds and counts the live ones. Per-identity
 * rate limits are counted in each replica's memory (no database work on the request path) and each replica lets
 * through its share, limit / replicas: behind an even load balancer an identity gets the limit across the fleet,
 * and an uneven one only makes it stricter, never looser.
 */
export class ReplicaRegistry {
  readonly id = randomUUID();
  private live = 1;

  constructor(
    private readonly db: Pick<Database, 'withTenant'>,
    private readonly o: { staleAfterMs: number },
  ) {}

  get count(): number {
    return this.live;
  }

  /** The share of a fleet-wide limit this replica enforces. */
  share(limit: number): number {
    return Math.max(1, Math.ceil(limit / this.live));
  }

  async beat(): Promise<number> {
    const stale = `${Math.ceil(this.o.staleAfterMs / 1000)} seconds`;
    this.live = await this.db.withTenant(PLATFORM_TENANT_ID, async (t) => {
      await t.execute(sql`
        insert into coffer.replicas (id, tenant_id, seen_at) values (${this.id}, ${PLATFORM_TENANT_ID}, now())
        on conflict (id) do update set seen_at = now()`);
      await t.execute(sql`delete from coffer.replicas where seen_at < now() - interval '10 minutes'`);
      const { rows } = await t.execute<{ n: number }>(
        sql`select count(*)::int as n from coffer.replicas where seen_at > now() - ${stale}::interval`,
      );
      return Math.max(1, rows[0]?.n ?? 1);
    });
    return this.live;
  }

  async leave(): Promise<void> {
    await this.db.withTenant(PLATFORM_TENANT_ID, (t) =>
      t.execute(sql`delete from coffer.replicas where id = ${this.id}`),
    );
  }
}
