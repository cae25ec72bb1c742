import { setTimeout as sleep } from 'node:timers/promises';
import type { DataKeys, RotateDataKeyResponse } from '@coffer/contracts';
import type { Logger } from 'pino';
import { auditEvent, systemEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import { dataKeyContext, type MasterKeyring, newDataKey } from '../crypto/keyring.ts';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { Database } from '../db/database.ts';
import { AppError } from '../errors/app-error.ts';
import type { RequestContext } from '../http/request-context.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { WebhookQueries } from '../webhooks/webhooks.queries.ts';
import type { DataKeyQueries } from './data-keys.queries.ts';

export interface DataKeyServiceDeps {
  db: Pick<Database, 'withTenant'>;
  queries: DataKeyQueries;
  keyring: Pick<MasterKeyring, 'wrap'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  audit: AuditSink;
  /** The webhook outbox: events enqueued in the change's own transaction. */
  webhookOutbox: Pick<WebhookQueries, 'enqueueInTx'>;
  log: Logger;
  batchSize?: number;
  /**
   * Share of the time re-encryption works: after a batch that took t, it pauses t × (1 − d) / d, so it yields to
   * the reads and writes it shares the database with, and yields more when they keep the database busy.
   */
  dutyCycle?: number;
  metrics?: Pick<Metrics, 'rekeyMoved' | 'rekeyRemaining'>;
}

/**
 * Tenant data-key rotation: a new key seals new writes at once; a background job re-encrypts every version sealed
 * by older keys in small batches (each its own transaction, so it resumes from the database after a crash and
 * never holds a read or write for more than a batch), and erases an old key once no ciphertext needs it.
 */
export function dataKeyService(deps: DataKeyServiceDeps) {
  const { db, queries, keys, audit } = deps;
  const batchSize = deps.batchSize ?? 500;
  const dutyCycle = deps.dutyCycle ?? 1;
  const running = new Map<string, Promise<number>>();

  /** Retires (erases) every retiring key that no ciphertext uses any more, under the key rows' locks. */
  async function retireUnused(tenantId: string): Promise<number[]> {
    const retired = await db.withTenant(tenantId, async (tx) => {
      const rows = await queries.lockAll(tenantId, tx);
      const counts = await queries.ciphertextCounts(tenantId, tx);
      const done: number[] = [];
      for (const r of rows) {
        if (r.state === 'retiring' && !counts.get(r.version)) {
          await queries.setState(tenantId, r.version, 'retired', tx);
          done.push(r.version);
        }
      }
      if (done.length > 0) {
        await audit.appendInTx(tx, [
          systemEvent('system', {
            tenantId,
            action: 'keys.retire',
            resource: 'keys',
            outcome: 'allowed',
            details: { versions: done.join(',') },
          }),
        ]);
      }
      return done;
    });
    if (retired.length > 0) keys.invalidate(tenantId);
    return retired;
  }

  async function rekeyTenant(tenantId: string): Promise<number> {
    keys.invalidate(tenantId);
    const set = await keys.get(tenantId);
    let moved = 0;
    for (;;) {
      const started = performance.now();
      const n = await queries.reencryptBatch(tenantId, set.sqlKeys, set.activeVersion, set.activeKey, batchSize);
      moved += n;
      deps.metrics?.rekeyMoved.inc(n);
      if (n === 0) break;
      if (n === batchSize && dutyCycle < 1) await sleep(((performance.now() - started) * (1 - dutyCycle)) / dutyCycle);
    }
    deps.metrics?.rekeyRemaining.remove({ tenant: tenantId });
    const retired = await retireUnused(tenantId);
    if (moved > 0 || retired.length > 0)
      deps.log.info({ tenantId, moved, retired }, 're-encrypted secret versions under the active data key');
    return moved;
  }

  return {
    async list(ctx: RequestContext): Promise<DataKeys> {
      const tenantId = principalOf(ctx).tenantId;
      const [rows, counts] = await db.withTenant(
        tenantId,
        async (tx) => [await queries.list(tenantId, tx), await queries.ciphertextCounts(tenantId, tx)] as const,
      );
      const active = rows.find((r) => r.state === 'active');
      await audit.record(auditEvent(ctx, { action: 'keys.read', outcome: 'allowed', resource: 'keys' }));
      return {
        activeVersion: active?.version ?? 0,
        items: rows.map((r) => ({
          version: r.version,
          state: r.state,
          masterKeyId: r.state === 'retired' ? null : r.masterKeyId,
          createdAt: r.createdAt.toISOString(),
          retiredAt: r.retiredAt?.toISOString() ?? null,
          ciphertexts: counts.get(r.version) ?? 0,
        })),
      };
    },

    async rotate(ctx: RequestContext): Promise<RotateDataKeyResponse> {
      const tenantId = principalOf(ctx).tenantId;
      const result = await db.withTenant(tenantId, async (tx) => {
        const rows = await queries.lockAll(tenantId, tx);
        const active = rows.find((r) => r.state === 'active');
        if (!active) throw new AppError('internal', 'the tenant has no active data key');
        const version = Math.max(...rows.map((r) => r.version)) + 1;
        const dek = newDataKey();
        const wrapped = deps.keyring.wrap(dek, dataKeyContext(tenantId, version));
        dek.fill(0);
        await queries.setState(tenantId, active.version, 'retiring', tx);
        await queries.insert(
          tenantId,
          { version, wrappedKey: wrapped.wrapped, masterKeyId: wrapped.masterKeyId, state: 'active' },
          tx,
        );
        const retiring = [...rows.filter((r) => r.state === 'retiring').map((r) => r.version), active.version];
        await audit.appendInTx(tx, [
          auditEvent(ctx, {
            action: 'keys.rotate',
            outcome: 'allowed',
            resource: 'keys',
            version,
            details: { retiring: retiring.join(',') },
          }),
        ]);
        await deps.webhookOutbox.enqueueInTx(tenantId, 'key.rotated', { tenantId, keyVersion: version, retiring }, tx);
        return { keyVersion: version, retiring };
      });
      keys.invalidate(tenantId);
      // Start re-encrypting now; the scheduler picks it up again after a restart.
      void this.rekey(tenantId).catch((err) =>
        deps.log.error({ err, tenantId }, 're-encryption failed; the scheduler will resume it'),
      );
      return result;
    },

    /** Re-encrypts one tenant (one run at a time per process; other replicas share the rows via SKIP LOCKED). */
    rekey(tenantId: string): Promise<number> {
      let run = running.get(tenantId);
      if (!run) {
        run = rekeyTenant(tenantId).finally(() => running.delete(tenantId));
        running.set(tenantId, run);
      }
      return run;
    },

    /** The job: every tenant with a retiring key. */
    async rekeyAll(): Promise<number> {
      let moved = 0;
      for (const tenantId of await queries.tenantsRekeying()) moved += await this.rekey(tenantId);
      return moved;
    },
  };
}

export type DataKeyService = ReturnType<typeof dataKeyService>;
