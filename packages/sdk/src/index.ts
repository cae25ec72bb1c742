export { type ServerSentEvent, serverSentEvents } from './audit-follow.ts';
export type { CacheOptions } from './cache.ts';
export { AuditExport, CofferClient, type CofferClientOptions, intakeTokenOf, Paginator } from './client.ts';
export { type ClientErrorCode, CofferError, errorFromResponse, isCofferError } from './errors.ts';
export { formatSecretPath, type OwnerPath, parseOwnerPath, parseSecretPath, type SecretPath } from './paths.ts';
export { githubActionsToken, type SubjectTokenSource, tokenFile } from './token-source.ts';
export { verifyWebhookSignature, type WebhookDelivery } from './webhooks.ts';
