import { z } from 'zod';

export const Health = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });

export const ReadinessCheck = z.object({ name: z.string(), ok: z.boolean(), message: z.string().optional() });
export const Readiness = z
  .object({ status: z.enum(['ready', 'not_ready']), checks: z.array(ReadinessCheck) })
  .meta({ id: 'Readiness' });
export type Readiness = z.infer<typeof Readiness>;
