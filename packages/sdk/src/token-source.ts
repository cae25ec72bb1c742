/** Where a workload's platform token comes from: called at every login, so it may return a rotated token. */
export type SubjectTokenSource = () => string | Promise<string>;

/**
 * A token file, re-read at every login: Kubernetes rotates a projected service-account token in place (by default
 * hourly, at 80 % of its lifetime), so the file, not its first contents, is the credential. Uses `node:fs` only when
 * called, so the SDK still loads where there is no file system.
 */
export function tokenFile(path: string): SubjectTokenSource {
  return async () => {
    const { readFile } = await import('node:fs/promises');
    return (await readFile(path, 'utf8')).trim();
  };
}

/**
 * GitHub Actions' OIDC token for `audience` (the job needs `permissions: id-token: write`), from the request URL and
 * token the runner sets in ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN.
 */
export function githubActionsToken(
  audience: string,
  runner: { requestUrl: string; requestToken: string },
  fetchImpl: typeof fetch = globalThis.fetch,
): SubjectTokenSource {
  return async () => {
    const url = new URL(runner.requestUrl);
    url.searchParams.set('audience', audience);
    const res = await fetchImpl(url, {
      headers: { authorization: `Bearer ${runner.requestToken}`, accept: 'application/json' },
    });
    const body = (await res.json().catch(() => ({}))) as { value?: unknown };
    if (!res.ok || typeof body.value !== 'string') {
      throw new Error(
        `GitHub Actions did not issue an OIDC token (HTTP ${res.status}): does the job have id-token: write?`,
      );
    }
    return body.value;
  };
}
