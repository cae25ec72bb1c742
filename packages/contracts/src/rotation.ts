import { z } from 'zod';
import { AuditOutcome } from './audit.ts';
import { Cursor, Timestamp, Uuid } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';
import { SecretKind } from './secrets.ts';

export const Duration = z.string().regex(/^\d{1,5}[smhd]$/, 'must be a duration like 90s, 30m, 12h or 7d');

export const RotationDueQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent'),
  within: Duration.default('7d').describe('Secrets overdue or due within this window'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const RotationDueItem = z
  .object({
    kind: SecretKind,
    owner: z.string(),
    name: z.string(),
    path: z.string(),
    intervalDays: z.number().int(),
    lastRotatedAt: Timestamp.nullable(),
    nextRotationAt: Timestamp,
    overdue: z.boolean(),
    automatic: z.boolean().describe('The secret has a generator: the scheduler rotates it itself'),
  })
  .meta({ id: 'RotationDueItem' });

export const RotationDue = z.object({ items: z.array(RotationDueItem) }).meta({ id: 'RotationDue' });
export type RotationDue = z.infer<typeof RotationDue>;

export const RotationLogQuery = z.strictObject({
  env: EnvironmentSlug.optional().describe('The environment; the tenant’s `default` when absent'),
  from: Timestamp.optional(),
  to: Timestamp.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});

export const RotationLogEntry = z
  .object({
    at: Timestamp,
    path: z.string(),
    fromVersion: z.number().int().nullable(),
    toVersion: z.number().int().nullable(),
    trigger: z.enum(['manual', 'scheduler']),
    actorId: Uuid.nullable(),
    actorName: z.string().nullable(),
    outcome: AuditOutcome,
    errorCode: z.string().nullable(),
    event: z
      .enum(['rotate', 'revoke'])
      .describe('rotate: a new version (fromVersion → toVersion); revoke: fromVersion revoked (toVersion null)'),
    environment: z.string(),
    ownerTeam: z.string().nullable().describe('The team that owned the secret then'),
    notes: z.string().nullable(),
    deployment: Uuid.nullable().describe('Set when the revocation of this deployment did it'),
  })
  .meta({ id: 'RotationLogEntry' });

export const RotationLog = z
  .object({ items: z.array(RotationLogEntry), nextCursor: Cursor.nullable() })
  .meta({ id: 'RotationLog' });
export type RotationLog = z.infer<typeof RotationLog>;
