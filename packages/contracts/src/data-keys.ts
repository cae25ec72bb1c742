import { z } from 'zod';
import { Timestamp } from './common.ts';

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
  rowMacs: z
    .number()
    .int()
    .describe(
      'Secret, version, identity, trusted-issuer and deployment rows whose integrity MAC this key made (they fail their check without it)',
    ),
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
      rowMacs: z.number().int().describe('Row MACs made again under the active key (a row that fails its check stays)'),
    }),
    remaining: z.number().int().describe('Items still under another key (0 when done; run again to resume)'),
  })
  .meta({ id: 'RewrapResponse' });
export type RewrapResponse = z.infer<typeof RewrapResponse>;
