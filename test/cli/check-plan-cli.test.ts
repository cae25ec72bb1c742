import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
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

const DB_URL = 'postgres://app:pw@db.internal:5432/app';

/** Moves a secret's clock in the real database, as time would: what the server then serves is what a user sees. */
async function age(c: CliTenant, name: string, set: 'expires' | 'version' | 'rotation', days: number): Promise<void> {
  const column = { expires: 'expires_at', rotation: 'next_rotation_at' } as const;
  await t.db.withTenant(c.tenant.id, async (tx) => {
    if (set === 'version') {
      await tx.execute(sql`update coffer.secret_versions v set created_at = now() - make_interval(days => ${days})
        from coffer.secrets s where v.secret_id = s.id and s.owner = 'sbx-chk' and s.name = ${name}`);
    } else {
      await tx.execute(
        sql`update coffer.secrets set ${sql.raw(column[set])} = now() - make_interval(days => ${days}) where owner = 'sbx-chk' and name = ${name}`,
      );
    }
  });
}

function writeManifest(c: CliTenant, name: string, secrets: unknown[]): string {
  const file = path.join(c.configDir, name);
  writeFileSync(file, name.endsWith('.json') ? JSON.stringify({ version: 1, secrets }) : YAML.stringify({ secrets }));
  return file;
}

describe('coffer check', () => {
  it('passes (exit 0) only when every secret holds', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'sandbox/sbx-chk/DATABASE_URL', '--value', DB_URL, '--format', 'postgres-url'], {
      env: c.env,
    });
    await runCli(['set', 'sandbox/sbx-chk/SESSION_KEY', '--value', 'abcdef0123456789'], { env: c.env });
    const manifest = writeManifest(c, 'deploy.yaml', [
      { path: 'sandbox/sbx-chk/DATABASE_URL', maxAgeDays: 90, class: 'infrastructure' },
      { path: 'sandbox/sbx-chk/SESSION_KEY', format: 'hex', maxAgeDays: 30, class: 'service' },
    ]);
    const r = await runCli(['check', manifest], { env: c.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('✓ sandbox/sbx-chk/DATABASE_URL  ok (version 1)');
    expect(r.stdout).toContain('✓ sandbox/sbx-chk/SESSION_KEY  ok (version 1)');
    expect(r.stderr).toContain('All 2 secrets');
    expect(r.stdout + r.stderr).not.toContain(DB_URL);
    c.cleanup();
  });

  it('fails (exit 1) naming each secret that is missing, deleted, expired, malformed or overdue', async () => {
    const c = await cliTenant(t, url);
    const put = (name: string, value: string, ...extra: string[]) =>
      runCli(['set', `sandbox/sbx-chk/${name}`, '--value', value, ...extra], { env: c.env });
    await put('GOOD', DB_URL, '--format', 'postgres-url');
    await put('DELETED', 'x');
    await runCli(['rm', 'sandbox/sbx-chk/DELETED'], { env: c.env });
    await put('EXPIRED', 'x');
    await age(c, 'EXPIRED', 'expires', 1);
    await put('MALFORMED', 'not a url at all');
    await put('STORED_FORMAT', 'abcd');
    await t.app.inject({
      method: 'PATCH',
      url: '/v1/secrets/sandbox/sbx-chk/STORED_FORMAT',
      headers: { authorization: `Bearer ${c.adminToken}` },
      payload: { format: 'uuid' },
    });
    await put('OLD', 'x');
    await age(c, 'OLD', 'version', 120);
    await put('SCHEDULED', 'x');
    await t.app.inject({
      method: 'PATCH',
      url: '/v1/secrets/sandbox/sbx-chk/SCHEDULED',
      headers: { authorization: `Bearer ${c.adminToken}` },
      payload: { rotation: { intervalDays: 30 } },
    });
    await age(c, 'SCHEDULED', 'rotation', 2);

    const manifest = writeManifest(c, 'deploy.json', [
      { path: 'sandbox/sbx-chk/GOOD', format: 'postgres-url', maxAgeDays: 90 },
      { path: 'sandbox/sbx-chk/MISSING' },
      { path: 'sandbox/sbx-chk/DELETED' },
      { path: 'sandbox/sbx-chk/EXPIRED' },
      { path: 'sandbox/sbx-chk/MALFORMED', format: 'url' },
      { path: 'sandbox/sbx-chk/STORED_FORMAT' },
      { path: 'sandbox/sbx-chk/OLD', maxAgeDays: 90 },
      { path: 'sandbox/sbx-chk/SCHEDULED' },
    ]);
    const r = await runCli(['check', manifest], { env: c.env });
    expect(r.code).toBe(1);
    const line = (name: string) => r.stdout.split('\n').find((l) => l.includes(`sandbox/sbx-chk/${name} `)) ?? '';
    expect(line('GOOD')).toContain('✓');
    expect(line('MISSING')).toMatch(/✗ .* missing: no such secret/);
    expect(line('DELETED')).toMatch(/✗ .* deleted: deleted at .*coffer restore sandbox\/sbx-chk\/DELETED/);
    expect(line('EXPIRED')).toMatch(/✗ .* expired: /);
    expect(line('MALFORMED')).toMatch(/✗ .* malformed: .*url: must be an absolute URL with a scheme and a host/);
    expect(line('STORED_FORMAT')).toMatch(/✗ .* malformed: .*uuid: must be a UUID/);
    expect(line('OLD')).toMatch(/✗ .* overdue: version 1 is 120\.0 days old .*allows 90/);
    expect(line('SCHEDULED')).toMatch(/✗ .* overdue: rotation was due at /);
    expect(r.stderr).toContain('7 of 8 secrets fail');
    expect(r.stdout + r.stderr).not.toContain('not a url at all');

    const json = JSON.parse((await runCli(['check', manifest, '--json'], { env: c.env })).stdout) as {
      ok: boolean;
      results: { path: string; problems: { reason: string }[] }[];
    };
    expect(json.ok).toBe(false);
    expect(
      Object.fromEntries(json.results.map((x) => [x.path.split('/')[2], x.problems.map((p) => p.reason)])),
    ).toEqual({
      GOOD: [],
      MISSING: ['missing'],
      DELETED: ['deleted'],
      EXPIRED: ['expired'],
      MALFORMED: ['malformed'],
      STORED_FORMAT: ['malformed'],
      OLD: ['overdue'],
      SCHEDULED: ['overdue'],
    });
    c.cleanup();
  });

  it('fails closed: no access is a failure, bad credentials exit 4, an invalid manifest exits 2', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'sandbox/sbx-chk/A', '--value', 'a-value-only-the-server-sees'], { env: c.env });
    const manifest = writeManifest(c, 'deploy.yaml', [
      { path: 'sandbox/sbx-chk/A', format: { minLength: 3 } },
      { path: 'sandbox/sbx-chk/OPTIONAL', required: false },
      { path: 'sandbox/other/B' },
    ]);
    // The gate's identity may list the sandbox, never read it: the server checks the values for it.
    const svc = await createIdentity(t.app, c.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/sbx-chk/*', capabilities: ['list'] }],
    });
    const asService = { ...c.env, COFFER_CLIENT_ID: svc.identity.clientId, COFFER_CLIENT_SECRET: svc.clientSecret };
    const r = await runCli(['check', manifest], { env: asService });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('✓ sandbox/sbx-chk/A  ok (version 1)');
    expect(r.stdout).toContain('✓ sandbox/sbx-chk/OPTIONAL  missing, not required');
    expect(r.stdout).toMatch(/✗ sandbox\/other\/B {2}denied: /);
    expect(r.stderr).toContain('1 of 3 secrets fail');
    expect(r.stdout + r.stderr).not.toContain('a-value-only-the-server-sees');
    // The old way reads each value in the CLI, which this identity may not do.
    const local = await runCli(['check', manifest, '--client-side'], { env: asService });
    expect(local.code).toBe(1);
    expect(local.stdout).toMatch(/✗ sandbox\/sbx-chk\/A {2}denied: /);

    const bad = await runCli(['check', manifest], {
      env: { ...asService, COFFER_CLIENT_SECRET: 'wrong-wrong-wrong-wrong' },
    });
    expect(bad.code).toBe(4);

    const invalid = path.join(c.configDir, 'invalid.yaml');
    writeFileSync(invalid, 'secrets:\n  - path: not-a-path\n    maxAgeDays: -1\n');
    const inv = await runCli(['check', invalid], { env: c.env });
    expect(inv.code).toBe(2);
    expect(inv.stderr).toContain('secrets.0.path');
    expect(inv.stderr).toContain('secrets.0.maxAgeDays');
    c.cleanup();
  });
});

describe('coffer plan', () => {
  it('says per tier what happens to each secret, from its class, as a table or JSON', async () => {
    const c = await cliTenant(t, url);
    const manifest = writeManifest(c, 'plan.yaml', [
      { path: 'sandbox/app/DATABASE_URL', class: 'infrastructure' },
      { path: 'sandbox/app/SESSION_KEY', class: 'service' },
      { path: 'sandbox/app/OPENAI_KEY', class: 'user' },
      { path: 'sandbox/app/TELEMETRY_KEY', class: 'infrastructure', tiers: { desktop: 'inject' } },
    ]);
    const expected = {
      local: ['strip', 'generate', 'prompt', 'strip'],
      desktop: ['strip', 'generate', 'prompt', 'inject'],
      cloud: ['inject', 'inject', 'prompt', 'inject'],
    };
    for (const [tier, actions] of Object.entries(expected)) {
      const json = await runCli(['plan', manifest, '--tier', tier, '--json']);
      expect(json.code).toBe(0);
      const plan = JSON.parse(json.stdout) as { tier: string; secrets: { path: string; action: string }[] };
      expect(plan.tier).toBe(tier);
      expect(
        plan.secrets.map((s) => s.action),
        tier,
      ).toEqual(actions);

      const table = await runCli(['plan', manifest, '--tier', tier]);
      expect(table.stdout.split('\n')[0]).toMatch(/^PATH\s+CLASS\s+ACTION\s+WHY$/);
      expect(table.stdout).toMatch(new RegExp(`sandbox/app/SESSION_KEY\\s+service\\s+${actions[1]}\\s`));
    }
    const desktop = await runCli(['plan', manifest, '--tier', 'desktop']);
    expect(desktop.stdout).toMatch(/DATABASE_URL\s+infrastructure\s+strip\s+never shipped to this tier/);
    expect(desktop.stdout).toMatch(/TELEMETRY_KEY\s+infrastructure\s+inject\s+.*set for desktop in the manifest/);

    const badTier = await runCli(['plan', manifest, '--tier', 'mainframe']);
    expect(badTier.code).toBe(2);
    const unclassified = writeManifest(c, 'noclass.json', [{ path: 'sandbox/app/X' }]);
    const nc = await runCli(['plan', unclassified, '--tier', 'cloud']);
    expect(nc.code).toBe(2);
    expect(nc.stderr).toContain('needs a class');
    c.cleanup();
  });
});
