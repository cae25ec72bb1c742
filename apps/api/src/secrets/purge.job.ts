import type { Logger } from 'pino';
import { systemEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import type { Database } from '../db/database.ts';
import type { TenantQueries } from '../tenants/tenants.queries.ts';
import { recordChange } from './secret-changes.ts';
import { pathOf } from './secret-writes.ts';
import type { SecretQueries } from './secrets.queries.ts';

export interface PurgeJobDeps {
  db: Pick<Database, 'withTenant'>;
  secrets: Pick<SecretQueries, 'expiredDeletions' | 'purge'>;
  tenants: Pick<TenantQueries, 'page'>;
  audit: Pick<AuditSink, 'appendInTx'>;
  recoveryMs: number;
  log: Logger;
}

/**
 * Erases soft-deleted secrets whose recovery window has closed, tenant by tenant, in small transactions, each
 * purge with its audit event. Safe to run on every replica at once: rows are claimed with SKIP LOCKED.
 */
export function purgeJob(deps: PurgeJobDeps) {
  const batch = 100;

  async function purgeTenant(tenantId: string, cutoff: Date): Promise<number> {
    let total = 0;
    for (;;) {
      const purged = await deps.db.withTenant(tenantId, async (tx) => {
        const rows = await deps.secrets.expiredDeletions(tenantId, cutoff, batch, tx);
        const events: AuditEvent[] = [];
        for (const row of rows) {
          await deps.secrets.purge(tenantId, row.id, tx);
          events.push(
            systemEvent('system', {
              tenantId,
              action: 'secrets.purge',
              resource: pathOf(row),
              version: row.currentVersion,
              outcome: 'allowed',
              details: { reason: 'recovery_window_closed' },
            }),
          );
        }
        await recordChange(deps, tx, tenantId, { events });
        return rows.length;
      });
      total += purged;
      if (purged < batch) return total;
    }
  }

  return {
    /** One pass over every tenant; returns how many secrets were erased. */
    async runOnce(now = new Date()): Promise<number> {
      const cutoff = new Date(now.getTime() - deps.recoveryMs);
      let after: string | undefined;
      let total = 0;
      for (;;) {
        const page = await deps.tenants.page(after, 500);
        for (const t of page) total += await purgeTenant(t.id, cutoff);
        if (page.length < 500) break;
        after = page.at(-1)?.id;
      }
      if (total > 0) deps.log.info({ purged: total }, 'erased secrets past their recovery window');
      return total;
    },
  };
}

export type PurgeJob = ReturnType<typeof purgeJob>;
