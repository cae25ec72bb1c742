import { createHmac } from 'node:crypto';
import { and, eq, ne } from 'drizzle-orm';
import type { Database } from '../db/database.ts';
import { tenantKeys, tenants } from '../db/schema.ts';
import { AppError } from '../errors/app-error.ts';
import { dataKeyContext, fingerprintKeyContext, type MasterKeyring } from './keyring.ts';

/**
 * One tenant's unwrapped keys, as one request's queries need them. A fresh view per `get`: the hex strings are
 * made here, for this request only, because PostgreSQL takes the keys as text bind parameters (the `p_keys text[]`
 * argument and pgp_sym_encrypt's passphrase), so a string per query is unavoidable; it is never cached, and the
 * cache itself holds the keys only as buffers that it zeroes.
 */
export interface TenantKeySet {
  activeVersion: number;
  /** Hex data keys indexed by key version (index 0 is version 1), null where retired: the SQL `p_keys` array. */
  sqlKeys: (string | null)[];
  /** The active data key, hex: what new versions are sealed with. */
  activeKey: string;
  /** This request's copy: the cached buffer may be zeroed (evicted) while the request still runs. */
  fingerprintKey: Buffer | null;
  loadedAt: number;
}

/** What the cache keeps: buffers only, zeroed when the entry goes. */
interface HeldKeys {
  activeVersion: number;
  keys: (Buffer | null)[];
  fingerprintKey: Buffer | null;
  loadedAt: number;
  timer: NodeJS.Timeout | null;
}

export interface TenantKeyCacheOptions {
  maxTenants?: number;
  ttlMs?: number;
}

/**
 * Unwrapped data keys, kept in memory only as long as a bounded LRU needs them (and never logged). Reads of a
 * tenant's keys are coalesced; `invalidate` drops a tenant after its keys change (rotation), and the TTL bounds
 * how long another replica can keep using a key set this one replaced. An entry leaves at the end of its TTL on
 * a timer of its own, not at the next access (an idle tenant's keys would otherwise stay for the process's
 * life), and its buffers are zeroed whenever it leaves: expiry, invalidation, LRU eviction, clear and close.
 */
export class TenantKeyCache {
  private readonly entries = new Map<string, HeldKeys>();
  private readonly loading = new Map<string, Promise<HeldKeys>>();
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
      return TenantKeyCache.view(hit);
    }
    if (hit) this.evict(tenantId, hit);
    let pending = this.loading.get(tenantId);
    if (!pending) {
      pending = this.load(tenantId).finally(() => this.loading.delete(tenantId));
      this.loading.set(tenantId, pending);
    }
    return TenantKeyCache.view(await pending);
  }

  invalidate(tenantId: string): void {
    const held = this.entries.get(tenantId);
    if (held) this.evict(tenantId, held);
  }

  clear(): void {
    for (const [tenantId, held] of [...this.entries]) this.evict(tenantId, held);
  }

  /** Zeroes and drops every key; the cache stays usable (a later `get` loads again). */
  close(): void {
    this.clear();
  }

  /** How many tenants' keys are held. */
  get size(): number {
    return this.entries.size;
  }

  /** The buffers held for a tenant (the very ones that are zeroed on eviction), for tests that check they are. */
  heldBuffers(tenantId: string): readonly Buffer[] {
    const held = this.entries.get(tenantId);
    if (!held) return [];
    return [...held.keys, held.fingerprintKey].filter((b): b is Buffer => b !== null);
  }

  /** A keyed fingerprint of a value: equal values give equal fingerprints within a tenant, nothing else leaks. */
  static fingerprint(keys: TenantKeySet, value: string): string | null {
    if (!keys.fingerprintKey) return null;
    return createHmac('sha256', keys.fingerprintKey).update(value, 'utf8').digest('hex').slice(0, 32);
  }

  private static view(held: HeldKeys): TenantKeySet {
    const active = held.keys[held.activeVersion - 1];
    if (!active) throw new AppError('internal', 'the tenant has no active data key');
    return {
      activeVersion: held.activeVersion,
      sqlKeys: held.keys.map((k) => k?.toString('hex') ?? null),
      activeKey: active.toString('hex'),
      fingerprintKey: held.fingerprintKey ? Buffer.from(held.fingerprintKey) : null,
      loadedAt: held.loadedAt,
    };
  }

  private evict(tenantId: string, held: HeldKeys): void {
    if (this.entries.get(tenantId) === held) this.entries.delete(tenantId);
    if (held.timer) clearTimeout(held.timer);
    held.timer = null;
    for (const k of held.keys) k?.fill(0);
    held.fingerprintKey?.fill(0);
  }

  private async load(tenantId: string): Promise<HeldKeys> {
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
    const keys: (Buffer | null)[] = [];
    for (const r of rows) {
      const key = this.keyring.unwrap(
        { wrapped: r.wrappedKey, masterKeyId: r.masterKeyId },
        dataKeyContext(tenantId, r.version),
      );
      while (keys.length < r.version) keys.push(null);
      keys[r.version - 1] = key;
    }
    const fingerprintKey =
      tenant?.wrapped && tenant.masterKeyId
        ? this.keyring.unwrap(
            { wrapped: tenant.wrapped, masterKeyId: tenant.masterKeyId },
            fingerprintKeyContext(tenantId),
          )
        : null;
    const held: HeldKeys = { activeVersion: active.version, keys, fingerprintKey, loadedAt: Date.now(), timer: null };
    // unref'd: a cached key must never be what keeps the process alive.
    held.timer = setTimeout(() => this.evict(tenantId, held), this.ttlMs);
    held.timer.unref();
    const previous = this.entries.get(tenantId);
    if (previous) this.evict(tenantId, previous);
    this.entries.set(tenantId, held);
    while (this.entries.size > this.maxTenants) {
      const [oldestId, oldest] = this.entries.entries().next().value ?? [];
      if (oldestId === undefined || !oldest) break;
      this.evict(oldestId, oldest);
    }
    return held;
  }
}
