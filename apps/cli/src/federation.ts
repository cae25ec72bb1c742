import { existsSync } from 'node:fs';
import { githubActionsToken, type SubjectTokenSource, tokenFile } from '@coffer/sdk';
import type { CliEnv } from './config.ts';
import type { StoredCredentials } from './credentials.ts';
import { usageError } from './output.ts';

export type FederationSource = NonNullable<StoredCredentials['federation']>['source'];

/** Where the Kubernetes example mounts a projected service-account token with Coffer's audience. */
export const DEFAULT_PROJECTED_TOKEN = '/var/run/secrets/coffer/token';

/**
 * The platform token a workload logs in with, found in this order: --token-file; inside GitHub Actions, the runner's
 * OIDC token for the tenant's audience; COFFER_TOKEN_FILE; a projected token at the default path.
 */
export function detectSource(o: { tokenFile?: string | undefined; audience?: string | undefined }, env: CliEnv) {
  if (o.tokenFile) return { file: o.tokenFile } satisfies FederationSource;
  if (env.githubOidc) {
    const audience = o.audience ?? env.audience;
    if (!audience) {
      throw usageError(
        'inside GitHub Actions give the audience the issuer expects: --audience coffer:<tenant slug> (or COFFER_AUDIENCE)',
      );
    }
    return { githubActions: { audience } } satisfies FederationSource;
  }
  if (env.tokenFile) return { file: env.tokenFile } satisfies FederationSource;
  if (existsSync(DEFAULT_PROJECTED_TOKEN)) return { file: DEFAULT_PROJECTED_TOKEN } satisfies FederationSource;
  throw usageError(
    'no platform token found: pass --token-file, run inside GitHub Actions with id-token: write, or mount a projected ' +
      `service-account token at ${DEFAULT_PROJECTED_TOKEN}`,
  );
}

export function subjectTokenOf(source: FederationSource, env: CliEnv): SubjectTokenSource {
  if ('file' in source) return tokenFile(source.file);
  if (!env.githubOidc) {
    return () => {
      throw usageError('this login came from GitHub Actions, whose OIDC token is only available inside the job');
    };
  }
  return githubActionsToken(source.githubActions.audience, env.githubOidc);
}
