import { DEFAULT_ENVIRONMENT } from '@coffer/contracts';
import type { Principal } from '../auth/principal.ts';
import type { Tx } from '../db/database.ts';
import { forbidden, notFound } from '../errors/app-error.ts';
import type { EnvironmentQueries } from './environments.queries.ts';

export const environmentNotFound = (slug: string) => notFound(`environment ${slug}`);

export const protectedRefusal = (slug: string) =>
  forbidden(`environment ${slug} is protected: it takes writes only by promotion or from admins`);

/**
 * Every direct write to a secret passes here inside its transaction: the environment must exist (it is share-locked,
 * so it cannot be deleted under the write), and a protected one takes writes only from admins (services reach it by
 * promotion). An admin writing to `default`, which always exists, costs no round trip.
 */
export async function requireWritable(
  environments: Pick<EnvironmentQueries, 'get'>,
  p: Pick<Principal, 'tenantId' | 'role'>,
  environment: string,
  tx: Tx,
): Promise<void> {
  if (environment === DEFAULT_ENVIRONMENT && p.role === 'admin') return;
  const env = await environments.get(p.tenantId, environment, tx, true);
  if (!env) throw environmentNotFound(environment);
  if (env.protected && p.role !== 'admin') throw protectedRefusal(environment);
}
