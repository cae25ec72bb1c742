import { z } from 'zod';
import { Cursor, Timestamp, Uuid } from './common.ts';
import { EnvironmentSlug } from './environment-slug.ts';

export const AuditOutcome = z.enum(['allowed', 'denied', 'error']).meta({ id: 'AuditOutcome' });
export type AuditOutcome = z.infer<typeof AuditOutcome>;

const TimeRange = {
  from: Timestamp.optional().describe('Events at or after this time'),
  to: Timestamp.optional().describe('Events before this time'),
};

export const AuditQuery = z.strictObject({
  actor: Uuid.optional().describe('Identity id of the actor'),
  action: z
    .string()
    .regex(/^[a-z_]+(\.[a-z_]+)*\.?$/, 'must be an action like secrets.read, or a prefix ending in a dot like secrets.')
    .max(64)
    .optional()
    .describe('An action, or a prefix ending in "." (secrets.)'),
  path: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[A-Za-z0-9_.\-/:@]+$/, 'must be a resource path or its prefix, e.g. sandbox/sbx-42/')
    .optional()
    .describe('Resource path prefix, e.g. sandbox/sbx-42/'),
  outcome: AuditOutcome.optional(),
  env: z
    .union([EnvironmentSlug, z.literal('*')])
    .optional()
    .describe(
      'Events about secrets of this environment, and those about no secret; `*`: every environment; default `default`',
    ),
  ...TimeRange,
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: Cursor.optional(),
});

export const AuditEventView = z
  .object({
    id: z.number().int(),
    seq: z.number().int().describe('Position in the tenant’s chain'),
    occurredAt: Timestamp,
    actorId: Uuid.nullable(),
    actorName: z.string().nullable(),
    action: z.string(),
    resource: z.string().nullable(),
    version: z.number().int().nullable(),
    outcome: AuditOutcome,
    errorCode: z.string().nullable(),
    requestId: z.string().nullable(),
    sourceIp: z.string().nullable(),
    userAgent: z.string().nullable(),
    fingerprint: z
      .string()
      .nullable()
      .describe('Keyed fingerprint of a written value: equal values, equal fingerprints'),
    details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).nullable(),
    prevHash: z.string().describe('hex'),
    hash: z.string().describe('hex: sha256(prevHash ‖ seq ‖ sha256(canonical event))'),
  })
  .meta({ id: 'AuditEvent' });
export type AuditEventView = z.infer<typeof AuditEventView>;

export const AuditPage = z
  .object({ items: z.array(AuditEventView), nextCursor: Cursor.nullable() })
  .meta({ id: 'AuditPage' });
export type AuditPage = z.infer<typeof AuditPage>;

/**
 * A follow session: events of the caller's tenant after `after` (or after `Last-Event-ID`), oldest first, as
 * server-sent events (`id:` the seq, `event: audit`, `data:` one AuditEvent), within a second of their commit. The
 * session is audited once, when it opens; the server ends it after `maxSeconds` or when the token expires, and the
 * client resumes with `Last-Event-ID`.
 */
export const AuditFollowQuery = z.strictObject({
  actor: AuditQuery.shape.actor,
  action: AuditQuery.shape.action,
  path: AuditQuery.shape.path,
  outcome: AuditQuery.shape.outcome,
  env: AuditQuery.shape.env,
  after: z.coerce
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .optional()
    .describe('Start after this seq (default: the newest event now; Last-Event-ID wins)'),
  maxSeconds: z.coerce
    .number()
    .int()
    .min(1)
    .max(3600)
    .default(3600)
    .describe('End the session after this long (the client reconnects with Last-Event-ID)'),
});

export const AuditExportQuery = z.strictObject({
  format: z.enum(['ndjson', 'csv']).default('ndjson'),
  ...TimeRange,
});

export const AuditVerifyQuery = z.strictObject({ ...TimeRange });

export const AuditBreak = z
  .enum([
    'edited',
    'deleted',
    'inserted',
    'reordered',
    'truncated',
    'checkpoint_mismatch',
    'bad_checkpoint',
    'unverifiable_checkpoint',
    'unverifiable_event',
    'bad_head',
    'stale_checkpoint',
    'rolled_back',
  ])
  .meta({ id: 'AuditBreak' });

export const AuditVerifyResult = z
  .object({
    ok: z.boolean(),
    checked: z.number().int().describe('Events checked'),
    checkpoints: z.number().int().describe('Signed checkpoints checked'),
    firstBrokenId: z
      .number()
      .int()
      .nullable()
      .optional()
      .describe('Id of the first event (or the checkpoint seq) that breaks the chain'),
    firstBrokenSeq: z.number().int().nullable().optional(),
    reason: AuditBreak.optional(),
    message: z.string().optional(),
  })
  .meta({ id: 'AuditVerifyResult' });
export type AuditVerifyResult = z.infer<typeof AuditVerifyResult>;

export const AuditSummaryQuery = z.strictObject({ ...TimeRange });

export const AuditSummary = z
  .object({
    from: Timestamp.nullable(),
    to: Timestamp.nullable(),
    total: z.number().int(),
    byAction: z.record(z.string(), z.number().int()),
    byOutcome: z.record(z.string(), z.number().int()),
    byActor: z.array(
      z.object({
        actorId: Uuid.nullable(),
        actorName: z.string().nullable(),
        total: z.number().int(),
        denied: z.number().int(),
      }),
    ),
    secretsReadBy: z
      .array(
        z.object({
          actorId: Uuid.nullable(),
          actorName: z.string().nullable(),
          secrets: z.array(z.object({ path: z.string(), reads: z.number().int() })),
        }),
      )
      .describe('The access review: which secrets each identity read, directly or through a bundle'),
  })
  .meta({ id: 'AuditSummary' });
export type AuditSummary = z.infer<typeof AuditSummary>;
