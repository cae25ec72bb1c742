import { createHmac, timingSafeEqual } from 'node:crypto';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { BackendRow, LeaseRow } from './dynamic.queries.ts';
import { TargetMisconfigured } from './target.ts';

/**
 * Seals on the rows that decide what Coffer runs in a tenant's database: a backend's statements and connection secret
 * are SQL run as that database's admin role, a lease's username is the role Coffer drops. `coffer_app`'s credentials
 * let their holder write these rows, so each carries an HMAC under a key derived from the tenant's fingerprint key —
 * wrapped by the master key, never in the database, re-wrapped (unchanged) when the master key rotates — and a row
 * that does not match its seal is refused, never acted on.
 */

const PURPOSE = 'coffer/dynamic-seal/v1';

type BackendFields = Pick<
  BackendRow,
  | 'id'
  | 'name'
  | 'engine'
  | 'connectionSecret'
  | 'creationStatements'
  | 'revocationStatements'
  | 'renewStatements'
  | 'defaultTtlSeconds'
  | 'maxTtlSeconds'
  | 'usernameTemplate'
>;
type LeaseFields = Pick<LeaseRow, 'id' | 'backendName' | 'identityId' | 'username'>;

const backendFields = (tenantId: string, b: BackendFields) => [
  'backend',
  tenantId,
  b.id,
  b.name,
  b.engine,
  b.connectionSecret,
  b.creationStatements,
  b.revocationStatements,
  b.renewStatements,
  b.defaultTtlSeconds,
  b.maxTtlSeconds,
  b.usernameTemplate,
];
const leaseFields = (tenantId: string, l: LeaseFields) => [
  'lease',
  tenantId,
  l.id,
  l.backendName,
  l.identityId,
  l.username,
];

export function dynamicSeals(keys: Pick<TenantKeyCache, 'get'>) {
  async function mac(tenantId: string, fields: unknown[]): Promise<Buffer> {
    const { fingerprintKey } = await keys.get(tenantId);
    if (!fingerprintKey) throw new TargetMisconfigured('this tenant has no fingerprint key to seal its backends with');
    const key = createHmac('sha256', fingerprintKey).update(PURPOSE).digest();
    fingerprintKey.fill(0);
    return createHmac('sha256', key).update(JSON.stringify(fields)).digest();
  }

  async function check(tenantId: string, fields: unknown[], seal: Buffer, what: string): Promise<void> {
    const want = await mac(tenantId, fields);
    if (seal.length !== want.length || !timingSafeEqual(seal, want)) {
      throw new TargetMisconfigured(`the stored ${what} does not match its seal: it was changed outside Coffer`);
    }
  }

  return {
    backend: (tenantId: string, b: BackendFields) => mac(tenantId, backendFields(tenantId, b)),
    lease: (tenantId: string, l: LeaseFields) => mac(tenantId, leaseFields(tenantId, l)),
    /** Throws TargetMisconfigured (answered 422; a revocation fails and is reported) for a row changed outside Coffer. */
    checkBackend: (tenantId: string, b: BackendFields & { seal: Buffer }) =>
      check(tenantId, backendFields(tenantId, b), b.seal, 'backend'),
    checkLease: (tenantId: string, l: LeaseFields & { seal: Buffer }) =>
      check(tenantId, leaseFields(tenantId, l), l.seal, 'lease'),
  };
}

export type DynamicSeals = ReturnType<typeof dynamicSeals>;
