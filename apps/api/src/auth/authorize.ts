import type { Action, PrincipalRole } from '@coffer/contracts';
import type { Principal } from './principal.ts';

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
  ]),
  service: new Set<Action>(['auth.whoami']),
  auditor: new Set<Action>(['auth.whoami']),
};

export function mayAttempt(principal: Pick<Principal, 'role'>, action: Action): boolean {
  return ROLE_ACTIONS[principal.role].has(action);
}
