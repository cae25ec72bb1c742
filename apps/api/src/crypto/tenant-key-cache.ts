import { createHmac } from 'node:crypto';
import { and, eq, ne } from 'drizzle-orm';
import type { Database } from '../db/database.ts';
import { tenantKeys, tenants } from '../db/schema.ts';
import { AppError } from '../errors/app-error.ts';
import { dataKeyContext, fingerprintKeyContext, type MasterKeyring } from './keyring.ts';

/** One tenant's unwrapped keys, as the queries need them. */
export interface TenantKeySet {
  activeVersion: number;
  /** Hex data keys indexed by key version (index 0 is version 1), null where retired: the SQL `p_keys` array. */
  sqlKeys: (string | null)[];
  /** The active data key, hex: what new versions are sealed with. */
  activeKey: string;
  fingerprintKey: Buffer | null;
  loadedAt: number;
}

export interface TenantKeyCacheOptions {
  maxTenants?: number;
  ttlMs?: number;
}

/**
 * Unwrapped data keys, kept in memory only as long as a bounded LRU needs them (and never logged). Reads of a
 * tenant's keys are coalesced; `invalidate` drops a tenant after its keys change (rotation), and the TTL bounds
 * how long another replica can keep using a key set this one replaced.
 */
export class TenantKeyCache {
  private readonly entries = new Map<string, TenantKeySet>();
  private readonly loading = new Map<string, Promise<TenantKeySet>>();
  private readonly maxTenants: number;
  private readonly ttlMs: number;

  constructor(
    private readonly db: Pick<Database, 'withTenant'>,
    private readonly keyring: Pick<MasterKeyring, 'unwrap'>,
    o: TenantKeyCacheOptions = {},
  ) {
    this.maxTenants = o.maxTenants ?? 10_000;
    this.ttlMs = o.ttlMs ?? 5 * 60_000;
  }

  async get(tenantId: string): Promise<TenantKeySet> {
    const hit = this.entries.get(tenantId);
    if (hit && Date.now() - hit.loadedAt < this.ttlMs) {
      // Refresh recency (Map keeps insertion order; the first entry is the least recently used).
      this.entries.delete(tenantId);
      this.entries.set(tenantId, hit);
      return hit;
    }
    let pending = this.loading.get(tenantId);
    if (!pending) {
      pending = this.load(tenantId).finally(() => this.loading.delete(tenantId));
      this.loading.set(tenantId, pending);
    }
    return pending;
  }

  invalidate(tenantId: string): void {
    this.entries.delete(tenantId);
  }

  clear(): void {
    this.entries.clear();
  }

  /** A keyed fingerprint of a value: equal values give equal fingerprints within a tenant, nothing else leaks. */
  static fingerprint(keys: TenantKeySet, value: string): string | null {
    if (!keys.fingerprintKey) return null;
    return createHmac('sha256', keys.fingerprintKey).update(value, 'utf8').digest('hex').slice(0, 32);
  }

  private async load(tenantId: string): Promise<TenantKeySet> {
    const { rows, tenant } = await this.db.withTenant(tenantId, async (tx) => ({
      rows: await tx
        .select()
        .from(tenantKeys)
        .where(and(eq(tenantKeys.tenantId, tenantId), ne(tenantKeys.state, 'retired'))),
      tenant: (
        await tx
          .select({ wrapped: tenants.fingerprintKeyWrapped, masterKeyId: tenants.fingerprintKeyMasterId })
          .from(tenants)
          .where(eq(tenants.id, tenantId))
      )[0],
    }));
    const active = rows.find((r) => r.state === 'active');
    if (!active) throw new AppError('internal', 'the tenant has no active data key');
    const sqlKeys: (string | null)[] = [];
    let activeKey = '';
    for (const r of rows) {
      const key = this.keyring.unwrap(
        { wrapped: r.wrappedKey, masterKeyId: r.masterKeyId },
        dataKeyContext(tenantId, r.version),
      );
      const hex = key.toString('hex');
      key.fill(0);
      while (sqlKeys.length < r.version) sqlKeys.push(null);
      sqlKeys[r.version - 1] = hex;
      if (r === active) activeKey = hex;
    }
    const fingerprintKey =
      tenant?.wrapped && tenant.masterKeyId
        ? this.keyring.unwrap(
            { wrapped: tenant.wrapped, masterKeyId: tenant.masterKeyId },
            fingerprintKeyContext(tenantId),
          )
        : null;
    const set: TenantKeySet = {
      activeVersion: active.version,
      sqlKeys,
      activeKey,
      fingerprintKey,
      loadedAt: Date.now(),
    };
    this.entries.set(tenantId, set);
    while (this.entries.size > this.maxTenants) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    return set;
  }
}
