import type { Logger } from 'pino';
import type { MasterKeyring } from '../crypto/keyring.ts';
import type { TenantQueries } from '../tenants/tenants.queries.ts';
import type { AuditQueries } from './audit.queries.ts';
import { CHECKPOINT_PURPOSE, checkpointMac } from './audit.verify.ts';
import type { AuditWitness } from './audit.witness.ts';

export interface AuditJobDeps {
  queries: AuditQueries;
  tenants: Pick<TenantQueries, 'page'>;
  keyring: Pick<MasterKeyring, 'derive' | 'activeId'>;
  log: Logger;
  /** Where each checkpoint is exported before it goes into the database; none: the database alone. */
  witness?: Pick<AuditWitness, 'append'> | undefined;
}

/** Signed checkpoints of every chain that moved, and retention behind them. */
export function auditJobs(deps: AuditJobDeps) {
  const { queries, keyring } = deps;

  async function sign(tenantId: string, seq: number, hash: Buffer, kind: 'periodic' | 'retention' | 'verify') {
    const mac = checkpointMac(keyring.derive(CHECKPOINT_PURPOSE), tenantId, seq, hash);
    const createdAt = new Date();
    // Witnessed first: if the database insert then fails, the witness holds one checkpoint more, which still
    // matches the chain; the other way round a checkpoint could exist that no witness can vouch for.
    await deps.witness?.append({
      tenantId,
      seq,
      hash,
      mac,
      masterKeyId: keyring.activeId,
      createdAt: createdAt.toISOString(),
    });
    await queries.insertCheckpoint(tenantId, { seq, hash, mac, masterKeyId: keyring.activeId, kind, createdAt });
  }

  return {
    sign,

    /** One checkpoint at the head of each chain that moved since its last one. */
    async checkpointAll(): Promise<number> {
      const heads = await queries.uncheckpointedHeads();
      for (const h of heads) await sign(h.tenantId, h.seq, h.hash, 'periodic');
      return heads.length;
    },

    /** Drops events past the tenant's retention, behind a signed checkpoint at the cut. Returns how many. */
    async retainTenant(tenantId: string, now = new Date()): Promise<number> {
      const days = await queries.retentionDays(tenantId);
      if (days === undefined) return 0;
      const cut = await queries.retentionCut(tenantId, new Date(now.getTime() - days * 86_400_000));
      if (!cut) return 0;
      const first = await queries.seqRange(tenantId, {});
      if (first.first === null || cut.seq < first.first) return 0;
      await sign(tenantId, cut.seq, cut.hash, 'retention');
      let total = 0;
      for (;;) {
        const n = await queries.purgeThrough(tenantId, cut.seq, 5_000);
        total += n;
        if (n < 5_000) break;
      }
      return total;
    },

    async retainAll(): Promise<number> {
      let after: string | undefined;
      let total = 0;
      for (;;) {
        const page = await deps.tenants.page(after, 500);
        for (const t of page) total += await this.retainTenant(t.id);
        if (page.length < 500) break;
        after = page.at(-1)?.id;
      }
      if (total > 0) deps.log.info({ dropped: total }, 'dropped audit events past their retention');
      return total;
    },
  };
}

export type AuditJobs = ReturnType<typeof auditJobs>;
