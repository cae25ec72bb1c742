import { z } from 'zod';
import { storableText, Timestamp, Uuid } from './common.ts';
import { Actor } from './deployments.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { Duration } from './rotation.ts';

export const ConsumersQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent'),
  within: Duration.default('30d').describe('Reads within this window, back from now'),
});

/**
 * Who reads a secret, from the audit chain: one row per identity and deployment, with its last read. `source` says
 * how: `secret` (GET of the secret), `bundle` (in a bundle read) or `deployment` (generated for a deployment, and
 * handed to whoever made it).
 */
export const SecretConsumer = z
  .object({
    identity: Actor,
    deployment: Uuid.nullable(),
    lastReadAt: Timestamp,
    lastVersion: z.number().int(),
    viaBundle: z.boolean(),
    source: z.enum(['secret', 'bundle', 'deployment']),
    reads: z.number().int().describe('Reads in the window'),
  })
  .meta({ id: 'SecretConsumer' });
export type SecretConsumer = z.infer<typeof SecretConsumer>;

export const SecretConsumers = z
  .object({
    path: z.string(),
    environment: z.string(),
    since: Timestamp,
    current: z.number().int(),
    items: z.array(SecretConsumer),
  })
  .meta({ id: 'SecretConsumers' });
export type SecretConsumers = z.infer<typeof SecretConsumers>;

export const RotationStatus = z
  .object({
    path: z.string(),
    environment: z.string(),
    current: z.number().int(),
    previous: z.number().int().nullable().describe('The version before the current one, if it is still there'),
    previousServedUntil: Timestamp.nullable(),
    previousRevokedAt: Timestamp.nullable(),
    graceHours: z.number().int().describe('How far back a read counts as still using a version'),
    consumersOnPrevious: z
      .array(SecretConsumer)
      .describe(
        'Consumers whose last read in the grace period was the previous version, and live deployments made on it',
      ),
    safeToRevoke: z.boolean().describe('Revoking the previous version would cut off nobody known'),
  })
  .meta({ id: 'RotationStatus' });
export type RotationStatus = z.infer<typeof RotationStatus>;

export const RevokeVersionRequest = z
  .strictObject({
    force: z.boolean().optional().describe('Revoke even while consumers still read the version'),
    notes: storableText(z.string().max(500)).optional().describe('Why, for the rotation log'),
  })
  .meta({ id: 'RevokeVersionRequest' });
export type RevokeVersionRequest = z.infer<typeof RevokeVersionRequest>;

export const RevokedVersion = z
  .object({
    path: z.string(),
    environment: z.string(),
    version: z.number().int(),
    revokedAt: Timestamp,
    forced: z.boolean(),
    consumersPending: z.array(SecretConsumer).describe('Who still read it when it was revoked (with force)'),
  })
  .meta({ id: 'RevokedVersion' });
export type RevokedVersion = z.infer<typeof RevokedVersion>;
