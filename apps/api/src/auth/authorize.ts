import { type Action, type Capability, DEFAULT_ENVIRONMENT, type PrincipalRole } from '@coffer/contracts';
import { capabilitiesFor, seesEnvironment } from './policy.ts';
import type { Principal } from './principal.ts';

/**
 * The one authorization function: every request is decided here from (identity, action, resource).
 *
 * - A role may attempt only its actions (checked for every route before its handler runs, from the action the
 *   route declares in the contracts).
 * - Inside its tenant an `admin` may do everything; a `service` only what its path policies grant on the
 *   resource (`kind/owner/name`, or `dynamic/<backend>` for leases), through the capability each action needs; an
 *   `auditor` reads the audit log and the lease inventory;
 *   the platform admin manages tenants and master keys and never reaches a secret.
 */

const SECRET_ACTIONS: Action[] = [
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
  'secrets.check',
  'secrets.consumers',
  'secrets.rotation_status',
  'secrets.revoke',
];

/** Deployments a service may make and read, by its policies on the secrets in them (the service decides each). */
const DEPLOYMENT_ACTIONS: Action[] = ['deployments.plan', 'deployments.create', 'deployments.read'];

const TENANT_ADMIN_ACTIONS: Action[] = [
  'rotation.due',
  'rotation.log',
  'keys.read',
  'keys.rotate',
  'webhooks.create',
  'webhooks.list',
  'webhooks.delete',
  'webhooks.deliveries',
  'trust.create',
  'trust.list',
  'trust.read',
  'trust.update',
  'trust.delete',
  'environments.create',
  'environments.update',
  'environments.delete',
  'intake.list',
  'intake.revoke',
  'deployments.list',
  'deployments.revoke',
  'inventory.read',
  'dynamic.create',
  'dynamic.delete',
  'leases.revoke_many',
];

/** Making an intake link is a deferred write: a service may, where its policies let it write the secret. */
const INTAKE_CREATE: Action[] = ['intake.create'];

/** Environments and their diff: names and fingerprint comparisons, never a value. */
const ENVIRONMENT_READS: Action[] = ['environments.list', 'environments.diff'];

/** Every identity may list and end its own sessions; which others it may reach is the sessions service's rule. */
const SESSION_ACTIONS: Action[] = ['sessions.list', 'sessions.revoke'];

/** Dynamic credentials as a service uses them: its policies decide which backends (`dynamic/<name>`). */
const LEASE_ACTIONS: Action[] = ['leases.create', 'leases.read', 'leases.renew', 'leases.revoke'];

/** What an auditor and an admin read of dynamic credentials: backends (never a URL) and the lease inventory. */
const DYNAMIC_READ_ACTIONS: Action[] = ['dynamic.list', 'dynamic.read', 'leases.list', 'leases.read'];

const AUDIT_ACTIONS: Action[] = ['audit.query', 'audit.export', 'audit.follow', 'audit.verify', 'audit.summary'];

const ROLE_ACTIONS: Record<PrincipalRole, ReadonlySet<Action>> = {
  // Tenants, master keys and the platform admins themselves; the platform's own audit chain (tenant creation, its logins), never a tenant's.
  platform: new Set<Action>([
    'auth.whoami',
    ...SESSION_ACTIONS,
    'tenants.create',
    'tenants.list',
    'tenants.read',
    'tenants.update',
    'tenants.audit_retention',
    'system.keys.read',
    'system.keys.rewrap',
    'platform.admins.create',
    'platform.admins.list',
    'platform.admins.update',
    'platform.admins.rotate_secret',
    ...AUDIT_ACTIONS,
  ]),
  admin: new Set<Action>([
    'auth.whoami',
    ...SESSION_ACTIONS,
    'identities.create',
    'identities.list',
    'identities.read',
    'identities.update',
    'identities.delete',
    'identities.rotate_secret',
    ...SECRET_ACTIONS,
    ...INTAKE_CREATE,
    ...ENVIRONMENT_READS,
    'environments.promote',
    ...DEPLOYMENT_ACTIONS,
    ...TENANT_ADMIN_ACTIONS,
    ...LEASE_ACTIONS,
    ...DYNAMIC_READ_ACTIONS,
    ...AUDIT_ACTIONS,
  ]),
  // Services may attempt secret and lease actions; their policies decide each path (and each environment).
  service: new Set<Action>([
    'auth.whoami',
    ...SESSION_ACTIONS,
    ...SECRET_ACTIONS,
    ...INTAKE_CREATE,
    ...ENVIRONMENT_READS,
    'environments.promote',
    ...DEPLOYMENT_ACTIONS,
    ...LEASE_ACTIONS,
  ]),
  // Metadata and the record of what happened; never a value, never a change.
  auditor: new Set<Action>([
    'auth.whoami',
    ...SESSION_ACTIONS,
    'rotation.due',
    'rotation.log',
    'keys.read',
    ...ENVIRONMENT_READS,
    ...DYNAMIC_READ_ACTIONS,
    ...AUDIT_ACTIONS,
    'inventory.read',
    'deployments.list',
    'deployments.read',
    'secrets.consumers',
    'secrets.rotation_status',
  ]),
};

/** The capability (any of them) a service needs on a secret path for each action that touches one. */
const ACTION_CAPABILITIES: Partial<Record<Action, readonly Capability[]>> = {
  'secrets.read': ['read'],
  'bundles.read': ['read'],
  'secrets.write': ['write'],
  'secrets.list': ['list'],
  'secrets.versions': ['read', 'list'],
  'secrets.delete': ['delete'],
  'secrets.restore': ['delete'],
  'secrets.destroy': ['delete'],
  'secrets.update': ['write'],
  'secrets.rotate': ['rotate'],
  // A check reads values only inside the server and answers verdicts, so listing the path is enough.
  'secrets.check': ['list'],
  'intake.create': ['write'],
  // Who reads a secret, and cutting off a version, belong to whoever may rotate it.
  'secrets.consumers': ['rotate'],
  'secrets.rotation_status': ['rotate'],
  'secrets.revoke': ['rotate'],
  // On `dynamic/<backend>`: taking a lease and renewing it. Giving one up needs nothing: it only ends access.
  'leases.create': ['read'],
  'leases.renew': ['read'],
};

/**
 * `hidden`: the caller has no policy in the resource's environment at all, so for it the environment does not
 * exist; callers answer as for a name that does not exist (404), not with a 403 that would confirm it.
 */
export type Decision = { allowed: true } | { allowed: false; reason: string; hidden?: true };

const ALLOW: Decision = { allowed: true };

export function authorize(
  p: Pick<Principal, 'role' | 'policies'>,
  action: Action,
  resource?: string,
  environment: string = DEFAULT_ENVIRONMENT,
): Decision {
  if (!ROLE_ACTIONS[p.role].has(action)) return { allowed: false, reason: `role ${p.role} may not perform ${action}` };
  if (resource === undefined || p.role !== 'service') return ALLOW;
  const needed = ACTION_CAPABILITIES[action];
  if (!needed) return ALLOW;
  // `default` exists in every tenant, so it is never hidden: a refusal there stays the 403 it always was.
  if (environmentHidden(p, environment)) {
    return { allowed: false, hidden: true, reason: `no policy of this identity applies in environment ${environment}` };
  }
  const granted = capabilitiesFor(p.policies, resource, environment);
  const where = environment === DEFAULT_ENVIRONMENT ? resource : `${resource} in ${environment}`;
  return needed.some((c) => granted.has(c))
    ? ALLOW
    : { allowed: false, reason: `this identity has no ${needed.join(' or ')} capability on ${where}` };
}

/**
 * Whether an environment is, for this caller, not there: a service none of whose policies applies in it. `default`
 * exists in every tenant and is never hidden; admins and auditors see every environment.
 */
export function environmentHidden(p: Pick<Principal, 'role' | 'policies'>, environment: string): boolean {
  return environment !== DEFAULT_ENVIRONMENT && p.role === 'service' && !seesEnvironment(p.policies, environment);
}

/** Route-level: may this role attempt the action at all? */
export function mayAttempt(p: Pick<Principal, 'role' | 'policies'>, action: Action): boolean {
  return authorize(p, action).allowed;
}
