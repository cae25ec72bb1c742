import { PLATFORM_TENANT_ID, type RewrapResponse, type SystemKeys } from '@coffer/contracts';
import { type SQL, sql } from 'drizzle-orm';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { CHECKPOINT_PURPOSE, checkpointMac } from '../audit/audit.verify.ts';
import { dataKeyContext, fingerprintKeyContext, type MasterKeyring, type WrappedKey } from '../crypto/keyring.ts';
import { RowMacs } from '../crypto/row-macs.ts';
import type { Database } from '../db/database.ts';
import { resignRowMacs, rowMacCensus } from '../db/row-mac-resign.ts';
import type { RequestContext } from '../http/request-context.ts';
import { webhookSecretContext } from '../webhooks/webhooks.service.ts';

export interface SystemServiceDeps {
  db: Pick<Database, 'withTenant'>;
  keyring: MasterKeyring;
  audit: AuditSink;
  batchSize?: number;
}

type Counts = Record<'dataKeys' | 'fingerprintKeys' | 'webhookSecrets' | 'checkpoints' | 'rowMacs', number>;

/**
 * Master-key operations (platform admin). Rotation is online: put the new key first in the keyring, restart, call
 * rewrap; data keys, fingerprint keys and webhook secrets are re-wrapped, and checkpoints and row MACs re-signed
 * (after their old signature checks out), in batches, so the call is idempotent and resumes where it stopped. No
 * secret value is re-encrypted. The census says when an old key may leave the keyring.
 */
export function systemService(deps: SystemServiceDeps) {
  const { db, keyring } = deps;
  const batch = deps.batchSize ?? 200;
  // Derived from the same keyring: the MACs this service re-signs are the ones the API checks.
  const macs = new RowMacs(keyring);

  /**
   * Which master key wraps or signs how many things. Row MACs are counted tenant by tenant (the platform scope
   * cannot read those rows), so only where the operator asks: the census and rewrap, never readiness.
   */
  async function census(o: { rowMacs: boolean } = { rowMacs: true }): Promise<Map<string, Counts>> {
    const { rows } = await db.withTenant(PLATFORM_TENANT_ID, (t) =>
      t.execute<{ id: string; what: keyof Counts; n: string }>(sql`
        select master_key_id as id, 'dataKeys' as what, count(*) as n from coffer.tenant_keys where state <> 'retired' group by 1
        union all
        select fingerprint_key_master_id, 'fingerprintKeys', count(*) from coffer.tenants where fingerprint_key_master_id is not null group by 1
        union all
        select secret_master_key_id, 'webhookSecrets', count(*) from coffer.webhooks group by 1
        union all
        select master_key_id, 'checkpoints', count(*) from coffer.audit_checkpoints group by 1`),
    );
    const out = new Map<string, Counts>();
    const entry = (id: string) => {
      const c = out.get(id) ?? { dataKeys: 0, fingerprintKeys: 0, webhookSecrets: 0, checkpoints: 0, rowMacs: 0 };
      out.set(id, c);
      return c;
    };
    for (const r of rows) entry(r.id)[r.what] = Number(r.n);
    // After the platform transaction, not inside it: one connection at a time, whatever the pool size.
    if (o.rowMacs) for (const [id, n] of await rowMacCensus(db)) entry(id).rowMacs = n;
    return out;
  }

  /**
   * Re-wraps one batch of keys that an older master key wraps under the active one, in one transaction. The
   * plaintext key lives only between unwrap and wrap, and is zeroed at once.
   */
  async function rewrapBatch<R extends { wrapped: Buffer; master_key_id: string }>(
    select: SQL,
    contextOf: (r: R) => string,
    update: (r: R, w: WrappedKey) => SQL,
  ): Promise<number> {
    return db.withTenant(PLATFORM_TENANT_ID, async (t) => {
      const { rows } = await t.execute<Record<string, unknown>>(select);
      for (const r of rows as unknown as R[]) {
        const context = contextOf(r);
        const key = keyring.unwrap({ wrapped: r.wrapped, masterKeyId: r.master_key_id }, context);
        const w = keyring.wrap(key, context);
        key.fill(0);
        await t.execute(update(r, w));
      }
      return rows.length;
    });
  }
  /** Wrapped by a master key the keyring still holds, other than the active one. */
  const olderKey = (column: SQL) =>
    sql`${column} <> ${keyring.activeId} and ${column} = any(${sql.param(keyring.ids)}::text[])`;

  const rewrapDataKeys = () =>
    rewrapBatch<{ tenant_id: string; version: number; wrapped: Buffer; master_key_id: string }>(
      sql`select tenant_id, version, wrapped_key as wrapped, master_key_id from coffer.tenant_keys
        where state <> 'retired' and ${olderKey(sql`master_key_id`)} limit ${batch} for update skip locked`,
      (r) => dataKeyContext(r.tenant_id, r.version),
      (r, w) => sql`update coffer.tenant_keys set wrapped_key = ${w.wrapped}, master_key_id = ${w.masterKeyId}
        where tenant_id = ${r.tenant_id} and version = ${r.version}`,
    );

  const rewrapFingerprintKeys = () =>
    rewrapBatch<{ id: string; wrapped: Buffer; master_key_id: string }>(
      sql`select id, fingerprint_key_wrapped as wrapped, fingerprint_key_master_id as master_key_id from coffer.tenants
        where ${olderKey(sql`fingerprint_key_master_id`)} limit ${batch} for update skip locked`,
      (r) => fingerprintKeyContext(r.id),
      (r, w) => sql`update coffer.tenants set fingerprint_key_wrapped = ${w.wrapped},
        fingerprint_key_master_id = ${w.masterKeyId} where id = ${r.id}`,
    );

  const rewrapWebhookSecrets = () =>
    rewrapBatch<{ id: string; wrapped: Buffer; master_key_id: string }>(
      sql`select id, secret_wrapped as wrapped, secret_master_key_id as master_key_id from coffer.webhooks
        where ${olderKey(sql`secret_master_key_id`)} limit ${batch} for update skip locked`,
      (r) => webhookSecretContext(r.id),
      (r, w) => sql`update coffer.webhooks set secret_wrapped = ${w.wrapped}, secret_master_key_id = ${w.masterKeyId}
        where id = ${r.id}`,
    );

  /** Re-signs checkpoints whose old signature is valid; a bad one is left as it is, for verify to report. */
  async function resignCheckpoints(): Promise<{ resigned: number; seen: number }> {
    return db.withTenant(PLATFORM_TENANT_ID, async (t) => {
      const { rows } = await t.execute<{
        tenant_id: string;
        seq: string;
        hash: Buffer;
        mac: Buffer;
        master_key_id: string;
      }>(sql`
        select tenant_id, seq, hash, mac, master_key_id from coffer.audit_checkpoints
        where master_key_id <> ${keyring.activeId} and master_key_id = any(${sql.param(keyring.ids)}::text[])
        limit ${batch} for update skip locked`);
      let resigned = 0;
      const newKey = keyring.derive(CHECKPOINT_PURPOSE);
      for (const r of rows) {
        const seq = Number(r.seq);
        const old = checkpointMac(keyring.deriveFor(r.master_key_id, CHECKPOINT_PURPOSE), r.tenant_id, seq, r.hash);
        if (!old.equals(r.mac)) continue;
        await t.execute(sql`update coffer.audit_checkpoints set mac = ${checkpointMac(newKey, r.tenant_id, seq, r.hash)}, master_key_id = ${keyring.activeId}
          where tenant_id = ${r.tenant_id} and seq = ${seq}`);
        resigned++;
      }
      return { resigned, seen: rows.length };
    });
  }

  /**
   * What readiness needs to know, and only that: whether this process can do its work with its keyring. Rows
   * naming a master key are written by the app role, so one such row (a checkpoint or webhook naming a key id
   * nobody has) must not take every replica out of service, nor keep an old key from leaving the keyring:
   * references to keys the keyring lacks are reported by the census (GET /v1/system/keys) and by
   * `orphanKeyIds`, not here. Not ready means: the active key cannot unwrap any of the data keys recorded under
   * its id (wrong key material for that id), or data keys exist and none is under any key of this keyring (a
   * keyring that belongs to another deployment). A few rows under each id are tried, at random, so a forged row
   * does not decide the answer.
   */
  async function readinessProblems(): Promise<string[]> {
    const { rows } = await db.withTenant(PLATFORM_TENANT_ID, (t) =>
      t.execute<{ tenant_id: string; version: number; wrapped_key: Buffer; master_key_id: string }>(sql`
        select tenant_id, version, wrapped_key, master_key_id from (
          select k.*, row_number() over (partition by master_key_id order by random()) as n
          from coffer.tenant_keys k where state <> 'retired') s
        where n <= 5`),
    );
    if (rows.length === 0) return [];
    const unwraps = (r: (typeof rows)[number]) => {
      try {
        keyring
          .unwrap({ wrapped: r.wrapped_key, masterKeyId: r.master_key_id }, dataKeyContext(r.tenant_id, r.version))
          .fill(0);
        return true;
      } catch {
        return false;
      }
    };
    const underActive = rows.filter((r) => r.master_key_id === keyring.activeId);
    if (underActive.length > 0 && !underActive.some(unwraps)) {
      return [
        `master key ${keyring.activeId} in the keyring cannot unwrap the data keys it wrapped (wrong key for that id?)`,
      ];
    }
    if (!rows.some((r) => keyring.has(r.master_key_id))) {
      const ids = [...new Set(rows.map((r) => r.master_key_id))].sort();
      return [`the keyring holds none of the master keys in use; missing from the keyring: ${ids.join(', ')}`];
    }
    return [];
  }

  /**
   * Master key ids that something is wrapped or signed by and the keyring lacks: for the operator, not readiness.
   * Readiness calls it on every probe, so row MACs (a walk over every tenant) are left to the census.
   */
  async function orphanKeyIds(): Promise<string[]> {
    return [...(await census({ rowMacs: false })).keys()].filter((id) => !keyring.has(id)).sort();
  }

  return {
    census,
    readinessProblems,
    orphanKeyIds,

    async keys(ctx: RequestContext): Promise<SystemKeys> {
      const c = await census();
      await deps.audit.record(
        auditEvent(ctx, { action: 'system.keys.read', outcome: 'allowed', resource: 'system/keys' }),
      );
      return {
        activeMasterKeyId: keyring.activeId,
        keyring: keyring.ids,
        inUse: [...c].map(([masterKeyId, counts]) => ({ masterKeyId, inKeyring: keyring.has(masterKeyId), ...counts })),
      };
    },

    async rewrap(ctx: RequestContext): Promise<RewrapResponse> {
      const done = { dataKeys: 0, fingerprintKeys: 0, webhookSecrets: 0, checkpoints: 0, rowMacs: 0 };
      for (;;) {
        const n = await rewrapDataKeys();
        done.dataKeys += n;
        if (n < batch) break;
      }
      for (;;) {
        const n = await rewrapFingerprintKeys();
        done.fingerprintKeys += n;
        if (n < batch) break;
      }
      for (;;) {
        const n = await rewrapWebhookSecrets();
        done.webhookSecrets += n;
        if (n < batch) break;
      }
      for (;;) {
        const r = await resignCheckpoints();
        done.checkpoints += r.resigned;
        if (r.seen < batch || r.resigned === 0) break;
      }
      done.rowMacs = (await resignRowMacs(db, keyring, macs, batch)).resigned;
      let remaining = 0;
      for (const [id, counts] of await census()) {
        if (id !== keyring.activeId)
          remaining +=
            counts.dataKeys + counts.fingerprintKeys + counts.webhookSecrets + counts.checkpoints + counts.rowMacs;
      }
      await deps.audit.record(
        auditEvent(ctx, {
          action: 'system.keys.rewrap',
          outcome: 'allowed',
          resource: 'system/keys',
          details: { ...done, remaining, activeMasterKeyId: keyring.activeId },
        }),
      );
      return { activeMasterKeyId: keyring.activeId, rewrapped: done, remaining };
    },
  };
}

export type SystemService = ReturnType<typeof systemService>;
