import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { CreatedDeployment, Deployment, DeploymentPlan } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { type CliTenant, cliTenant, runCli } from '../support/cli.ts';
import { createIdentity } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

/** `coffer …` as the tenant's admin; fails the test with the CLI's own output when it does not exit 0. */
async function ok(c: CliTenant, args: string[], env: Record<string, string> = c.env): Promise<string> {
  const r = await runCli(args, { env });
  expect(r.code, `coffer ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

const MANIFEST = {
  secrets: [
    { path: 'sandbox/app/DATABASE_URL', class: 'infrastructure', ownerTeam: 'platform', contact: '#platform' },
    {
      path: 'sandbox/app/SESSION_KEY',
      class: 'service',
      ownerTeam: 'web',
      strategy: { local: { action: 'generate', generator: { length: 32, charset: 'hex' } } },
    },
    { path: 'sandbox/app/OPENAI_KEY', class: 'user', tiers: { desktop: 'prompt' } },
    { path: 'sandbox/app/FEATURE_FLAGS', maxAgeDays: 30 },
  ],
};

async function seeded(): Promise<CliTenant & { manifest: string }> {
  const c = await cliTenant(t, url);
  await ok(c, ['set', 'sandbox/app/DATABASE_URL', '--value', 'postgres://app:pw@db.internal:5432/app']);
  await ok(c, ['set', 'sandbox/app/SESSION_KEY', '--value', 'aa'.repeat(16)]);
  await ok(c, ['set', 'sandbox/app/OPENAI_KEY', '--value', 'sk-user-own-key']);
  await ok(c, ['set', 'sandbox/app/FEATURE_FLAGS', '--value', '{"beta":true}']);
  const manifest = path.join(c.configDir, 'secrets.yaml');
  writeFileSync(manifest, YAML.stringify(MANIFEST));
  return { ...c, manifest };
}

describe('coffer manifest push|pull and coffer plan from the server', () => {
  it("push stores the manifest's strategy on the server; plan --bundle reads it; pull writes it back", async () => {
    const c = await seeded();
    const pushed = await runCli(['manifest', 'push', c.manifest], { env: c.env });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(/✓ sandbox\/app\/SESSION_KEY {2}class, strategy, ownerTeam/);
    expect(pushed.stdout).toMatch(/- sandbox\/app\/FEATURE_FLAGS {2}nothing to push/);

    const plan = JSON.parse(
      await ok(c, ['plan', '--bundle', 'sandbox/app', '--tier', 'local', '--json']),
    ) as DeploymentPlan;
    expect(Object.fromEntries(plan.plan.map((i) => [i.path.split('/')[2], i.action]))).toEqual({
      DATABASE_URL: 'strip',
      FEATURE_FLAGS: 'inject',
      OPENAI_KEY: 'prompt',
      SESSION_KEY: 'generate',
    });
    // The offline plan of the manifest (which needs a class for each secret), and coffer deploy plan.
    const classified = path.join(c.configDir, 'classified.yaml');
    writeFileSync(classified, YAML.stringify({ secrets: MANIFEST.secrets.filter((s) => s.class !== undefined) }));
    const offline = JSON.parse(await ok(c, ['plan', classified, '--tier', 'desktop', '--json'])) as {
      secrets: { path: string; action: string; why: string }[];
    };
    expect(offline.secrets.find((s) => s.path.endsWith('/OPENAI_KEY'))?.why).toContain(
      'set for desktop in the manifest',
    );
    const table = await ok(c, ['deploy', 'plan', '--bundle', 'sandbox/app', '--tier', 'desktop']);
    expect(table.split('\n')[0]).toMatch(/^PATH\s+CLASS\s+ACTION\s+VERSION\s+WHY$/);
    expect(table).toMatch(/sandbox\/app\/OPENAI_KEY\s+user\s+prompt\s+.*"OPENAI_KEY"/);

    // pull: a new file from the bundle, then an edit on the server comes back into the original file.
    const fresh = path.join(c.configDir, 'pulled.json');
    await ok(c, ['manifest', 'pull', fresh, '--bundle', 'sandbox/app']);
    const pulled = JSON.parse(readFileSync(fresh, 'utf8')) as { secrets: Record<string, unknown>[] };
    expect(pulled.secrets.map((s) => s.path)).toEqual([
      'sandbox/app/DATABASE_URL',
      'sandbox/app/FEATURE_FLAGS',
      'sandbox/app/OPENAI_KEY',
      'sandbox/app/SESSION_KEY',
    ]);
    expect(pulled.secrets[2]).toEqual({
      path: 'sandbox/app/OPENAI_KEY',
      class: 'user',
      strategy: { desktop: { action: 'prompt' } },
    });
    await t.app.inject({
      method: 'PATCH',
      url: '/v1/secrets/sandbox/app/FEATURE_FLAGS',
      headers: { authorization: `Bearer ${c.adminToken}` },
      payload: { ownerTeam: 'growth', contact: 'growth@example.com' },
    });
    await ok(c, ['manifest', 'pull', c.manifest]);
    const back = YAML.parse(readFileSync(c.manifest, 'utf8')) as { secrets: Record<string, unknown>[] };
    expect(back.secrets.find((s) => s.path === 'sandbox/app/FEATURE_FLAGS')).toEqual({
      path: 'sandbox/app/FEATURE_FLAGS',
      maxAgeDays: 30,
      ownerTeam: 'growth',
      contact: 'growth@example.com',
    });
    // The pulled file is still a manifest coffer check reads.
    await ok(c, ['check', c.manifest]);

    // A secret the manifest names that the server lacks fails the push, by name, exit 1.
    const broken = path.join(c.configDir, 'broken.yaml');
    writeFileSync(broken, YAML.stringify({ secrets: [{ path: 'sandbox/app/NOPE', class: 'user' }] }));
    const refused = await runCli(['manifest', 'push', broken], { env: c.env });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/✗ sandbox\/app\/NOPE {2}secret not found/);
    c.cleanup();
  });
});

describe('coffer deploy and coffer run --deployment', () => {
  it("a deployment's record is exact after coffer run --deployment: path@version, when, by whom", async () => {
    const c = await seeded();
    await ok(c, ['manifest', 'push', c.manifest]);
    const generatedFile = path.join(c.configDir, 'generated.env');
    const created = await runCli(
      [
        'deploy',
        'create',
        '--name',
        'laptop-1',
        '--bundle',
        'sandbox/app',
        '--tier',
        'local',
        '--output',
        generatedFile,
      ],
      { env: c.env },
    );
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.split('\n')[0] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.stderr).toContain('1 generated, 1 injected, 1 prompted, 1 stripped');
    const generated = readFileSync(generatedFile, 'utf8');
    const sessionKey = /^SESSION_KEY='([0-9a-f]{32})'$/m.exec(generated)?.[1];
    expect(sessionKey).toBeDefined();
    expect(created.stdout).not.toContain(sessionKey as string);

    // The deployment runs as its own service identity, which may only read.
    const runner = await createIdentity(t.app, c.adminToken, {
      role: 'service',
      name: 'laptop-runner',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'] }],
    });
    const asRunner = {
      ...c.env,
      COFFER_CLIENT_ID: runner.identity.clientId,
      COFFER_CLIENT_SECRET: runner.clientSecret,
    };
    const script =
      'const e = process.env; console.log(JSON.stringify({ SESSION_KEY: e.SESSION_KEY ?? null, ' +
      'FEATURE_FLAGS: e.FEATURE_FLAGS ?? null, DATABASE_URL: e.DATABASE_URL ?? null, OPENAI_KEY: e.OPENAI_KEY ?? null }))';
    const ran = await runCli(['run', '--deployment', id, '--', process.execPath, '-e', script], { env: asRunner });
    expect(ran.code, ran.stderr).toBe(0);
    // What the plan injects, and the deployment's own generated value; nothing stripped or prompted.
    expect(JSON.parse(ran.stdout)).toEqual({
      SESSION_KEY: sessionKey,
      FEATURE_FLAGS: '{"beta":true}',
      DATABASE_URL: null,
      OPENAI_KEY: null,
    });

    const shown = JSON.parse(await ok(c, ['deploy', 'show', id, '--json'])) as Deployment;
    expect(shown.received.map((r) => [r.path, r.version, r.action, r.via, r.by.name, r.by.id, r.reads]).sort()).toEqual(
      [
        ['sandbox/app/FEATURE_FLAGS', 1, 'inject', 'run', 'laptop-runner', runner.identity.id, 1],
        ['sandbox/app/SESSION_KEY', 2, 'generate', 'created', expect.any(String), expect.any(String), 1],
        ['sandbox/app/SESSION_KEY', 2, 'generate', 'run', 'laptop-runner', runner.identity.id, 1],
      ].sort(),
    );
    const human = await ok(c, ['deploy', 'show', id]);
    expect(human).toContain('laptop-1');
    expect(human).toMatch(/sandbox\/app\/FEATURE_FLAGS@1\s+run\s+laptop-runner/);
    expect(human).not.toContain(sessionKey as string);
    const listed = await ok(c, ['deploy', 'ls', '--secret', 'sandbox/app/SESSION_KEY']);
    expect(listed).toContain(id);

    // --json answers once with the generated values (for pipelines); each deployment has its own.
    const second = JSON.parse(
      await ok(c, ['deploy', 'create', '--name', 'laptop-2', '--bundle', 'sandbox/app', '--tier', 'local', '--json']),
    ) as CreatedDeployment;
    expect(second.generated.SESSION_KEY).toMatch(/^[0-9a-f]{32}$/);
    expect(second.generated.SESSION_KEY).not.toBe(sessionKey);

    // Revoking the first rotates nothing (the second's value is current) and revokes its version; runs stop.
    const revoked = await runCli(['deploy', 'revoke', id, '--notes', 'laptop lost'], { env: c.env });
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toBe('revoked sandbox/app/SESSION_KEY@2\n');
    const refused = await runCli(['run', '--deployment', id, '--', process.execPath, '-e', '0'], { env: asRunner });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('was revoked');
    const again = await runCli(['deploy', 'revoke', second.id], { env: c.env });
    expect(again.stdout).toBe('rotated sandbox/app/SESSION_KEY: 3 → 4\nrevoked sandbox/app/SESSION_KEY@3\n');
    c.cleanup();
  });
});

describe('coffer consumers and coffer revoke', () => {
  it('names who still reads the old version, refuses to revoke it until they moved, then revokes it', async () => {
    const c = await seeded();
    const svc = await createIdentity(t.app, c.adminToken, {
      role: 'service',
      name: 'billing-api',
      policies: [{ path: 'sandbox/app/*', capabilities: ['read'] }],
    });
    const asSvc = { ...c.env, COFFER_CLIENT_ID: svc.identity.clientId, COFFER_CLIENT_SECRET: svc.clientSecret };
    const runEnv = ['run', '--bundle', 'sandbox/app', '--', process.execPath, '-e', '0'];
    await ok(c, runEnv, asSvc);
    await ok(c, [
      'rotate',
      'sandbox/app/DATABASE_URL',
      '--value',
      'postgres://app:pw2@db.internal/app',
      '--notes',
      'q3',
    ]);

    const before = await runCli(['consumers', 'sandbox/app/DATABASE_URL'], { env: c.env });
    expect(before.code, before.stderr).toBe(0);
    expect(before.stdout).toMatch(/billing-api\s+1\s+bundle\s+/);
    expect(before.stderr).toContain(
      '1 consumer read version 1 in the last 24 hours: not safe to revoke yet (billing-api)',
    );
    const refused = await runCli(['revoke', 'sandbox/app/DATABASE_URL', '--version', '1'], { env: c.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('billing-api');
    expect(refused.stderr).toContain('consumers_pending');

    await ok(c, runEnv, asSvc);
    const after = await runCli(['consumers', 'sandbox/app/DATABASE_URL', '--json'], { env: c.env });
    const parsed = JSON.parse(after.stdout) as { status: { safeToRevoke: boolean } };
    expect(parsed.status.safeToRevoke).toBe(true);
    const done = await runCli(['revoke', 'sandbox/app/DATABASE_URL', '--version', '1', '--notes', 'old password'], {
      env: c.env,
    });
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain('Revoked version 1 of sandbox/app/DATABASE_URL');
    const gone = await runCli(['get', 'sandbox/app/DATABASE_URL', '--version', '1'], { env: c.env });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('was revoked');
    const inventory = await ok(c, ['inventory']);
    expect(inventory).toMatch(/default\s+sandbox\/app\/DATABASE_URL/);
    c.cleanup();
  });
});
