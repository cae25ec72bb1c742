import type { Action, PrincipalRole } from '@coffer/contracts';
import type { Principal } from './principal.ts';

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
];

/**
 * Which actions each role may ever attempt. The one place role rules live: routes declare their action in the
 * contracts, and the authenticate hook asks `mayAttempt` before any handler runs.
 */
const ROLE_ACTIONS: Record<PrincipalRole, ReadonlySet<Action>> = {
  platform: new Set<Action>(['auth.whoami', 'tenants.create', 'tenants.list']),
  admin: new Set<Action>([
    'auth.whoami',
    'identities.create',
    'identities.list',
    'identities.read',
    'identities.update',
    'identities.delete',
    'identities.rotate_secret',
    ...SECRET_ACTIONS,
  ]),
  // Services may attempt secret actions; their policies decide each path (secrets.service.ts).
  service: new Set<Action>(['auth.whoami', ...SECRET_ACTIONS]),
  auditor: new Set<Action>(['auth.whoami']),
};

export function mayAttempt(principal: Pick<Principal, 'role'>, action: Action): boolean {
  return ROLE_ACTIONS[principal.role].has(action);
}
