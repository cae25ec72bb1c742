import { z } from 'zod';
import {
  AuditExportQuery,
  AuditFollowQuery,
  AuditPage,
  AuditQuery,
  AuditSummary,
  AuditSummaryQuery,
  AuditVerifyQuery,
  AuditVerifyResult,
} from './audit.ts';
import { JwkSet, TokenRequest, TokenResponse, WhoAmI } from './auth.ts';
import { IdParams, PageQuery, Uuid } from './common.ts';
import { ConsumersQuery, RevokedVersion, RevokeVersionRequest, RotationStatus, SecretConsumers } from './consumers.ts';
import { DataKeys, RewrapResponse, RotateDataKeyResponse, SystemKeys } from './data-keys.ts';
import {
  CreateDeploymentRequest,
  CreatedDeployment,
  Deployment,
  DeploymentPage,
  DeploymentParams,
  DeploymentPlan,
  ListDeploymentsQuery,
  PlanDeploymentRequest,
  RevokeDeploymentRequest,
  RevokedDeployment,
} from './deployments.ts';
import { EnvironmentSlug, EnvQuery } from './environment-slug.ts';
import {
  CreateEnvironmentRequest,
  Environment,
  EnvironmentDiff,
  EnvironmentDiffQuery,
  EnvironmentList,
  EnvironmentParams,
  PromoteRequest,
  PromoteResponse,
  UpdateEnvironmentRequest,
} from './environments.ts';
import { Health, Readiness } from './health.ts';
import {
  CreateIdentityRequest,
  CreateIdentityResponse,
  CreatePlatformAdminRequest,
  CreatePlatformAdminResponse,
  Identity,
  IdentityIdParams,
  IdentityPage,
  PlatformAdmin,
  PlatformAdminList,
  RotateClientSecretResponse,
  UpdateIdentityRequest,
  UpdatePlatformAdminRequest,
} from './identities.ts';
import { InventoryPage, InventoryQuery } from './inventory.ts';
import { RotationDue, RotationDueQuery, RotationLog, RotationLogQuery } from './rotation.ts';
import {
  Bundle,
  BundleWriteRequest,
  BundleWriteResponse,
  DeleteSecretQuery,
  DestroyVersionParams,
  GetSecretQuery,
  ListSecretsQuery,
  OwnerParams,
  PatchSecretRequest,
  PutSecretRequest,
  RotateSecretRequest,
  SecretMetadata,
  SecretPage,
  SecretPathParams,
  SecretVersions,
  SecretWithValue,
} from './secrets.ts';
import {
  CreateTenantRequest,
  CreateTenantResponse,
  Tenant,
  TenantIdParams,
  TenantPage,
  UpdateTenantRequest,
} from './tenants.ts';
import { CreateIssuerRequest, TrustedIssuer, TrustedIssuerList, UpdateIssuerRequest } from './trust.ts';
import { CreateWebhookRequest, CreateWebhookResponse, WebhookDeliveries, WebhookList } from './webhooks.ts';

/**
 * What a route does, in the vocabulary the authorizer and the audit log share.
 * Every authenticated route names exactly one action; the server refuses to start a route that names none.
 */
export const Action = z.enum([
  'auth.whoami',
  'tenants.create',
  'tenants.list',
  'tenants.read',
  'tenants.update',
  'identities.create',
  'identities.list',
  'identities.read',
  'identities.update',
  'identities.delete',
  'identities.rotate_secret',
  'secrets.read',
  'secrets.write',
  'secrets.list',
  'secrets.versions',
  'secrets.delete',
  'secrets.restore',
  'secrets.destroy',
  'bundles.read',
  'bundles.write',
  'secrets.update',
  'secrets.rotate',
  'rotation.due',
  'rotation.log',
  'keys.read',
  'keys.rotate',
  'system.keys.read',
  'system.keys.rewrap',
  'platform.admins.create',
  'platform.admins.list',
  'platform.admins.update',
  'platform.admins.rotate_secret',
  'webhooks.create',
  'webhooks.list',
  'webhooks.delete',
  'webhooks.deliveries',
  'audit.query',
  'audit.export',
  'audit.follow',
  'audit.verify',
  'audit.summary',
  'trust.create',
  'trust.list',
  'trust.read',
  'trust.update',
  'trust.delete',
  'environments.list',
  'environments.create',
  'environments.update',
  'environments.delete',
  'environments.diff',
  'environments.promote',
  'inventory.read',
  'deployments.plan',
  'deployments.create',
  'deployments.list',
  'deployments.read',
  'deployments.revoke',
  'secrets.consumers',
  'secrets.rotation_status',
  'secrets.revoke',
]);
export type Action = z.infer<typeof Action>;

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteDef {
  readonly method: HttpMethod;
  /** Fastify-style path: `/v1/identities/:id`. */
  readonly path: string;
  readonly summary: string;
  readonly tag: string;
  /** `null` only for routes anyone may call (health, token login). */
  readonly action: Action | null;
  readonly params?: z.ZodObject;
  readonly query?: z.ZodObject;
  readonly body?: z.ZodType;
  /** Success responses by status; `null` means no body. */
  readonly success: { readonly [status: number]: z.ZodType | null };
  /** Set when the success body is not JSON but a stream of these media types. */
  readonly produces?: readonly string[];
  /**
   * The route's one SQL statement re-checks the identity's revision and refuses when it moved, so authentication
   * may start from a cached identity. Set it only where that holds: a test disables an identity whose token is
   * cached and expects each flagged route to refuse it on the very next request.
   */
  readonly identityRecheckedInSql?: boolean;
  /**
   * Which budget the route draws on. Authenticated routes share their identity's requests per second; `login` is
   * counted per source address, before any credential is checked.
   */
  readonly rateLimit?: 'login';
}

const route = <const R extends RouteDef>(r: R): R => r;

/** `?env` of a bundle read, and the deployment it reads for (`coffer run --deployment`). */
const BundleQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent'),
  deployment: Uuid.optional().describe(
    'Read for this deployment: only what its plan injects (current versions) and generated (its own versions); recorded on the deployment',
  ),
});

export const routes = {
  health: route({
    method: 'GET',
    path: '/healthz',
    summary: 'Liveness: the process is up',
    tag: 'service',
    action: null,
    success: { 200: Health },
  }),
  ready: route({
    method: 'GET',
    path: '/readyz',
    summary: 'Readiness: database reachable, migrations current, keyring usable',
    tag: 'service',
    action: null,
    success: { 200: Readiness, 503: Readiness },
  }),
  jwks: route({
    method: 'GET',
    path: '/.well-known/jwks.json',
    summary: 'Public keys that verify Coffer access tokens (JWKS)',
    tag: 'auth',
    action: null,
    success: { 200: JwkSet },
  }),
  issueToken: route({
    method: 'POST',
    path: '/v1/auth/token',
    summary:
      'Exchange client credentials, or a workload token of a trusted issuer (federation), for a short-lived access token',
    tag: 'auth',
    action: null,
    rateLimit: 'login',
    body: TokenRequest,
    success: { 200: TokenResponse },
  }),
  whoami: route({
    method: 'GET',
    path: '/v1/auth/whoami',
    summary: "The caller's identity, tenant, role, policies and token expiry",
    tag: 'auth',
    action: 'auth.whoami',
    success: { 200: WhoAmI },
  }),
  createTenant: route({
    method: 'POST',
    path: '/v1/tenants',
    summary: 'Create a tenant and its first admin identity (platform admin)',
    tag: 'tenants',
    action: 'tenants.create',
    body: CreateTenantRequest,
    success: { 201: CreateTenantResponse },
  }),
  listTenants: route({
    method: 'GET',
    path: '/v1/tenants',
    summary: 'List tenants (platform admin)',
    tag: 'tenants',
    action: 'tenants.list',
    query: PageQuery,
    success: { 200: TenantPage },
  }),
  getTenant: route({
    method: 'GET',
    path: '/v1/tenants/:id',
    summary: 'One tenant (platform admin)',
    tag: 'tenants',
    action: 'tenants.read',
    params: TenantIdParams,
    success: { 200: Tenant },
  }),
  updateTenant: route({
    method: 'PATCH',
    path: '/v1/tenants/:id',
    summary: "Rename a tenant or set its identities' request rate limit (platform admin)",
    tag: 'tenants',
    action: 'tenants.update',
    params: TenantIdParams,
    body: UpdateTenantRequest,
    success: { 200: Tenant },
  }),
  createIdentity: route({
    method: 'POST',
    path: '/v1/identities',
    summary: 'Create a machine identity in the caller’s tenant (tenant admin)',
    tag: 'identities',
    action: 'identities.create',
    body: CreateIdentityRequest,
    success: { 201: CreateIdentityResponse },
  }),
  listIdentities: route({
    method: 'GET',
    path: '/v1/identities',
    summary: 'List the tenant’s identities (tenant admin)',
    tag: 'identities',
    action: 'identities.list',
    query: PageQuery,
    success: { 200: IdentityPage },
  }),
  getIdentity: route({
    method: 'GET',
    path: '/v1/identities/:id',
    summary: 'One identity (tenant admin)',
    tag: 'identities',
    action: 'identities.read',
    params: IdentityIdParams,
    success: { 200: Identity },
  }),
  updateIdentity: route({
    method: 'PATCH',
    path: '/v1/identities/:id',
    summary: 'Rename, re-scope, disable or change the token lifetime of an identity (tenant admin)',
    tag: 'identities',
    action: 'identities.update',
    params: IdentityIdParams,
    body: UpdateIdentityRequest,
    success: { 200: Identity },
  }),
  deleteIdentity: route({
    method: 'DELETE',
    path: '/v1/identities/:id',
    summary: 'Delete an identity; its tokens stop working at once (tenant admin)',
    tag: 'identities',
    action: 'identities.delete',
    params: IdentityIdParams,
    success: { 204: null },
  }),
  rotateIdentitySecret: route({
    method: 'POST',
    path: '/v1/identities/:id/secret',
    summary: 'Issue a new client secret; the old one and every token issued under it stop working (tenant admin)',
    tag: 'identities',
    action: 'identities.rotate_secret',
    params: IdentityIdParams,
    success: { 200: RotateClientSecretResponse },
  }),
  putSecret: route({
    method: 'PUT',
    path: '/v1/secrets/:kind/:owner/:name',
    summary: 'Create a secret (201) or add a new version (200); compare-and-set with ifVersion',
    tag: 'secrets',
    action: 'secrets.write',
    params: SecretPathParams,
    query: EnvQuery,
    body: PutSecretRequest,
    success: { 200: SecretMetadata, 201: SecretMetadata },
  }),
  getSecret: route({
    method: 'GET',
    path: '/v1/secrets/:kind/:owner/:name',
    summary: 'The value of the current (or a given) version',
    tag: 'secrets',
    action: 'secrets.read',
    identityRecheckedInSql: true,
    params: SecretPathParams,
    query: GetSecretQuery,
    success: { 200: SecretWithValue },
  }),
  listSecretVersions: route({
    method: 'GET',
    path: '/v1/secrets/:kind/:owner/:name/versions',
    summary: 'Versions of a secret (metadata only, never values)',
    tag: 'secrets',
    action: 'secrets.versions',
    params: SecretPathParams,
    query: EnvQuery,
    success: { 200: SecretVersions },
  }),
  listSecrets: route({
    method: 'GET',
    path: '/v1/secrets',
    summary: 'List secrets (metadata only), by kind, owner and name prefix, with keyset pagination',
    tag: 'secrets',
    action: 'secrets.list',
    query: ListSecretsQuery,
    success: { 200: SecretPage },
  }),
  deleteSecret: route({
    method: 'DELETE',
    path: '/v1/secrets/:kind/:owner/:name',
    summary: 'Soft-delete a secret (restorable for the recovery window), or erase it with ?purge=true',
    tag: 'secrets',
    action: 'secrets.delete',
    params: SecretPathParams,
    query: DeleteSecretQuery,
    success: { 204: null },
  }),
  restoreSecret: route({
    method: 'POST',
    path: '/v1/secrets/:kind/:owner/:name/restore',
    summary: 'Undo a soft delete within the recovery window',
    tag: 'secrets',
    action: 'secrets.restore',
    params: SecretPathParams,
    query: EnvQuery,
    success: { 200: SecretMetadata },
  }),
  destroySecretVersion: route({
    method: 'POST',
    path: '/v1/secrets/:kind/:owner/:name/versions/:version/destroy',
    summary: "Erase one version's ciphertext for good (not the current version)",
    tag: 'secrets',
    action: 'secrets.destroy',
    params: DestroyVersionParams,
    query: EnvQuery,
    success: { 204: null },
  }),
  patchSecret: route({
    method: 'PATCH',
    path: '/v1/secrets/:kind/:owner/:name',
    summary: 'Change metadata only (description, tags, format, rotation, expiresAt): no new version',
    tag: 'secrets',
    action: 'secrets.update',
    params: SecretPathParams,
    query: EnvQuery,
    body: PatchSecretRequest,
    success: { 200: SecretMetadata },
  }),
  rotateSecret: route({
    method: 'POST',
    path: '/v1/secrets/:kind/:owner/:name/rotate',
    summary: "Make a new current version from the given value or the secret's generator",
    tag: 'rotation',
    action: 'secrets.rotate',
    params: SecretPathParams,
    query: EnvQuery,
    body: RotateSecretRequest.nullish(),
    success: { 200: SecretMetadata },
  }),
  rotationDue: route({
    method: 'GET',
    path: '/v1/rotation/due',
    summary: 'Secrets overdue for rotation or due within a window',
    tag: 'rotation',
    action: 'rotation.due',
    query: RotationDueQuery,
    success: { 200: RotationDue },
  }),
  rotationLog: route({
    method: 'GET',
    path: '/v1/rotation/log',
    summary: 'Every rotation, manual or scheduled, succeeded or failed, and every revocation (newest first)',
    tag: 'rotation',
    action: 'rotation.log',
    query: RotationLogQuery,
    success: { 200: RotationLog },
  }),
  listDataKeys: route({
    method: 'GET',
    path: '/v1/keys',
    summary: "The tenant's data keys: state and how many ciphertexts each still seals",
    tag: 'keys',
    action: 'keys.read',
    success: { 200: DataKeys },
  }),
  rotateDataKey: route({
    method: 'POST',
    path: '/v1/keys/rotate',
    summary: 'A new data key for new writes at once; older versions are re-encrypted in the background',
    tag: 'keys',
    action: 'keys.rotate',
    success: { 202: RotateDataKeyResponse },
  }),
  systemKeys: route({
    method: 'GET',
    path: '/v1/system/keys',
    summary: 'Which master keys still wrap or sign something (platform admin)',
    tag: 'system',
    action: 'system.keys.read',
    success: { 200: SystemKeys },
  }),
  rewrapMasterKey: route({
    method: 'POST',
    path: '/v1/system/master-key/rewrap',
    summary: 'Re-wrap every data key under the active master key (no value re-encrypted); idempotent, resumable',
    tag: 'system',
    action: 'system.keys.rewrap',
    success: { 200: RewrapResponse },
  }),
  createPlatformAdmin: route({
    method: 'POST',
    path: '/v1/platform/admins',
    summary: 'Create another platform admin (platform admin); its client secret is shown once',
    tag: 'system',
    action: 'platform.admins.create',
    body: CreatePlatformAdminRequest,
    success: { 201: CreatePlatformAdminResponse },
  }),
  listPlatformAdmins: route({
    method: 'GET',
    path: '/v1/platform/admins',
    summary: 'The platform admins (platform admin)',
    tag: 'system',
    action: 'platform.admins.list',
    success: { 200: PlatformAdminList },
  }),
  updatePlatformAdmin: route({
    method: 'PATCH',
    path: '/v1/platform/admins/:id',
    summary: 'Disable or enable a platform admin (platform admin); the last enabled one cannot be disabled (409)',
    tag: 'system',
    action: 'platform.admins.update',
    params: IdentityIdParams,
    body: UpdatePlatformAdminRequest,
    success: { 200: PlatformAdmin },
  }),
  rotatePlatformAdminSecret: route({
    method: 'POST',
    path: '/v1/platform/admins/:id/rotate-secret',
    summary: "Replace a platform admin's client secret, its own included (platform admin); old secret and tokens stop",
    tag: 'system',
    action: 'platform.admins.rotate_secret',
    params: IdentityIdParams,
    success: { 200: RotateClientSecretResponse },
  }),
  createWebhook: route({
    method: 'POST',
    path: '/v1/webhooks',
    summary: 'Register a webhook; deliveries are signed with HMAC-SHA256 and retried with backoff',
    tag: 'webhooks',
    action: 'webhooks.create',
    body: CreateWebhookRequest,
    success: { 201: CreateWebhookResponse },
  }),
  createIssuer: route({
    method: 'POST',
    path: '/v1/trust/issuers',
    summary: 'Trust an OIDC/JWT issuer for workload login (Kubernetes, GitHub Actions, GitLab, Fly.io, any OIDC)',
    tag: 'trust',
    action: 'trust.create',
    body: CreateIssuerRequest,
    success: { 201: TrustedIssuer },
  }),
  listIssuers: route({
    method: 'GET',
    path: '/v1/trust/issuers',
    summary: 'The issuers this tenant trusts',
    tag: 'trust',
    action: 'trust.list',
    success: { 200: TrustedIssuerList },
  }),
  getIssuer: route({
    method: 'GET',
    path: '/v1/trust/issuers/:id',
    summary: 'One trusted issuer',
    tag: 'trust',
    action: 'trust.read',
    params: IdParams,
    success: { 200: TrustedIssuer },
  }),
  updateIssuer: route({
    method: 'PATCH',
    path: '/v1/trust/issuers/:id',
    summary: 'Change a trusted issuer’s keys, audiences, algorithms or limits',
    tag: 'trust',
    action: 'trust.update',
    params: IdParams,
    body: UpdateIssuerRequest,
    success: { 200: TrustedIssuer },
  }),
  deleteIssuer: route({
    method: 'DELETE',
    path: '/v1/trust/issuers/:id',
    summary: 'Stop trusting an issuer (refused while an identity is bound to it)',
    tag: 'trust',
    action: 'trust.delete',
    params: IdParams,
    success: { 204: null },
  }),
  listWebhooks: route({
    method: 'GET',
    path: '/v1/webhooks',
    summary: "The tenant's webhooks",
    tag: 'webhooks',
    action: 'webhooks.list',
    success: { 200: WebhookList },
  }),
  deleteWebhook: route({
    method: 'DELETE',
    path: '/v1/webhooks/:id',
    summary: 'Remove a webhook and its pending deliveries',
    tag: 'webhooks',
    action: 'webhooks.delete',
    params: IdParams,
    success: { 204: null },
  }),
  webhookDeliveries: route({
    method: 'GET',
    path: '/v1/webhooks/:id/deliveries',
    summary: 'Recent deliveries of a webhook and their outcome',
    tag: 'webhooks',
    action: 'webhooks.deliveries',
    params: IdParams,
    success: { 200: WebhookDeliveries },
  }),
  listEnvironments: route({
    method: 'GET',
    path: '/v1/environments',
    summary: 'The tenant’s environments (a service sees those its policies apply in)',
    tag: 'environments',
    action: 'environments.list',
    success: { 200: EnvironmentList },
  }),
  createEnvironment: route({
    method: 'POST',
    path: '/v1/environments',
    summary: 'Add an environment: it grants nothing until a policy names it (tenant admin)',
    tag: 'environments',
    action: 'environments.create',
    body: CreateEnvironmentRequest,
    success: { 201: Environment },
  }),
  updateEnvironment: route({
    method: 'PATCH',
    path: '/v1/environments/:slug',
    summary: 'Rename an environment or protect it (writes then only by promotion or from admins) (tenant admin)',
    tag: 'environments',
    action: 'environments.update',
    params: EnvironmentParams,
    body: UpdateEnvironmentRequest,
    success: { 200: Environment },
  }),
  deleteEnvironment: route({
    method: 'DELETE',
    path: '/v1/environments/:slug',
    summary: 'Remove an empty environment; `default` stays (tenant admin)',
    tag: 'environments',
    action: 'environments.delete',
    params: EnvironmentParams,
    success: { 204: null },
  }),
  diffEnvironments: route({
    method: 'GET',
    path: '/v1/environments/diff',
    summary: 'Which names of an owner are the same, different or missing between two environments; never a value',
    tag: 'environments',
    action: 'environments.diff',
    query: EnvironmentDiffQuery,
    success: { 200: EnvironmentDiff },
  }),
  promoteEnvironment: route({
    method: 'POST',
    path: '/v1/environments/promote',
    summary: 'Copy current values from one environment to another in one transaction, each name compare-and-set',
    tag: 'environments',
    action: 'environments.promote',
    body: PromoteRequest,
    success: { 200: PromoteResponse },
  }),
  getBundle: route({
    method: 'GET',
    path: '/v1/bundles/:kind/:owner',
    summary: 'Every live secret of one sandbox, user or group in one call (the names the caller may read)',
    tag: 'bundles',
    action: 'bundles.read',
    identityRecheckedInSql: true,
    params: OwnerParams,
    query: BundleQuery,
    success: { 200: Bundle },
  }),
  writeBundle: route({
    method: 'POST',
    path: '/v1/bundles/:kind/:owner',
    summary: 'Set and delete several secrets of one owner atomically, each with its own compare-and-set',
    tag: 'bundles',
    action: 'bundles.write',
    params: OwnerParams,
    query: EnvQuery,
    body: BundleWriteRequest,
    success: { 200: BundleWriteResponse },
  }),
  queryAudit: route({
    method: 'GET',
    path: '/v1/audit',
    summary: 'Audit events of the caller’s tenant, newest first, filtered and paginated (admin, auditor)',
    tag: 'audit',
    action: 'audit.query',
    query: AuditQuery,
    success: { 200: AuditPage },
  }),
  exportAudit: route({
    method: 'GET',
    path: '/v1/audit/export',
    summary: 'Stream audit events, oldest first, as NDJSON or CSV (admin, auditor)',
    tag: 'audit',
    action: 'audit.export',
    query: AuditExportQuery,
    success: { 200: z.string().describe('NDJSON (one AuditEvent per line) or CSV with a header row') },
    produces: ['application/x-ndjson', 'text/csv'],
  }),
  followAudit: route({
    method: 'GET',
    path: '/v1/audit/stream',
    summary: 'Follow new audit events as server-sent events, audited once per session (admin, auditor)',
    tag: 'audit',
    action: 'audit.follow',
    query: AuditFollowQuery,
    success: {
      200: z.string().describe('text/event-stream: `id: <seq>`, `event: audit`, `data: <AuditEvent JSON>` per event'),
    },
    produces: ['text/event-stream'],
  }),
  verifyAudit: route({
    method: 'GET',
    path: '/v1/audit/verify',
    summary: 'Check the hash chain and its signed checkpoints; names the first broken link (admin, auditor)',
    tag: 'audit',
    action: 'audit.verify',
    query: AuditVerifyQuery,
    success: { 200: AuditVerifyResult },
  }),
  auditSummary: route({
    method: 'GET',
    path: '/v1/audit/summary',
    summary: 'Counts by action, outcome and actor, and which secrets each identity read (admin, auditor)',
    tag: 'audit',
    action: 'audit.summary',
    query: AuditSummaryQuery,
    success: { 200: AuditSummary },
  }),
  inventory: route({
    method: 'GET',
    path: '/v1/inventory',
    summary:
      'Every secret per environment with its class, owning team, contact and rotation cadence; no value (admin, auditor)',
    tag: 'deployments',
    action: 'inventory.read',
    query: InventoryQuery,
    success: { 200: InventoryPage },
  }),
  planDeployment: route({
    method: 'POST',
    path: '/v1/deployments/plan',
    summary: 'What a deployment of these bundles to this tier would do with each secret; changes nothing',
    tag: 'deployments',
    action: 'deployments.plan',
    body: PlanDeploymentRequest,
    success: { 200: DeploymentPlan },
  }),
  createDeployment: route({
    method: 'POST',
    path: '/v1/deployments',
    summary:
      'Make a deployment: service secrets generated fresh for it (shown once), the rest stripped, prompted or injected',
    tag: 'deployments',
    action: 'deployments.create',
    body: CreateDeploymentRequest,
    success: { 201: CreatedDeployment },
  }),
  listDeployments: route({
    method: 'GET',
    path: '/v1/deployments',
    summary: 'Deployments, newest first, by environment and by a secret they received (admin, auditor)',
    tag: 'deployments',
    action: 'deployments.list',
    query: ListDeploymentsQuery,
    success: { 200: DeploymentPage },
  }),
  getDeployment: route({
    method: 'GET',
    path: '/v1/deployments/:id',
    summary: 'A deployment: its plan, and what it received (path@version, when, by whom)',
    tag: 'deployments',
    action: 'deployments.read',
    params: DeploymentParams,
    success: { 200: Deployment },
  }),
  revokeDeployment: route({
    method: 'POST',
    path: '/v1/deployments/:id/revoke',
    summary: 'Revoke a deployment: rotate what was generated for it, revoke its versions and leases (tenant admin)',
    tag: 'deployments',
    action: 'deployments.revoke',
    params: DeploymentParams,
    body: RevokeDeploymentRequest.nullish(),
    success: { 200: RevokedDeployment },
  }),
  secretConsumers: route({
    method: 'GET',
    path: '/v1/secrets/:kind/:owner/:name/consumers',
    summary: 'Who reads a secret, per identity and deployment: last read, last version, through a bundle or not',
    tag: 'rotation',
    action: 'secrets.consumers',
    params: SecretPathParams,
    query: ConsumersQuery,
    success: { 200: SecretConsumers },
  }),
  rotationStatus: route({
    method: 'GET',
    path: '/v1/secrets/:kind/:owner/:name/rotation-status',
    summary: 'The current and previous versions, who still reads the previous one, and whether revoking it is safe',
    tag: 'rotation',
    action: 'secrets.rotation_status',
    params: SecretPathParams,
    query: EnvQuery,
    success: { 200: RotationStatus },
  }),
  revokeSecretVersion: route({
    method: 'POST',
    path: '/v1/secrets/:kind/:owner/:name/versions/:version/revoke',
    summary: 'Stop serving one version (410 from then on); refused (409 consumers_pending) while consumers read it',
    tag: 'rotation',
    action: 'secrets.revoke',
    params: DestroyVersionParams,
    query: EnvQuery,
    body: RevokeVersionRequest.nullish(),
    success: { 200: RevokedVersion },
  }),
} as const satisfies Record<string, RouteDef>;

export type Routes = typeof routes;
export type RouteName = keyof Routes;

type SchemaInput<S> = S extends z.ZodType ? z.input<S> : never;
type SchemaOutput<S> = S extends z.ZodType ? z.output<S> : S extends null ? undefined : never;

/** What a caller supplies for a route: only the parts the route has. */
export type RouteInput<R extends RouteDef> = (R extends { params: infer P } ? { params: SchemaInput<P> } : unknown) &
  (R extends { query: infer Q } ? { query?: SchemaInput<Q> } : unknown) &
  (R extends { body: infer B } ? { body: SchemaInput<B> } : unknown);

/** What a route answers on success (the union over its success statuses). */
export type RouteOutput<R extends RouteDef> = {
  [S in keyof R['success']]: SchemaOutput<R['success'][S]>;
}[keyof R['success']];

/** Fill `:param` placeholders of a route path. Values are URL-encoded. */
export function buildPath(path: string, params: Record<string, string | number> | undefined): string {
  return path.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params?.[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(String(value));
  });
}
