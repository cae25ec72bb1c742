import { type SecretCheckDeps, secretCheck } from './secret-check.service.ts';
import { type SecretReadDeps, secretReads } from './secret-reads.service.ts';
import { type SecretWriteDeps, secretWrites } from './secret-writes.service.ts';

export type SecretServiceDeps = SecretReadDeps & SecretWriteDeps & SecretCheckDeps;

/**
 * Secrets of one tenant, as the routes see them: reads (secret-reads.service.ts), changes (secret-writes.service.ts)
 * and the CI gate's check (secret-check.service.ts).
 */
export function secretService(deps: SecretServiceDeps) {
  return { ...secretReads(deps), ...secretWrites(deps), ...secretCheck(deps) };
}

export type SecretService = ReturnType<typeof secretService>;
