import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { CreateIdentityResponse } from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { cliEntry, repoRoot } from '../support/build.ts';
import { baseEnv, runCli } from '../support/cli.ts';
import { bearer, createTenant, type TestTenant } from '../support/factories.ts';
import { githubClaims, kubernetesClaims, mint, type SigningKey, signingKey } from '../support/issuers.ts';
import { ownerSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let url: string;
ownerSuite((s) => {
  ({ t, owner } = s);
});

/** A step's shell, run without blocking this process (which serves Coffer and the issuer the step talks to). */
function bash(script: string, o: { cwd: string; env: Record<string, string> }) {
  return new Promise<{ status: number | null; out: string }>((resolve) => {
    const child = spawn('bash', ['-eo', 'pipefail', '-c', script], { cwd: o.cwd, env: o.env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('close', (status) => resolve({ status, out }));
  });
}

/** The YAML blocks of docs/federation.md, in order. */
function yamlBlocks(): unknown[] {
  const text = readFileSync(path.join(repoRoot, 'docs/federation.md'), 'utf8');
  return [...text.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => parseYaml(m[1] as string));
}

let dir: string;
let bin: string;
beforeAll(async () => {
  url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-fed-example-'));
  bin = path.join(dir, 'bin');
  // `coffer` on the PATH, as `npm install -g` of the CLI package leaves it.
  mkdirSync(bin);
  writeFileSync(path.join(bin, 'coffer'), `#!/bin/sh\nexec node ${JSON.stringify(cliEntry)} "$@"\n`);
  chmodSync(path.join(bin, 'coffer'), 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function admin(tenant: TestTenant, method: 'POST' | 'PUT' | 'PATCH', route: string, payload: object) {
  const res = await t.app.inject({ method, url: route, headers: bearer(tenant.adminToken), payload });
  expect(res.statusCode, res.body).toBeLessThan(300);
  return res.json() as unknown;
}

/** GitHub's token endpoint as a runner sees it: a bearer token in, an OIDC token for the asked audience out. */
async function githubRunner(key: SigningKey, repo: string, ref: string) {
  const runnerToken = randomBytes(16).toString('hex');
  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (req.headers.authorization !== `Bearer ${runnerToken}`) {
      res.statusCode = 401;
      return res.end('{}');
    }
    const value = await mint(key, githubClaims(repo, ref, u.searchParams.get('audience') ?? 'https://github.com/acme'));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ value }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    env: {
      ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${port}/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: runnerToken,
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('docs/federation.md worked examples, run against a local issuer', () => {
  it('the GitHub Actions workflow gates with coffer check and runs the app with coffer run, holding no Coffer secret', async () => {
    const tenant = await createTenant(t.app);
    const audience = `coffer:${tenant.tenant.slug}`;
    const key = await signingKey('ES256');
    await admin(tenant, 'POST', '/v1/trust/issuers', {
      name: 'github-actions',
      issuer: 'https://token.actions.githubusercontent.com',
      jwks: { keys: [key.publicJwk] },
      algorithms: ['ES256'],
      maxTokenAgeSeconds: 600,
    });
    const deployer = (await admin(tenant, 'POST', '/v1/identities', {
      name: 'deployer',
      role: 'service',
      policies: [{ path: 'shared/acme/*', capabilities: ['list', 'read'] }],
      federation: [{ issuer: 'github-actions', claims: { repository: 'acme/api', ref: 'refs/heads/main' } }],
    })) as CreateIdentityResponse;
    await admin(tenant, 'PUT', '/v1/secrets/shared/acme/DATABASE_URL', { value: 'postgres://db.internal/app' });
    const work = mkdtempSync(path.join(dir, 'repo-'));
    mkdirSync(path.join(work, 'deploy'));
    writeFileSync(path.join(work, 'deploy/secrets.yaml'), 'secrets:\n  - path: shared/acme/DATABASE_URL\n');

    const workflow = yamlBlocks().find((b) => (b as { jobs?: unknown }).jobs) as {
      permissions: Record<string, string>;
      jobs: { deploy: { env: Record<string, string>; steps: { run?: string; uses?: string }[] } };
    };
    expect(workflow.permissions['id-token']).toBe('write');
    const job = workflow.jobs.deploy;
    const runner = await githubRunner(key, 'acme/api', 'refs/heads/main');
    try {
      const env = baseEnv({
        ...runner.env,
        PATH: `${bin}:${process.env.PATH}`,
        COFFER_CONFIG_DIR: path.join(work, '.coffer-config'),
        COFFER_URL: url,
        COFFER_IDENTITY: deployer.identity.clientId,
        COFFER_AUDIENCE: job.env.COFFER_AUDIENCE?.replace('coffer:acme', audience),
      });
      // Everything but checkout and the CLI's install (the packed-CLI test covers that), as the runner would.
      const steps = job.steps.filter((s) => s.run && !s.run.startsWith('npm install -g'));
      expect(steps.length).toBe(2);
      for (const step of steps) {
        const r = await bash(step.run as string, { cwd: work, env });
        expect(r.status, `${step.run}\n${r.out}`).toBe(0);
        expect(r.out).not.toContain('postgres://db.internal/app');
      }
      // Nothing was written that could log in again: no token, no secret, in the config folder.
      expect(() => statSync(path.join(work, '.coffer-config', 'credentials.json'))).toThrow();
      const { rows } = await owner.query(
        `select count(*)::int as n from coffer.audit_events where actor_id = $1 and action = 'auth.token'
           and outcome = 'allowed' and details->>'method' = 'federation'`,
        [deployer.identity.id],
      );
      expect((rows[0] as { n: number }).n).toBeGreaterThanOrEqual(2);
      // The same workflow from another branch gets nothing.
      const forked = await githubRunner(key, 'acme/api', 'refs/heads/feature');
      try {
        const r = await bash(steps[0]?.run as string, { cwd: work, env: { ...env, ...forked.env } });
        expect(r.status, r.out).toBe(4);
      } finally {
        await forked.close();
      }
    } finally {
      await runner.close();
    }
  });

  it('the Kubernetes Deployment: its container command logs in with the projected token, which renews the login', async () => {
    const tenant = await createTenant(t.app);
    const key = await signingKey('RS256');
    const cluster = 'https://kubernetes.default.svc.cluster.local';
    await admin(tenant, 'POST', '/v1/trust/issuers', {
      name: 'k8s-prod',
      issuer: cluster,
      jwks: { keys: [key.publicJwk] },
      algorithms: ['RS256'],
    });
    const identity = (await admin(tenant, 'POST', '/v1/identities', {
      name: 'payments-api',
      role: 'service',
      policies: [{ path: 'shared/payments/*', capabilities: ['read'] }],
      federation: [{ issuer: 'k8s-prod', subject: 'system:serviceaccount:payments:payments-api' }],
    })) as CreateIdentityResponse;
    await admin(tenant, 'PUT', '/v1/secrets/shared/payments/DATABASE_URL', { value: 'postgres://payments' });

    const deployment = yamlBlocks().find((b) => (b as { kind?: string }).kind === 'Deployment') as {
      metadata: { namespace: string };
      spec: {
        template: {
          spec: {
            serviceAccountName: string;
            containers: { command: string[]; volumeMounts: { mountPath: string }[] }[];
            volumes: { projected: { sources: { serviceAccountToken: { path: string; audience: string } }[] } }[];
          };
        };
      };
    };
    const pod = deployment.spec.template.spec;
    const projected = pod.volumes[0]?.projected.sources[0]?.serviceAccountToken;
    expect(projected?.audience).toBe('coffer:acme');
    expect(`${pod.containers[0]?.volumeMounts[0]?.mountPath}/${projected?.path}`).toBe('/var/run/secrets/coffer/token');
    // The kubelet's part: a token of this pod's service account, with the projected audience.
    const tokenFile = path.join(dir, `k8s-token-${randomBytes(3).toString('hex')}`);
    const writeToken = async () =>
      writeFileSync(
        tokenFile,
        await mint(
          key,
          kubernetesClaims(
            cluster,
            deployment.metadata.namespace,
            pod.serviceAccountName,
            `coffer:${tenant.tenant.slug}`,
          ),
        ),
      );
    await writeToken();
    const command = pod.containers[0]?.command ?? [];
    const dashDash = command.indexOf('--');
    const args = [...command.slice(1, dashDash + 1), 'node', '-e', 'process.exit(process.env.DATABASE_URL ? 0 : 3)'];
    const env = {
      COFFER_URL: url,
      COFFER_IDENTITY: identity.identity.clientId,
      // Where the projected volume would be; the test cannot write /var/run.
      COFFER_TOKEN_FILE: tokenFile,
      COFFER_CONFIG_DIR: path.join(dir, `cfg-${randomBytes(3).toString('hex')}`),
    };
    expect((await runCli(args, { env })).code).toBe(0);
    // A container restart before the kubelet rotated the token: the used token is refused (replay)…
    const again = await runCli(args, { env });
    expect(again.code).toBe(4);
    // … and after the rotation the new one logs in.
    await writeToken();
    expect((await runCli(args, { env })).code).toBe(0);

    // `coffer login --identity --token-file` caches where the token comes from, and renews from it when the
    // Coffer token expires.
    await writeToken();
    const login = await runCli(['login', '--identity', identity.identity.clientId, '--token-file', tokenFile], {
      env: { COFFER_URL: url, COFFER_CONFIG_DIR: env.COFFER_CONFIG_DIR },
    });
    expect(login.code, login.stderr).toBe(0);
    const credentials = path.join(env.COFFER_CONFIG_DIR, 'credentials.json');
    const stored = JSON.parse(readFileSync(credentials, 'utf8')) as Record<string, unknown>;
    expect(stored.federation).toEqual({ identity: identity.identity.clientId, source: { file: tokenFile } });
    expect(JSON.stringify(stored)).not.toContain(readFileSync(tokenFile, 'utf8'));
    writeFileSync(credentials, JSON.stringify({ ...stored, expiresAt: Date.now() - 1000 }), { mode: 0o600 });
    await writeToken();
    const get = await runCli(['get', 'shared/payments/DATABASE_URL'], {
      env: { COFFER_URL: url, COFFER_CONFIG_DIR: env.COFFER_CONFIG_DIR },
    });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout.trim()).toBe('postgres://payments');
    const renewed = JSON.parse(readFileSync(credentials, 'utf8')) as { accessToken: string; expiresAt: number };
    expect(renewed.accessToken).not.toBe(stored.accessToken);
    expect(renewed.expiresAt).toBeGreaterThan(Date.now());
  });

  it('the SDK takes a token source and logs in with it', async () => {
    const tenant = await createTenant(t.app);
    const key = await signingKey('ES256');
    await admin(tenant, 'POST', '/v1/trust/issuers', {
      name: 'ci',
      issuer: 'https://ci.example',
      jwks: { keys: [key.publicJwk] },
      algorithms: ['ES256'],
    });
    const identity = (await admin(tenant, 'POST', '/v1/identities', {
      name: 'sdk-fed',
      role: 'service',
      policies: [{ path: 'sandbox/sbx-9/*', capabilities: ['read'] }],
      federation: [{ issuer: 'ci', subject: 'job-*' }],
    })) as CreateIdentityResponse;
    await admin(tenant, 'PUT', '/v1/secrets/sandbox/sbx-9/API_KEY', { value: 'sdk-fed-value' });
    const { CofferClient } = await import('@coffer/sdk');
    const audience = `coffer:${tenant.tenant.slug}`;
    const client = new CofferClient({
      baseUrl: url,
      federation: {
        identity: identity.identity.clientId,
        subjectToken: () => mint(key, { iss: 'https://ci.example', aud: audience, sub: 'job-42' }),
      },
    });
    expect((await client.getSecret('sandbox/sbx-9/API_KEY')).value).toBe('sdk-fed-value');
    const token = (
      await t.app.inject({ method: 'GET', url: '/v1/auth/whoami', headers: bearer(await client.accessToken()) })
    ).json() as { identityId: string };
    expect(token.identityId).toBe(identity.identity.id);
  });
});
