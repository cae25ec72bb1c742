import { z } from 'zod';
import { AuditOutcome } from './audit.ts';
import { Cursor, Timestamp, Uuid } from './common.ts';
import { SecretKind } from './secrets.ts';

export const Duration = z.string().regex(/^\d{1,5}[smhd]$/, 'must be a duration like 90s, 30m, 12h or 7d');

export const RotationDueQuery = z.strictObject({
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
  })
  .meta({ id: 'RotationLogEntry' });

export const RotationLog = z
  .object({ items: z.array(RotationLogEntry), nextCursor: Cursor.nullable() })
  .meta({ id: 'RotationLog' });
export type RotationLog = z.infer<typeof RotationLog>;

export const DataKeyInfo = z
  .object({
    version: z.number().int(),
    state: z.enum(['active', 'retiring', 'retired']),
    masterKeyId: z.string().nullable(),
    createdAt: Timestamp,
    retiredAt: Timestamp.nullable(),
    ciphertexts: z.number().int().describe('Secret versions still sealed under this key'),
  })
  .meta({ id: 'DataKeyInfo' });

export const DataKeys = z
  .object({ activeVersion: z.number().int(), items: z.array(DataKeyInfo) })
  .meta({ id: 'DataKeys' });
export type DataKeys = z.infer<typeof DataKeys>;

export const RotateDataKeyResponse = z
  .object({ keyVersion: z.number().int(), retiring: z.array(z.number().int()) })
  .meta({ id: 'RotateDataKeyResponse' });
export type RotateDataKeyResponse = z.infer<typeof RotateDataKeyResponse>;

export const MasterKeyUse = z.object({
  masterKeyId: z.string(),
  inKeyring: z.boolean(),
  dataKeys: z.number().int(),
  fingerprintKeys: z.number().int(),
  webhookSecrets: z.number().int(),
  checkpoints: z.number().int(),
});

export const SystemKeys = z
  .object({
    activeMasterKeyId: z.string(),
    keyring: z.array(z.string()),
    inUse: z.array(MasterKeyUse).describe('Master keys that still wrap or sign something: keep them in the keyring'),
  })
  .meta({ id: 'SystemKeys' });
export type SystemKeys = z.infer<typeof SystemKeys>;

export const RewrapResponse = z
  .object({
    activeMasterKeyId: z.string(),
    rewrapped: z.object({
      dataKeys: z.number().int(),
      fingerprintKeys: z.number().int(),
      webhookSecrets: z.number().int(),
      checkpoints: z.number().int(),
    }),
    remaining: z.number().int().describe('Items still under another key (0 when done; run again to resume)'),
  })
  .meta({ id: 'RewrapResponse' });
export type RewrapResponse = z.infer<typeof RewrapResponse>;

export const WebhookEvent = z
  .enum(['secret.rotated', 'secret.rotation_failed', 'secret.written', 'secret.deleted', 'key.rotated'])
  .meta({ id: 'WebhookEvent' });
export type WebhookEvent = z.infer<typeof WebhookEvent>;

export const CreateWebhookRequest = z
  .strictObject({
    url: z.url({ protocol: /^https?$/ }).max(2048),
    events: z
      .array(WebhookEvent)
      .min(1)
      .max(10)
      .refine((e) => new Set(e).size === e.length, 'must not repeat an event'),
  })
  .meta({ id: 'CreateWebhookRequest' });
export type CreateWebhookRequest = z.infer<typeof CreateWebhookRequest>;

export const Webhook = z
  .object({ id: Uuid, url: z.string(), events: z.array(WebhookEvent), disabled: z.boolean(), createdAt: Timestamp })
  .meta({ id: 'Webhook' });
export type Webhook = z.infer<typeof Webhook>;

export const CreateWebhookResponse = z
  .object({
    webhook: Webhook,
    signingSecret: z
      .string()
      .describe('Shown once. Verify `coffer-signature: t=<unix>,v1=<hex>` = HMAC-SHA256(secret, t + "." + body)'),
  })
  .meta({ id: 'CreateWebhookResponse' });
export type CreateWebhookResponse = z.infer<typeof CreateWebhookResponse>;

export const WebhookList = z.object({ items: z.array(Webhook) }).meta({ id: 'WebhookList' });

export const WebhookDelivery = z
  .object({
    id: Uuid,
    event: WebhookEvent,
    status: z.enum(['pending', 'delivered', 'failed']),
    attempts: z.number().int(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: Timestamp,
    deliveredAt: Timestamp.nullable(),
  })
  .meta({ id: 'WebhookDelivery' });

export const WebhookDeliveries = z.object({ items: z.array(WebhookDelivery) }).meta({ id: 'WebhookDeliveries' });
