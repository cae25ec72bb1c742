import { createHmac, timingSafeEqual } from 'node:crypto';
import { DEFAULT_ENVIRONMENT } from '@coffer/contracts';
import { AppError } from '../errors/app-error.ts';
import type { MasterKeyring } from './keyring.ts';

/**
 * MACs over the columns that decide what a read returns and who may make it, under a key derived from the master
 * keyring, which the database never holds. coffer_app can UPDATE these rows under RLS; it cannot compute these MACs,
 * so a row it edited (renamed, rewound, widened) fails its check on use. A MAC is `<master key id>.<base64url>`: it
 * names the master key it was made under, so it still verifies after the active master key rotates.
 */
export const ROW_MAC_PURPOSE = 'coffer/row-mac/v1';

export interface SecretMacFields {
  tenantId: string;
  id: string;
  /** The secret's environment: covered unless it is `default`, so MACs made before environments still verify. */
  environment: string;
  kind: string;
  owner: string;
  name: string;
  currentVersion: number;
  expiresAt: Date | null;
  deleted: boolean;
  /**
   * What deployments do with it and who owns it. Each is covered unless it is null (its default), as `environment`
   * is unless it is `default`: MACs made before these columns were covered still verify while they are unset.
   */
  class: string | null;
  strategy: unknown;
  ownerTeam: string | null;
  contact: string | null;
}

export interface VersionMacFields {
  tenantId: string;
  secretId: string;
  version: number;
  servedUntil: Date | null;
  /** Revoked, and the deployment it was generated for: each covered unless null, as the secret's columns above. */
  revokedAt: Date | null;
  deploymentId: string | null;
}

/** One secret of a deployment's plan (deployment_items), as the deployment's MAC covers it. */
export interface DeploymentItemMacFields {
  position: number;
  secretId: string;
  kind: string;
  owner: string;
  name: string;
  action: string;
  reason: string;
  class: string | null;
  version: number | null;
  prompt: unknown;
}

/**
 * A deployment and its plan: where it runs, which bundles it reads, whether it was revoked, and, item by item, what
 * it injects or was generated (the plan decides what a bundle read for the deployment returns, and which secrets a
 * service sees of its record). Items are rows of their own that coffer_app may insert; covering them here makes an
 * added item fail the deployment's check.
 */
export interface DeploymentMacFields {
  tenantId: string;
  id: string;
  name: string;
  environment: string;
  tier: string;
  bundles: readonly string[];
  createdBy: string | null;
  revokedAt: Date | null;
  revocation: unknown;
  items: readonly DeploymentItemMacFields[];
}

export interface IdentityMacFields {
  tenantId: string;
  id: string;
  clientId: string;
  role: string;
  policies: unknown;
  /** Workload-federation bindings (issuer, subject, claims): rebinding an identity to another workload is a change. */
  federation: unknown;
  secretHash: string;
  credentialVersion: number;
  disabled: boolean;
  /** The revision the row has once its MAC is stored (the trigger bumps it on that UPDATE too). */
  revision: number;
}

/** A tenant's trusted issuer: whose signatures a federated login accepts, for which audiences. */
export interface IssuerMacFields {
  tenantId: string;
  id: string;
  name: string;
  issuer: string;
  jwks: unknown;
  audiences: readonly string[];
  algorithms: readonly string[];
  maxTokenAgeSeconds: number;
  clockSkewSeconds: number;
}

export const rowIntegrityError = () =>
  new AppError('integrity_error', 'a stored row failed its integrity check; the incident was recorded');

/** JSON with object keys sorted at every level: jsonb reorders keys, so the MAC must not depend on their order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

// Timestamps at millisecond precision: what a JavaScript Date holds, whichever side wrote the row.
const instant = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** A column covered only when it is set: nothing for null (so MACs made before it was covered still verify). */
const unlessNull = (name: string, value: unknown): unknown[] => (value === null ? [] : [[name, value]]);

const secretParts = (f: SecretMacFields): unknown[] => [
  'secret',
  f.tenantId,
  f.id,
  f.kind,
  f.owner,
  f.name,
  f.currentVersion,
  instant(f.expiresAt),
  f.deleted,
  // Moving a row between environments changes its MAC input: `default` adds nothing, any other adds its slug.
  ...(f.environment === DEFAULT_ENVIRONMENT ? [] : [f.environment]),
  // The same for the deployment columns: null adds nothing, a value adds a [name, value] pair (an array, never a
  // string like the environment's slug, and named, so no value can pass for another column's).
  ...unlessNull('class', f.class),
  ...unlessNull('strategy', f.strategy === null || f.strategy === undefined ? null : canonicalJson(f.strategy)),
  ...unlessNull('ownerTeam', f.ownerTeam),
  ...unlessNull('contact', f.contact),
];

const versionParts = (f: VersionMacFields): unknown[] => [
  'version',
  f.tenantId,
  f.secretId,
  f.version,
  instant(f.servedUntil),
  ...unlessNull('revokedAt', instant(f.revokedAt)),
  ...unlessNull('deploymentId', f.deploymentId),
];

const deploymentParts = (f: DeploymentMacFields): unknown[] => [
  'deployment',
  f.tenantId,
  f.id,
  f.name,
  f.environment,
  f.tier,
  [...f.bundles],
  f.createdBy,
  instant(f.revokedAt),
  canonicalJson(f.revocation),
  [...f.items]
    .sort((a, b) => a.position - b.position)
    .map((i) => [
      i.position,
      i.secretId,
      i.kind,
      i.owner,
      i.name,
      i.action,
      i.reason,
      i.class,
      i.version,
      canonicalJson(i.prompt),
    ]),
];

const identityParts = (f: IdentityMacFields): unknown[] => [
  'identity',
  f.tenantId,
  f.id,
  f.clientId,
  f.role,
  canonicalJson(f.policies),
  canonicalJson(f.federation),
  f.secretHash,
  f.credentialVersion,
  f.disabled,
  f.revision,
];

/**
 * The master key id a MAC names, or null when there is none. The last dot splits it: a key id may hold dots
 * (`mk.2026.1`), base64url never does.
 */
export function macKeyId(mac: string | null): string | null {
  const dot = mac ? mac.lastIndexOf('.') : -1;
  return mac && dot > 0 ? mac.slice(0, dot) : null;
}

/** The same in SQL, for counting and selecting rows by the master key that MACed them (`column` is trusted text). */
export const macKeyIdSql = (column: string) => `substring(${column} from '^(.*)\\.[^.]*$')`;

const issuerParts = (f: IssuerMacFields): unknown[] => [
  'issuer',
  f.tenantId,
  f.id,
  f.name,
  f.issuer,
  canonicalJson(f.jwks),
  [...f.audiences],
  [...f.algorithms],
  f.maxTokenAgeSeconds,
  f.clockSkewSeconds,
];

/** How many verified (MAC, input) pairs a RowMacs remembers: a few MB at most. */
const VERIFIED_ENTRIES = 10_000;

/**
 * Whether two MAC inputs are the same: arrays element by element, anything else by `===`, so only strings, numbers,
 * booleans and null (what the parts functions make) can match, and equal parts serialise to the same JSON. An object
 * or a NaN never matches, which costs only a fresh check.
 */
function sameParts(a: unknown[], b: unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (Array.isArray(x)) {
      if (!Array.isArray(y) || !sameParts(x, y)) return false;
    } else if (x !== y || (typeof x === 'object' && x !== null)) {
      return false;
    }
  }
  return true;
}

export class RowMacs {
  private readonly keys = new Map<string, Buffer>();
  /**
   * MACs that verified, each with the exact input it verified over. A hot read checks the same two rows again and
   * again; remembering the pair skips the HMAC, never the comparison of the input, so a row changed in any covered
   * column (or given another MAC) misses and is checked afresh. Only successes are kept. Keyed by the MAC alone (an
   * HMAC verifies one input), and the input kept as its parts: parts equal element by element serialise to the same
   * JSON, so a hit needs neither the JSON nor the HMAC.
   */
  private readonly verified = new Map<string, unknown[]>();

  constructor(private readonly keyring: Pick<MasterKeyring, 'activeId' | 'deriveFor' | 'has'>) {}

  secret(f: SecretMacFields): string {
    return this.make(secretParts(f));
  }

  version(f: VersionMacFields): string {
    return this.make(versionParts(f));
  }

  identity(f: IdentityMacFields): string {
    return this.make(identityParts(f));
  }

  issuer(f: IssuerMacFields): string {
    return this.make(issuerParts(f));
  }

  deployment(f: DeploymentMacFields): string {
    return this.make(deploymentParts(f));
  }

  /** Each check throws integrity_error unless `mac` is the MAC of the fields; a missing MAC fails too. */
  checkSecret(mac: string | null, f: SecretMacFields): void {
    if (!this.verifies(mac, secretParts(f))) throw rowIntegrityError();
  }

  checkVersion(mac: string | null, f: VersionMacFields): void {
    if (!this.verifies(mac, versionParts(f))) throw rowIntegrityError();
  }

  checkDeployment(mac: string | null, f: DeploymentMacFields): void {
    if (!this.verifies(mac, deploymentParts(f))) throw rowIntegrityError();
  }

  identityVerifies(mac: string | null, f: IdentityMacFields): boolean {
    return this.verifies(mac, identityParts(f));
  }

  secretVerifies(mac: string | null, f: SecretMacFields): boolean {
    return this.verifies(mac, secretParts(f));
  }

  versionVerifies(mac: string | null, f: VersionMacFields): boolean {
    return this.verifies(mac, versionParts(f));
  }

  issuerVerifies(mac: string | null, f: IssuerMacFields): boolean {
    return this.verifies(mac, issuerParts(f));
  }

  deploymentVerifies(mac: string | null, f: DeploymentMacFields): boolean {
    return this.verifies(mac, deploymentParts(f));
  }

  private verifies(mac: string | null, parts: unknown[]): boolean {
    const kid = macKeyId(mac);
    // A MAC under a master key that left the keyring cannot be checked: it fails like a forged one.
    if (!mac || !kid || !this.keyring.has(kid)) return false;
    const known = this.verified.get(mac);
    if (known !== undefined && sameParts(known, parts)) return true;
    const want = this.digestOf(kid, JSON.stringify(parts));
    const got = Buffer.from(mac.slice(kid.length + 1), 'base64url');
    const ok = got.length === want.length && timingSafeEqual(got, want);
    if (ok) {
      this.verified.set(mac, parts);
      if (this.verified.size > VERIFIED_ENTRIES) {
        const oldest = this.verified.keys().next().value;
        if (oldest !== undefined) this.verified.delete(oldest);
      }
    }
    return ok;
  }

  private make(parts: unknown[]): string {
    const kid = this.keyring.activeId;
    return `${kid}.${this.digest(kid, parts).toString('base64url')}`;
  }

  private digest(kid: string, parts: unknown[]): Buffer {
    return this.digestOf(kid, JSON.stringify(parts));
  }

  private digestOf(kid: string, input: string): Buffer {
    let key = this.keys.get(kid);
    if (!key) {
      key = this.keyring.deriveFor(kid, ROW_MAC_PURPOSE);
      this.keys.set(kid, key);
    }
    return createHmac('sha256', key).update(input).digest();
  }
}
