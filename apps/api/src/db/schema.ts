import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  customType,
  foreignKey,
  index,
  integer,
  jsonb,
  pgSchema,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';

/**
 * The database schema. Hand-written SQL in drizzle/ adds what drizzle has no words for:
 * pgcrypto, the restricted query role, grants, row-level security and triggers.
 * The wire format lives in @coffer/contracts and is never derived from these tables.
 */

export const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });

export const coffer = pgSchema('coffer');

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();

export const tenants = coffer.table('tenants', {
  id: uuid('id').primaryKey(),
  slug: text('slug').notNull().unique('tenants_slug_key'),
  name: text('name').notNull(),
  /** Key of the keyed fingerprints in audit events (so auditors can compare values without seeing them). */
  fingerprintKeyWrapped: bytea('fingerprint_key_wrapped'),
  fingerprintKeyMasterId: text('fingerprint_key_master_id'),
  /** Requests per second each identity of the tenant may make; null: the server default. */
  rateLimitPerSecond: integer('rate_limit_per_second'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const identities = coffer.table(
  'identities',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    clientId: text('client_id').notNull().unique('identities_client_id_key'),
    name: text('name').notNull(),
    role: text('role', { enum: ['platform', 'admin', 'service', 'auditor'] }).notNull(),
    secretHash: text('secret_hash').notNull(),
    /** Bumped when the client secret rotates; tokens carry the version they were issued under. */
    credentialVersion: integer('credential_version').notNull().default(1),
    /** Bumped by a trigger on every change: hot read paths check it in the same statement as the read. */
    revision: integer('revision').notNull().default(1),
    policies: jsonb('policies').$type<{ path: string; capabilities: string[] }[]>().notNull().default([]),
    /** Workload identity: tokens of a trusted issuer that match one of these bindings log in without a secret. */
    federation: jsonb('federation')
      .$type<{ issuer: string; subject?: string | undefined; claims?: Record<string, string> | undefined }[]>()
      .notNull()
      .default([]),
    tokenTtlSeconds: integer('token_ttl_seconds'),
    disabled: boolean('disabled').notNull().default(false),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    secretRotatedAt: timestamp('secret_rotated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    /** The API's MAC over role, policies, federation bindings, secret hash, credential version, disabled, revision. */
    mac: text('mac'),
  },
  (t) => [index('identities_tenant_created_idx').on(t.tenantId, t.createdAt, t.id)],
);

/** Per-tenant data keys (DEKs), each wrapped by a master key that never enters the database. */
export const tenantKeys = coffer.table(
  'tenant_keys',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    version: integer('version').notNull(),
    wrappedKey: bytea('wrapped_key').notNull(),
    masterKeyId: text('master_key_id').notNull(),
    state: text('state', { enum: ['active', 'retiring', 'retired'] }).notNull(),
    createdAt: createdAt(),
    retiredAt: timestamp('retired_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.version] })],
);

/**
 * Append-only audit log. Each tenant's events form a hash chain:
 * hash = sha256(prev_hash || int8send(seq) || digest), digest = sha256(canonical event).
 * Kept without a foreign key to tenants: the record of what happened outlives the tenant.
 */
export const auditEvents = coffer.table(
  'audit_events',
  {
    id: bigint('id', { mode: 'number' }).notNull().generatedAlwaysAsIdentity(),
    tenantId: uuid('tenant_id').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true, mode: 'date' }).notNull(),
    actorId: uuid('actor_id'),
    actorName: text('actor_name'),
    action: text('action').notNull(),
    resource: text('resource'),
    version: integer('version'),
    outcome: text('outcome', { enum: ['allowed', 'denied', 'error'] }).notNull(),
    errorCode: text('error_code'),
    requestId: text('request_id'),
    sourceIp: text('source_ip'),
    userAgent: text('user_agent'),
    fingerprint: text('fingerprint'),
    details: jsonb('details').$type<Record<string, string | number | boolean | null>>(),
    digest: bytea('digest').notNull(),
    prevHash: bytea('prev_hash').notNull(),
    hash: bytea('hash').notNull(),
    /**
     * The master key whose per-tenant derived key made this event's link (an HMAC); null only for events written
     * before links were keyed (below the head's `keyed_from`), whose link is a plain SHA-256.
     */
    linkKeyId: text('link_key_id'),
  },
  // Each filter of the audit query has an index that leads with the tenant and ends in chain order (seq).
  // Indexes cost every audit insert, so outcome gets a partial one: only denials and errors are worth finding.
  (t) => [
    primaryKey({ name: 'audit_events_pkey', columns: [t.tenantId, t.seq] }),
    index('audit_events_time_idx').on(t.tenantId, t.occurredAt),
    index('audit_events_actor_idx').on(t.tenantId, t.actorId, t.seq),
    index('audit_events_action_idx').on(t.tenantId, t.action.op('text_pattern_ops'), t.seq),
    index('audit_events_resource_idx').on(t.tenantId, t.resource.op('text_pattern_ops'), t.seq),
    index('audit_events_not_allowed_idx').on(t.tenantId, t.seq).where(sql`${t.outcome} <> 'allowed'`),
  ],
);

/**
 * Signed checkpoints of each tenant's chain: HMAC-SHA256 of (tenant, seq, hash) under a key derived from a master
 * key the database never sees. History before a checkpoint cannot be rewritten without breaking its signature;
 * retention drops events behind one, so the remaining chain still verifies.
 */
export const auditCheckpoints = coffer.table(
  'audit_checkpoints',
  {
    tenantId: uuid('tenant_id').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    hash: bytea('hash').notNull(),
    mac: bytea('mac').notNull(),
    masterKeyId: text('master_key_id').notNull(),
    kind: text('kind', { enum: ['periodic', 'retention', 'verify'] }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.seq] })],
);

/**
 * How long a tenant's audit events are kept, out of the app role's reach: it may read the row, and change it only
 * through coffer.audit_set_retention, which holds the bounds and writes the change into the tenant's chain. No row:
 * the default of 400 days.
 */
export const auditRetention = coffer.table(
  'audit_retention',
  {
    tenantId: uuid('tenant_id')
      .primaryKey()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    days: integer('days').notNull(),
    updatedAt: updatedAt(),
  },
  (t) => [check('audit_retention_days_bounds', sql`${t.days} between 30 and 3650`)],
);

/** The head of each tenant's chain: the row writers lock to append, one tenant at a time. */
export const auditHeads = coffer.table('audit_heads', {
  tenantId: uuid('tenant_id').primaryKey(),
  seq: bigint('seq', { mode: 'number' }).notNull(),
  hash: bytea('hash').notNull(),
  updatedAt: updatedAt(),
  /** First seq whose link is keyed; events below it were written before links were keyed. */
  keyedFrom: bigint('keyed_from', { mode: 'number' }).notNull().default(1),
  /** Master key id of the key that signed the head (see `mac`). */
  keyId: text('key_id'),
  /** When the head was signed, to the millisecond (part of what `mac` covers). */
  signedAt: timestamp('signed_at', { withTimezone: true, mode: 'date' }),
  /** HMAC of (tenant, seq, hash, keyed_from, signed_at) under the tenant's link key: the head cannot be set by hand. */
  mac: bytea('mac'),
});

/**
 * Audit events written inside a change's transaction wait here, unchained, until the transaction commits: a
 * deferred trigger then links them into the tenant's chain and deletes the row (migration 0011). Always empty
 * outside an open transaction; the chain head is locked only for the commit itself.
 */
export const auditStaged = coffer.table('audit_staged', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  tenantId: uuid('tenant_id').notNull(),
  events: jsonb('events').notNull(),
});

export const secretKinds = ['sandbox', 'user', 'shared'] as const;

/**
 * A tenant's environments: the second coordinate of every secret. Each tenant has `default` (made with the tenant,
 * never deleted), where everything written before environments existed lives and where a request without `?env`
 * goes. A protected environment takes writes only from admins and by promotion.
 */
export const environments = coffer.table(
  'environments',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    slug: text('slug').notNull(),
    name: text('name').notNull(),
    protected: boolean('protected').notNull().default(false),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ name: 'environments_pkey', columns: [t.tenantId, t.slug] })],
);

/** A secret's identity and metadata. Values live in secret_versions, encrypted. */
export const secrets = coffer.table(
  'secrets',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    environment: text('environment').notNull().default('default'),
    kind: text('kind', { enum: secretKinds }).notNull(),
    owner: text('owner').notNull(),
    name: text('name').notNull(),
    currentVersion: integer('current_version').notNull(),
    description: text('description'),
    tags: jsonb('tags').$type<string[]>().notNull().default([]),
    format: jsonb('format').$type<unknown>(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    createdBy: uuid('created_by'),
    updatedBy: uuid('updated_by'),
    /** Soft delete: hidden from reads, lists and bundles; restorable within the recovery window. */
    deletedAt: timestamp('deleted_at', { withTimezone: true, mode: 'date' }),
    deletedBy: uuid('deleted_by'),
    /** Rotation policy: every `rotationIntervalDays`, by `generator` when set; old versions served `graceHours`. */
    rotationIntervalDays: integer('rotation_interval_days'),
    rotationGraceHours: integer('rotation_grace_hours'),
    generator: jsonb('generator').$type<{ length: number; charset: string; prefix?: string }>(),
    lastRotatedAt: timestamp('last_rotated_at', { withTimezone: true, mode: 'date' }),
    nextRotationAt: timestamp('next_rotation_at', { withTimezone: true, mode: 'date' }),
    /** The API's MAC over path, current version, expiry and deletion (row-macs.ts): coffer_app cannot forge it. */
    mac: text('mac'),
    /** What deployments do with it: its class, and per tier an action that overrides the class (contracts' Strategy). */
    class: text('class', { enum: ['infrastructure', 'service', 'user'] }),
    strategy: jsonb('strategy').$type<Record<string, unknown>>(),
    /** Who owns it, for the inventory. */
    ownerTeam: text('owner_team'),
    contact: text('contact'),
  },
  (t) => [
    unique('secrets_path_key').on(t.tenantId, t.environment, t.kind, t.owner, t.name),
    // What secret_versions' foreign key names: a version belongs to a secret of its own tenant.
    unique('secrets_tenant_id_key').on(t.tenantId, t.id),
    foreignKey({
      name: 'secrets_environment_fk',
      columns: [t.tenantId, t.environment],
      foreignColumns: [environments.tenantId, environments.slug],
    }),
    index('secrets_next_rotation_idx').on(t.tenantId, t.nextRotationAt),
    index('secrets_deleted_idx').on(t.deletedAt),
  ],
);

/**
 * One row per version. `ciphertext` is pgp_sym_encrypt output (AES-256) under the tenant data key `dek_version`;
 * its plaintext starts with a binding line naming tenant, secret and version, so a ciphertext moved to another
 * row fails as an integrity error. Destroying a version sets ciphertext to null.
 */
export const secretVersions = coffer.table(
  'secret_versions',
  {
    tenantId: uuid('tenant_id').notNull(),
    secretId: uuid('secret_id').notNull(),
    version: integer('version').notNull(),
    ciphertext: bytea('ciphertext'),
    dekVersion: integer('dek_version').notNull(),
    createdAt: createdAt(),
    createdBy: uuid('created_by'),
    destroyedAt: timestamp('destroyed_at', { withTimezone: true, mode: 'date' }),
    /** Set when a rotation supersedes this version: served until then (the grace period), 410 after. */
    servedUntil: timestamp('served_until', { withTimezone: true, mode: 'date' }),
    /** Keyed fingerprint of the value (the tenant's fingerprint key): what an environment diff compares. */
    fingerprint: text('fingerprint'),
    /** The API's MAC over the version's secret, number and grace period (row-macs.ts). */
    mac: text('mac'),
    /** Revoked: never served again (410), whatever served_until says. */
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
    revokedBy: uuid('revoked_by'),
    /** The deployment this version was generated for (service secrets are made fresh for each deployment). */
    deploymentId: uuid('deployment_id'),
  },
  (t) => [
    primaryKey({ columns: [t.secretId, t.version] }),
    // Its secret, in its own tenant: one lookup does both (a trigger checked the tenant, at ~40 µs per version).
    foreignKey({
      name: 'secret_versions_secret_fk',
      columns: [t.tenantId, t.secretId],
      foreignColumns: [secrets.tenantId, secrets.id],
    }).onDelete('cascade'),
    index('secret_versions_tenant_dek_idx').on(t.tenantId, t.dekVersion),
    index('secret_versions_deployment_idx').on(t.tenantId, t.deploymentId).where(sql`${t.deploymentId} is not null`),
  ],
);

/**
 * When each secret with a rotation policy is next due. Only ids and times (nothing secret), so the scheduler can
 * find due work across tenants in the platform scope and claim it with SKIP LOCKED.
 */
export const rotationSchedule = coffer.table(
  'rotation_schedule',
  {
    secretId: uuid('secret_id')
      .primaryKey()
      .references(() => secrets.id, { onDelete: 'cascade' }),
    tenantId: uuid('tenant_id').notNull(),
    dueAt: timestamp('due_at', { withTimezone: true, mode: 'date' }).notNull(),
    /** The scheduler may rotate it itself (the secret has a generator). */
    automatic: boolean('automatic').notNull(),
  },
  (t) => [index('rotation_schedule_due_idx').on(t.dueAt).where(sql`${t.automatic}`)],
);

export const webhooks = coffer.table(
  'webhooks',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    events: jsonb('events').$type<string[]>().notNull(),
    /** The signing secret, wrapped by the master key (it signs deliveries; the receiver holds it too). */
    secretWrapped: bytea('secret_wrapped').notNull(),
    secretMasterKeyId: text('secret_master_key_id').notNull(),
    disabled: boolean('disabled').notNull().default(false),
    createdAt: createdAt(),
    createdBy: uuid('created_by'),
  },
  (t) => [index('webhooks_tenant_idx').on(t.tenantId)],
);

/** Every delivery attempt's state: retried with backoff until delivered or out of attempts. */
export const webhookDeliveries = coffer.table(
  'webhook_deliveries',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id').notNull(),
    webhookId: uuid('webhook_id')
      .notNull()
      .references(() => webhooks.id, { onDelete: 'cascade' }),
    event: text('event').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    status: text('status', { enum: ['pending', 'delivered', 'failed'] }).notNull(),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, mode: 'date' }).notNull(),
    lastStatusCode: integer('last_status_code'),
    lastError: text('last_error'),
    createdAt: createdAt(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    index('webhook_deliveries_due_idx').on(t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    index('webhook_deliveries_webhook_idx').on(t.tenantId, t.webhookId, t.createdAt),
  ],
);

/**
 * Live API replicas, each refreshing its row every few seconds: how many share the per-identity rate limit.
 * Platform data (no tenant's), under the same forced row-level security as everything else.
 */
export const replicas = coffer.table('replicas', {
  id: uuid('id').primaryKey(),
  tenantId: uuid('tenant_id').notNull(),
  seenAt: timestamp('seen_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/** OIDC/JWT issuers a tenant trusts for workload login (Kubernetes, GitHub Actions, GitLab, Fly.io, any OIDC). */
export const trustedIssuers = coffer.table(
  'trusted_issuers',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    issuer: text('issuer').notNull(),
    /** `{"discovery": true}`, `{"uri": …, "bearerTokenFile"?: …}` or `{"keys": [JWK…]}`. */
    jwks: jsonb('jwks').$type<Record<string, unknown>>().notNull(),
    audiences: text('audiences').array().notNull(),
    algorithms: text('algorithms').array().notNull(),
    maxTokenAgeSeconds: integer('max_token_age_seconds').notNull(),
    clockSkewSeconds: integer('clock_skew_seconds').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    /** The API's MAC over everything a login verifies against: issuer, keys, audiences, algorithms, age, skew. */
    mac: text('mac'),
  },
  (t) => [
    unique('trusted_issuers_tenant_name_key').on(t.tenantId, t.name),
    unique('trusted_issuers_tenant_issuer_key').on(t.tenantId, t.issuer),
  ],
);

/** Subject tokens already exchanged, kept until they expire: a leaked token cannot be replayed. */
export const federationReplays = coffer.table(
  'federation_replays',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    issuerId: uuid('issuer_id')
      .notNull()
      .references(() => trustedIssuers.id, { onDelete: 'cascade' }),
    /** sha256 of the token's `jti`, or of the whole token when it has none. */
    tokenHash: bytea('token_hash').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.issuerId, t.tokenHash] }),
    index('federation_replays_expiry_idx').on(t.tenantId, t.expiresAt),
  ],
);

/**
 * Rows that predate the row MACs (the `row_macs` migration lists them), to be MACed once by the API at start
 * (row-mac-backfill.ts). coffer_app may read and delete entries but never add one, so it cannot get a row it
 * edited blessed later: a row with no MAC that is not listed here fails its check. The `deployment_macs` migration
 * lists the deployments, and the secrets and versions whose MAC was made before it covered their deployment columns
 * (those are MACed again only if their old MAC still verifies).
 */
export const rowMacBackfill = coffer.table(
  'row_mac_backfill',
  {
    tenantId: uuid('tenant_id').notNull(),
    rowKind: text('row_kind', { enum: ['secret', 'version', 'identity', 'issuer', 'deployment'] }).notNull(),
    rowId: uuid('row_id').notNull(),
    version: integer('version').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.rowKind, t.rowId, t.version] })],
);

/**
 * People's sessions: a refresh credential, bound to a machine key, that renews short access tokens until an
 * absolute end. The refresh credential is stored only as a SHA-256 (it is 256 random bits, so a slow hash adds
 * nothing) and replaced at every refresh; `generation` counts the replacements, so a credential of an earlier
 * generation presented with a valid signature is a reuse and ends the session.
 */
export const sessions = coffer.table(
  'sessions',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    identityId: uuid('identity_id')
      .notNull()
      .references(() => identities.id, { onDelete: 'cascade' }),
    name: text('name'),
    method: text('method').$type<'client_secret' | 'federation'>().notNull(),
    /** The machine's Ed25519 public key, 32 raw bytes: every refresh is signed by its private key. */
    publicKey: bytea('public_key').notNull(),
    refreshHash: bytea('refresh_hash').notNull(),
    generation: integer('generation').notNull().default(1),
    /** The identity's credential version at login: a new client secret or a disable moves it, ending the session. */
    credentialVersion: integer('credential_version').notNull(),
    /** A federated login's verified claims that policy templates use, signed into every renewed token. */
    claims: jsonb('claims').$type<Record<string, string>>(),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    lastRefreshedAt: timestamp('last_refreshed_at', { withTimezone: true, mode: 'date' }),
    lastSourceIp: text('last_source_ip'),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
    revokedReason: text('revoked_reason').$type<'revoked' | 'refresh_reuse' | 'identity_changed'>(),
  },
  (t) => [index('sessions_identity_idx').on(t.tenantId, t.identityId, t.createdAt)],
);

/**
 * One-time links through which a person supplies one secret's value. Only the SHA-256 of the link's token is kept:
 * the token is global random (32 bytes), so a lookup by its hash finds at most one link, of one tenant, and the app
 * role reads it without a tenant set only through coffer.intake_for_token (policy intake_lookup). A link acts for
 * its creator: the identity, its credential version and (federated) the claims its policies were filled from.
 */
export const intakeLinks = coffer.table(
  'intake_links',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    tokenHash: bytea('token_hash').notNull().unique('intake_links_token_hash_key'),
    environment: text('environment').notNull(),
    kind: text('kind', { enum: secretKinds }).notNull(),
    owner: text('owner').notNull(),
    name: text('name').notNull(),
    format: jsonb('format').$type<unknown>(),
    label: text('label').notNull(),
    help: text('help'),
    /** The secret's version when the link was made (0: it did not exist): the write is compare-and-set on it. */
    expectedVersion: integer('expected_version').notNull(),
    createdBy: uuid('created_by').notNull(),
    creatorCredentialVersion: integer('creator_credential_version').notNull(),
    creatorClaims: jsonb('creator_claims').$type<Record<string, string>>(),
    state: text('state', { enum: ['pending', 'received', 'conflict', 'revoked'] })
      .notNull()
      .default('pending'),
    receivedVersion: integer('received_version'),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    closedAt: timestamp('closed_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    // Removing an environment (only ever an empty one) removes the links into it.
    foreignKey({
      name: 'intake_links_environment_fk',
      columns: [t.tenantId, t.environment],
      foreignColumns: [environments.tenantId, environments.slug],
    }).onDelete('cascade'),
    index('intake_links_tenant_created_idx').on(t.tenantId, t.createdAt),
  ],
);

/**
 * A deployment: an environment, a tier and the bundles it is made of, planned secret by secret. Its environment and
 * secrets are kept by name, without foreign keys: the record of what was deployed outlives them, as audit events do.
 */
export const deployments = coffer.table(
  'deployments',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    environment: text('environment').notNull(),
    tier: text('tier').notNull(),
    bundles: jsonb('bundles').$type<string[]>().notNull(),
    createdAt: createdAt(),
    createdBy: uuid('created_by'),
    createdByName: text('created_by_name'),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
    /** What the revocation did (contracts' DeploymentRevocation), once it happened. */
    revocation: jsonb('revocation').$type<Record<string, unknown>>(),
    /** The API's MAC over the deployment and its plan (row-macs.ts): what it receives, where, and whether revoked. */
    mac: text('mac'),
  },
  (t) => [
    // Ids are UUIDv7, in creation order: the listing is newest first by id.
    index('deployments_tenant_idx').on(t.tenantId, t.id),
    index('deployments_tenant_env_idx').on(t.tenantId, t.environment, t.id),
  ],
);

/** One secret of a deployment's plan: what the deployment does with it, and the version it was planned on. */
export const deploymentItems = coffer.table(
  'deployment_items',
  {
    tenantId: uuid('tenant_id').notNull(),
    deploymentId: uuid('deployment_id')
      .notNull()
      .references(() => deployments.id, { onDelete: 'cascade' }),
    position: integer('position').notNull(),
    secretId: uuid('secret_id').notNull(),
    kind: text('kind', { enum: secretKinds }).notNull(),
    owner: text('owner').notNull(),
    name: text('name').notNull(),
    action: text('action', { enum: ['strip', 'generate', 'prompt', 'inject'] }).notNull(),
    reason: text('reason').notNull(),
    class: text('class', { enum: ['infrastructure', 'service', 'user'] }),
    /** generate: the version made for the deployment; inject: the current version when planned; else null. */
    version: integer('version'),
    prompt: jsonb('prompt').$type<Record<string, unknown>>(),
  },
  (t) => [
    primaryKey({ name: 'deployment_items_pkey', columns: [t.deploymentId, t.position] }),
    index('deployment_items_secret_idx').on(t.tenantId, t.secretId),
  ],
);

/** What a deployment received: one row per (secret, version, identity), with the first and last time and a count. */
export const deploymentReceipts = coffer.table(
  'deployment_receipts',
  {
    tenantId: uuid('tenant_id').notNull(),
    deploymentId: uuid('deployment_id')
      .notNull()
      .references(() => deployments.id, { onDelete: 'cascade' }),
    secretId: uuid('secret_id').notNull(),
    path: text('path').notNull(),
    version: integer('version').notNull(),
    action: text('action', { enum: ['strip', 'generate', 'prompt', 'inject'] }).notNull(),
    via: text('via', { enum: ['created', 'run'] }).notNull(),
    identityId: uuid('identity_id').notNull(),
    identityName: text('identity_name'),
    firstAt: timestamp('first_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    lastAt: timestamp('last_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    reads: integer('reads').notNull().default(1),
  },
  (t) => [
    primaryKey({
      name: 'deployment_receipts_pkey',
      columns: [t.deploymentId, t.secretId, t.version, t.identityId, t.via],
    }),
  ],
);

/**
 * Dynamic-credential backends: how to make and drop short-lived roles in a tenant's database. The admin connection
 * URL is not here: `connection_secret` names the Coffer secret that holds it, read when a role is made or dropped.
 */
export const dynamicBackends = coffer.table(
  'dynamic_backends',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    engine: text('engine', { enum: ['postgres'] }).notNull(),
    connectionSecret: text('connection_secret').notNull(),
    creationStatements: jsonb('creation_statements').$type<string[]>().notNull(),
    revocationStatements: jsonb('revocation_statements').$type<string[]>().notNull(),
    renewStatements: jsonb('renew_statements').$type<string[]>().notNull(),
    defaultTtlSeconds: integer('default_ttl_seconds').notNull(),
    maxTtlSeconds: integer('max_ttl_seconds').notNull(),
    usernameTemplate: text('username_template').notNull(),
    /**
     * HMAC of the row under a key derived from the tenant's fingerprint key (which the database never holds): the
     * statements are SQL run as the target's admin, so a row changed outside Coffer is refused, never run.
     */
    seal: bytea('seal').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    createdBy: uuid('created_by'),
  },
  (t) => [unique('dynamic_backends_tenant_name_key').on(t.tenantId, t.name)],
);

/**
 * One row per lease: the role's name and where the lease is in its life, never its password. Revocation is a state
 * machine claimed with a token (`claim_token`, valid until `next_attempt_at`), so that across replicas and crashes
 * each lease is revoked exactly once; a lease that cannot be revoked stays here as `revoke_failed`.
 * `deployment_id` names the deployment a lease was made for (no foreign key, as for identities): revoking the
 * deployment revokes the lease.
 */
export const leases = coffer.table(
  'leases',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    /** Null once the backend is deleted (only possible when all its leases are revoked): the history stays. */
    backendId: uuid('backend_id').references(() => dynamicBackends.id, { onDelete: 'set null' }),
    backendName: text('backend_name').notNull(),
    /** No foreign key: a deleted identity's leases stay in the inventory (revoked). */
    identityId: uuid('identity_id').notNull(),
    identityName: text('identity_name').notNull(),
    deploymentId: uuid('deployment_id'),
    username: text('username').notNull(),
    /** HMAC of (tenant, lease, backend, username), as for backends: a role named by a changed row is never dropped. */
    seal: bytea('seal').notNull(),
    state: text('state', { enum: ['creating', 'active', 'revoking', 'revoked', 'revoke_failed'] }).notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    maxExpiresAt: timestamp('max_expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    renewedAt: timestamp('renewed_at', { withTimezone: true, mode: 'date' }),
    revokeReason: text('revoke_reason', {
      enum: [
        'expired',
        'revoked',
        'identity_revoked',
        'identity_disabled',
        'identity_deleted',
        'deployment_revoked',
        'creation_failed',
      ],
    }),
    revokeRequestedAt: timestamp('revoke_requested_at', { withTimezone: true, mode: 'date' }),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
    revokeAttempts: integer('revoke_attempts').notNull().default(0),
    /** When revocation is next tried; while a worker holds the claim, when its claim lapses. */
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, mode: 'date' }),
    claimToken: uuid('claim_token'),
    lastError: text('last_error'),
  },
  (t) => [
    unique('leases_tenant_backend_username_key').on(t.tenantId, t.backendId, t.username),
    index('leases_tenant_identity_idx').on(t.tenantId, t.identityId),
    index('leases_tenant_backend_idx').on(t.tenantId, t.backendId, t.state),
    // What the expiry job scans, across tenants: live leases by expiry, leases being revoked by next attempt.
    index('leases_expiry_idx').on(t.expiresAt).where(sql`${t.state} = 'active'`),
    index('leases_revoke_due_idx')
      .on(t.nextAttemptAt)
      .where(sql`${t.state} in ('creating', 'revoking', 'revoke_failed')`),
  ],
);
