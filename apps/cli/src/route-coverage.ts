import type { RouteName } from '@coffer/contracts';

/**
 * Which routes each command calls, by its words after `coffer`. A test walks the route table and fails on a route
 * no command covers, and on a command named here that the program does not have, so a new route cannot ship
 * without a way to call it from the CLI.
 */
export const COMMAND_ROUTES = {
  status: ['health', 'ready', 'jwks'],
  login: ['issueToken', 'whoami'],
  whoami: ['whoami'],
  get: ['getSecret'],
  set: ['putSecret'],
  update: ['patchSecret'],
  ls: ['listSecrets'],
  rm: ['deleteSecret'],
  restore: ['restoreSecret'],
  history: ['listSecretVersions'],
  destroy: ['destroySecretVersion'],
  rotate: ['rotateSecret'],
  run: ['getBundle'],
  export: ['getBundle'],
  import: ['getBundle', 'writeBundle'],
  check: ['getSecret', 'listSecretVersions', 'queryAudit'],
  'rotation due': ['rotationDue'],
  'rotation log': ['rotationLog'],
  'tenants ls': ['listTenants'],
  'tenants create': ['createTenant'],
  'tenants show': ['getTenant'],
  'tenants update': ['updateTenant'],
  'identities ls': ['listIdentities'],
  'identities create': ['createIdentity'],
  'identities show': ['getIdentity'],
  'identities update': ['updateIdentity'],
  'identities rm': ['deleteIdentity'],
  'identities rotate-secret': ['rotateIdentitySecret'],
  'webhooks ls': ['listWebhooks'],
  'webhooks create': ['createWebhook'],
  'webhooks rm': ['deleteWebhook'],
  'webhooks deliveries': ['webhookDeliveries'],
  'keys ls': ['listDataKeys'],
  'keys rotate': ['rotateDataKey'],
  'system keys': ['systemKeys'],
  'system rewrap': ['rewrapMasterKey'],
  audit: ['queryAudit', 'followAudit'],
  'audit verify': ['verifyAudit'],
  'audit export': ['exportAudit'],
  'audit summary': ['auditSummary'],
} as const satisfies Record<string, readonly RouteName[]>;
