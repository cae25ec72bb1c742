import { z } from 'zod';
import { IdParams, page, storableText, Timestamp, Uuid } from './common.ts';

const TenantName = storableText(z.string().trim().min(1).max(200));

export const TenantSlug = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{1,62}$/,
    'must be 2-63 lowercase letters, digits or dashes, starting with a letter or digit',
  );

export const RateLimitPerSecond = z.number().int().min(1).max(1_000_000);

export const CreateTenantRequest = z
  .strictObject({
    slug: TenantSlug,
    name: TenantName,
    rateLimitPerSecond: RateLimitPerSecond.optional(),
  })
  .meta({ id: 'CreateTenantRequest' });
export type CreateTenantRequest = z.infer<typeof CreateTenantRequest>;

export const Tenant = z
  .object({
    id: Uuid,
    slug: TenantSlug,
    name: z.string(),
    rateLimitPerSecond: RateLimitPerSecond.nullable().describe(
      'Requests per second per identity; null: server default',
    ),
    createdAt: Timestamp,
  })
  .meta({ id: 'Tenant' });

export const UpdateTenantRequest = z
  .strictObject({
    name: TenantName.optional(),
    rateLimitPerSecond: RateLimitPerSecond.nullable().optional(),
  })
  .refine((v) => v.name !== undefined || v.rateLimitPerSecond !== undefined, 'must change at least one field')
  .meta({ id: 'UpdateTenantRequest' });
export type UpdateTenantRequest = z.infer<typeof UpdateTenantRequest>;
export type Tenant = z.infer<typeof Tenant>;

export const ClientCredentials = z
  .object({
    clientId: z.string(),
    clientSecret: z.string().describe('Shown once; Coffer keeps only a slow hash of it'),
  })
  .meta({ id: 'ClientCredentials' });
export type ClientCredentials = z.infer<typeof ClientCredentials>;

export const CreateTenantResponse = z
  .object({ tenant: Tenant, admin: ClientCredentials })
  .meta({ id: 'CreateTenantResponse' });
export type CreateTenantResponse = z.infer<typeof CreateTenantResponse>;

export const TenantPage = page(Tenant).meta({ id: 'TenantPage' });
export type TenantPage = z.infer<typeof TenantPage>;

export const TenantIdParams = IdParams;

/** Bounds of a tenant's audit retention: long enough that no history can be erased in a hurry, at most ten years. */
export const AUDIT_RETENTION_MIN_DAYS = 30;
export const AUDIT_RETENTION_MAX_DAYS = 3650;

const AuditRetentionDays = z.number().int().min(AUDIT_RETENTION_MIN_DAYS).max(AUDIT_RETENTION_MAX_DAYS);

export const SetAuditRetentionRequest = z
  .strictObject({
    days: AuditRetentionDays.describe('Audit events older than this many days are dropped, behind a signed checkpoint'),
  })
  .meta({ id: 'SetAuditRetentionRequest' });
export type SetAuditRetentionRequest = z.infer<typeof SetAuditRetentionRequest>;

export const AuditRetention = z
  .object({
    tenantId: Uuid,
    days: AuditRetentionDays,
    previousDays: AuditRetentionDays.describe('The retention this change replaced (400 days unless set before)'),
  })
  .meta({ id: 'AuditRetention' });
export type AuditRetention = z.infer<typeof AuditRetention>;
