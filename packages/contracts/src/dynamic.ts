import { z } from 'zod';
import { Cursor, storableText, Timestamp, Uuid } from './common.ts';
import { ENVIRONMENT_SLUG_PATTERN, SECRET_NAME_PATTERN, SECRET_OWNER_PATTERN } from './patterns.ts';
import { SecretKind } from './secrets.ts';

/**
 * Dynamic credentials: short-lived database roles made on demand for a service, revoked when their lease ends.
 * A tenant admin configures a backend (how to reach the database, which statements make and drop a role); a
 * service with `read` on `dynamic/<name>` takes a lease and gets a username and password, once.
 */

/** The longest lease: 31 days. */
export const LEASE_TTL_MAX_SECONDS = 2_678_400;

export const DynamicBackendName = z
  .string()
  .min(1)
  .max(32)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'must be 1-32 lowercase letters, digits and dashes, e.g. orders-db')
  .refine((n) => n !== 'postgres', 'is reserved: /v1/dynamic/postgres is where backends are configured');

export const DynamicBackendParams = z.object({ name: DynamicBackendName });

const ConnectionSecret = z
  .string()
  .max(300)
  .refine((ref) => {
    const at = ref.indexOf('@');
    const [kind, owner, name, ...rest] = (at < 0 ? ref : ref.slice(0, at)).split('/');
    return (
      rest.length === 0 &&
      SecretKind.safeParse(kind).success &&
      SECRET_OWNER_PATTERN.test(owner ?? '') &&
      SECRET_NAME_PATTERN.test(name ?? '') &&
      (at < 0 || ENVIRONMENT_SLUG_PATTERN.test(ref.slice(at + 1)))
    );
  }, 'must be the path of a secret, kind/owner/name, optionally @environment')
  .describe(
    'The Coffer secret (kind/owner/name, in the tenant’s `default` environment unless `@environment` follows) ' +
      'whose value is the admin connection URL, `postgres://user:password@host:port/database[?sslmode=…]`. ' +
      'Read by the server when it needs it, never returned',
  );

const Statement = storableText(z.string().trim().min(1).max(4096));

const statements = (min: number) => z.array(Statement).min(min).max(20);

const TtlSeconds = z.number().int().min(1).max(LEASE_TTL_MAX_SECONDS);

export const CreatePostgresBackendRequest = z
  .strictObject({
    name: DynamicBackendName,
    connectionSecret: ConnectionSecret,
    creationStatements: statements(1).describe(
      'Run in one transaction to make the role. Placeholders: `{{name}}` (the role, quoted as an identifier), ' +
        '`{{password}}` (a SCRAM-SHA-256 verifier of the password, quoted as a literal: the password itself never ' +
        'reaches the database) and `{{expiration}}` (the lease end, a timestamp literal). Placeholders go bare, ' +
        'never inside quotes; anything else in braces is refused',
    ),
    revocationStatements: statements(0).describe(
      'Run in one transaction before the role is dropped (`{{name}}` only): e.g. REVOKE or REASSIGN OWNED. Coffer ' +
        "itself first stops the role's logins and ends its sessions, and drops it last",
    ),
    renewStatements: statements(0)
      .optional()
      .describe('Run when a lease is renewed (`{{name}}`, `{{expiration}}`). Default: ALTER ROLE … VALID UNTIL'),
    defaultTtlSeconds: TtlSeconds.describe('How long a lease lasts when the request does not say'),
    maxTtlSeconds: TtlSeconds.describe('No lease, however renewed, outlives its creation by more than this'),
    usernameTemplate: storableText(z.string().min(1).max(128))
      .optional()
      .describe(
        'How role names are made: literal text and `{{backend}}`, `{{identity}}` (each clipped to 16 bytes), ' +
          '`{{random}}` (12 random characters, required) and `{{unix_time}}`. At most 63 bytes once filled in. ' +
          'Default `v_{{backend}}_{{identity}}_{{random}}`',
      ),
  })
  .refine((b) => b.defaultTtlSeconds <= b.maxTtlSeconds, {
    path: ['defaultTtlSeconds'],
    message: 'must not exceed maxTtlSeconds',
  })
  .meta({ id: 'CreatePostgresBackendRequest' });
export type CreatePostgresBackendRequest = z.infer<typeof CreatePostgresBackendRequest>;

export const PostgresBackend = z
  .object({
    name: z.string(),
    engine: z.literal('postgres'),
    connectionSecret: z.string(),
    creationStatements: z.array(z.string()),
    revocationStatements: z.array(z.string()),
    renewStatements: z.array(z.string()),
    defaultTtlSeconds: z.number().int(),
    maxTtlSeconds: z.number().int(),
    usernameTemplate: z.string(),
    activeLeases: z.number().int().describe('Leases not yet revoked (active, being revoked, or failed to revoke)'),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .meta({ id: 'PostgresBackend' });
export type PostgresBackend = z.infer<typeof PostgresBackend>;

export const PostgresBackendList = z.object({ items: z.array(PostgresBackend) }).meta({ id: 'PostgresBackendList' });
export type PostgresBackendList = z.infer<typeof PostgresBackendList>;

export const CreateLeaseRequest = z
  .strictObject({
    ttlSeconds: TtlSeconds.optional().describe("Default: the backend's defaultTtlSeconds; never beyond its maximum"),
    deployment: Uuid.optional().describe(
      'The deployment the lease is for (one the caller can see, not revoked): revoking the deployment revokes it',
    ),
  })
  .meta({ id: 'CreateLeaseRequest' });
export type CreateLeaseRequest = z.infer<typeof CreateLeaseRequest>;

export const LeaseCredentials = z
  .object({
    leaseId: Uuid,
    username: z.string(),
    password: z.string().describe('Shown once: Coffer keeps only the username and the state of the lease'),
    expiresAt: Timestamp,
    maxExpiresAt: Timestamp.describe('How far renewals can take the lease'),
  })
  .meta({ id: 'LeaseCredentials' });
export type LeaseCredentials = z.infer<typeof LeaseCredentials>;

export const LeaseState = z
  .enum(['creating', 'active', 'revoking', 'revoked', 'revoke_failed'])
  .describe(
    '`creating`: the role is being made; `active`: handed out; `revoking`: due or asked to end, being revoked ' +
      '(retried with backoff while the database is unreachable); `revoked`: the role is gone; `revoke_failed`: ' +
      'revocation keeps failing (still retried, hourly); the role may still exist',
  )
  .meta({ id: 'LeaseState' });
export type LeaseState = z.infer<typeof LeaseState>;

export const Lease = z
  .object({
    id: Uuid,
    backend: z.string(),
    username: z.string(),
    identityId: Uuid.describe('The identity the lease was made for'),
    identityName: z.string(),
    deploymentId: Uuid.nullable().describe('The deployment the lease was made for, if any'),
    state: LeaseState,
    createdAt: Timestamp,
    expiresAt: Timestamp,
    maxExpiresAt: Timestamp,
    renewedAt: Timestamp.nullable(),
    revokeReason: z
      .enum([
        'expired',
        'revoked',
        'identity_revoked',
        'identity_disabled',
        'identity_deleted',
        'deployment_revoked',
        'creation_failed',
      ])
      .nullable(),
    revokedAt: Timestamp.nullable(),
    revokeAttempts: z.number().int(),
    nextAttemptAt: Timestamp.nullable(),
    lastError: z.string().nullable().describe('Why the last revocation attempt failed (never a password or URL)'),
  })
  .meta({ id: 'Lease' });
export type Lease = z.infer<typeof Lease>;

export const LeaseListQuery = z.strictObject({
  identity: Uuid.optional().describe('Leases made for this identity'),
  backend: DynamicBackendName.optional(),
  deployment: Uuid.optional().describe('Leases made for this deployment'),
  state: LeaseState.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});
export type LeaseListQuery = z.infer<typeof LeaseListQuery>;

export const LeasePage = z
  .object({
    items: z.array(Lease),
    nextCursor: Cursor.nullable().describe('Pass as `cursor` to get the next page; null on the last page'),
  })
  .meta({ id: 'LeasePage' });
export type LeasePage = z.infer<typeof LeasePage>;

export const LeaseIdParams = z.object({ id: Uuid });

export const RenewLeaseRequest = z
  .strictObject({
    ttlSeconds: TtlSeconds.optional().describe(
      "From now; default the backend's defaultTtlSeconds. Capped at the lease's maxExpiresAt",
    ),
  })
  .meta({ id: 'RenewLeaseRequest' });
export type RenewLeaseRequest = z.infer<typeof RenewLeaseRequest>;

export const RevokeLeasesQuery = z
  .strictObject({
    identity: Uuid.optional().describe('Every lease of this identity that is not revoked yet'),
    backend: DynamicBackendName.optional().describe('Every lease of this backend that is not revoked yet'),
    deployment: Uuid.optional().describe('Every lease made for this deployment that is not revoked yet'),
  })
  .describe('Name an identity, a backend or a deployment, or several: a lease must match all that are named')
  .refine(
    (q) => q.identity !== undefined || q.backend !== undefined || q.deployment !== undefined,
    'name an identity, a backend or a deployment',
  );

export const RevokeLeasesResult = z
  .object({
    requested: z.number().int().describe('Leases that were asked to end'),
    revoked: z.number().int().describe('Of those, revoked before the answer'),
    pending: z.number().int().describe('Still being revoked (the database did not answer): retried in the background'),
  })
  .meta({ id: 'RevokeLeasesResult' });
export type RevokeLeasesResult = z.infer<typeof RevokeLeasesResult>;
