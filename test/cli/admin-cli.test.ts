import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { cliTenant, rootSecret, runCli } from '../support/cli.ts';
import { uniqueSlug } from '../support/factories.ts';
import { mint, signingKey } from '../support/issuers.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

const ok = (r: { code: number | null; stderr: string }) => expect(r.code, r.stderr).toBe(0);

describe('coffer identities', () => {
  it('creates a service identity with policies, prints its secret once on stdout, and the secret logs in', async () => {
    const c = await cliTenant(t, url);
    const created = await runCli(
      ['identities', 'create', 'billing-api', '--policy', 'sandbox/sbx-1/*:read,list', '--policy', 'shared/ops/*:read'],
      { env: c.env },
    );
    ok(created);
    const secret = created.stdout.trim();
    expect(secret).toMatch(/^\S{16,}$/); // the secret alone, so `> file` keeps only it
    expect(created.stderr).not.toContain(secret);
    const id = /\(([0-9a-f-]{36})\)/.exec(created.stderr)?.[1] as string;
    const clientId = /client id (\S+)\./.exec(created.stderr)?.[1] as string;

    const me = await runCli(['whoami', '--json'], {
      env: {
        COFFER_URL: url,
        COFFER_CONFIG_DIR: c.configDir,
        COFFER_CLIENT_ID: clientId,
        COFFER_CLIENT_SECRET: secret,
      },
    });
    ok(me);
    expect(JSON.parse(me.stdout)).toMatchObject({
      role: 'service',
      policies: [
        { path: 'sandbox/sbx-1/*', capabilities: ['read', 'list'] },
        { path: 'shared/ops/*', capabilities: ['read'] },
      ],
    });

    const ls = await runCli(['identities', 'ls'], { env: c.env });
    ok(ls);
    expect(ls.stdout).toMatch(/billing-api\s+service/);

    ok(await runCli(['identities', 'update', id, '--policy', 'sandbox/sbx-2/*:read', '--disable'], { env: c.env }));
    const shown = await runCli(['identities', 'show', id, '--json'], { env: c.env });
    expect(JSON.parse(shown.stdout)).toMatchObject({
      disabled: true,
      policies: [{ path: 'sandbox/sbx-2/*', capabilities: ['read'] }],
    });

    const rotated = await runCli(['identities', 'rotate-secret', id], { env: c.env });
    ok(rotated);
    expect(rotated.stdout.trim()).not.toBe(secret);
    ok(await runCli(['identities', 'rm', id], { env: c.env }));
    expect((await runCli(['identities', 'show', id], { env: c.env })).code).toBe(3);
    c.cleanup();
  });

  it('refuses a malformed --policy before sending anything', async () => {
    const c = await cliTenant(t, url);
    const r = await runCli(['identities', 'create', 'x', '--policy', 'sandbox/sbx-1/*:fly'], { env: c.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--policy must be path:capability');
    c.cleanup();
  });
});

describe('coffer set with metadata, update, rotate with a generator, destroy, ls expiry', () => {
  it('sets an expiry, tags and a rotation policy so `coffer rotate` without a value works', async () => {
    const c = await cliTenant(t, url);
    const p = 'sandbox/sbx-9/SESSION_KEY';
    ok(
      await runCli(['set', p, '--value', 'a'.repeat(64), '--expires', '30d', '--tag', 'team=core', '--tag', 'tier=1'], {
        env: c.env,
      }),
    );
    ok(await runCli(['update', p, '--rotate-every', '90d', '--generator', 'hex:64', '--grace', '1h'], { env: c.env }));
    const meta = JSON.parse((await runCli(['get', p, '--json'], { env: c.env })).stdout) as Record<string, unknown>;
    expect(meta).toMatchObject({
      version: 1,
      tags: ['team=core', 'tier=1'],
      rotation: { intervalDays: 90, graceHours: 1, generator: { charset: 'hex', length: 64 } },
    });
    expect(Date.parse(meta.expiresAt as string)).toBeGreaterThan(Date.now() + 29 * 86_400_000);

    ok(await runCli(['rotate', p], { env: c.env }));
    const after = JSON.parse((await runCli(['get', p, '--json'], { env: c.env })).stdout) as { value: string };
    expect(after.value).toMatch(/^[0-9a-f]{64}$/);

    ok(await runCli(['destroy', p, '--version', '1', '--yes'], { env: c.env }));
    const history = await runCli(['history', p, '--json'], { env: c.env });
    expect(JSON.parse(history.stdout)).toContainEqual(expect.objectContaining({ version: 1, state: 'destroyed' }));
    c.cleanup();
  });

  it('lists soft-deleted secrets with --deleted, and only those, so one can be restored by name', async () => {
    const c = await cliTenant(t, url);
    ok(await runCli(['set', 'sandbox/sbx-del/KEEP', '--value', 'x'], { env: c.env }));
    ok(await runCli(['set', 'sandbox/sbx-del/GONE', '--value', 'x'], { env: c.env }));
    ok(await runCli(['rm', 'sandbox/sbx-del/GONE'], { env: c.env }));
    const live = JSON.parse((await runCli(['ls', 'sandbox/sbx-del', '--json'], { env: c.env })).stdout) as {
      name: string;
    }[];
    expect(live.map((m) => m.name)).toEqual(['KEEP']);
    const deleted = await runCli(['ls', 'sandbox/sbx-del', '--deleted'], { env: c.env });
    ok(deleted);
    expect(deleted.stdout).toContain('sandbox/sbx-del/GONE');
    expect(deleted.stdout).not.toContain('KEEP');
    ok(await runCli(['restore', 'sandbox/sbx-del/GONE'], { env: c.env }));
    expect((await runCli(['ls', 'sandbox/sbx-del', '--deleted', '--json'], { env: c.env })).stdout.trim()).toBe('[]');
    c.cleanup();
  });

  it('shows an expired secret as expired in `coffer ls`', async () => {
    const c = await cliTenant(t, url);
    ok(await runCli(['set', 'sandbox/sbx-8/FRESH', '--value', 'x', '--expires', '30d'], { env: c.env }));
    ok(await runCli(['set', 'sandbox/sbx-8/STALE', '--value', 'x', '--expires', '1d'], { env: c.env }));
    // The server refuses a past expiry, so time passes in the database, as it would.
    await t.db.withTenant(c.tenant.id, async (tx) => {
      await tx.execute(sql`update coffer.secrets set expires_at = '2020-01-01T00:00:00Z' where name = 'STALE'`);
    });
    const ls = await runCli(['ls', 'sandbox/sbx-8'], { env: c.env });
    ok(ls);
    expect(ls.stdout).toContain('EXPIRES');
    expect(ls.stdout).toMatch(/STALE.*expired 2020-01-01/);
    expect(ls.stdout).not.toMatch(/FRESH.*expired/);
    c.cleanup();
  });
});

describe('coffer webhooks, keys, rotation, audit summary and status', () => {
  it('covers the tenant admin routes end to end', async () => {
    const c = await cliTenant(t, url);
    const hook = await runCli(['webhooks', 'create', 'https://hooks.example/coffer', '--event', 'secret.rotated'], {
      env: c.env,
    });
    ok(hook);
    const signing = hook.stdout.trim();
    expect(signing.length).toBeGreaterThan(16);
    const list = JSON.parse((await runCli(['webhooks', 'ls', '--json'], { env: c.env })).stdout) as { id: string }[];
    expect(list).toHaveLength(1);
    const id = list[0]?.id as string;
    ok(await runCli(['webhooks', 'deliveries', id], { env: c.env }));
    ok(await runCli(['webhooks', 'rm', id], { env: c.env }));

    const keys = JSON.parse((await runCli(['keys', 'ls', '--json'], { env: c.env })).stdout) as {
      activeVersion: number;
    };
    const rotated = await runCli(['keys', 'rotate', '--json'], { env: c.env });
    ok(rotated);
    expect(JSON.parse(rotated.stdout)).toMatchObject({ keyVersion: keys.activeVersion + 1 });

    ok(await runCli(['set', 'sandbox/sbx-7/K', '--value', 'x', '--rotate-every', '1d'], { env: c.env }));
    const due = await runCli(['rotation', 'due', '--within', '2d', '--json'], { env: c.env });
    ok(due);
    expect(JSON.parse(due.stdout)).toContainEqual(expect.objectContaining({ path: 'sandbox/sbx-7/K', overdue: false }));
    ok(await runCli(['rotate', 'sandbox/sbx-7/K', '--value', 'y'], { env: c.env }));
    const log = await runCli(['rotation', 'log', '--json'], { env: c.env });
    expect(JSON.parse(log.stdout)).toContainEqual(expect.objectContaining({ path: 'sandbox/sbx-7/K', toVersion: 2 }));

    const summary = await runCli(['audit', 'summary', '--since', '1h', '--json'], { env: c.env });
    ok(summary);
    expect((JSON.parse(summary.stdout) as { total: number }).total).toBeGreaterThan(0);

    const status = await runCli(['status'], { env: { COFFER_URL: url } });
    ok(status);
    expect(status.stdout).toMatch(/ready\s+yes/);
    c.cleanup();
  });

  it('lets the platform admin manage tenants and master keys', async () => {
    const env = { COFFER_URL: url, COFFER_CLIENT_ID: 'root', COFFER_CLIENT_SECRET: rootSecret() };
    const slug = uniqueSlug();
    const created = await runCli(['tenants', 'create', slug, '--name', 'Acme'], { env });
    ok(created);
    const adminSecret = created.stdout.trim();
    expect(created.stderr).not.toContain(adminSecret);
    const tenants = JSON.parse((await runCli(['tenants', 'ls', '--json'], { env })).stdout) as {
      id: string;
      slug: string;
    }[];
    const id = tenants.find((x) => x.slug === slug)?.id as string;
    ok(await runCli(['tenants', 'update', id, '--name', 'Acme Corp', '--rate-limit', '50'], { env }));
    const shown = JSON.parse((await runCli(['tenants', 'show', id, '--json'], { env })).stdout) as unknown;
    expect(shown).toMatchObject({ slug, name: 'Acme Corp', rateLimitPerSecond: 50 });

    const keys = await runCli(['system', 'keys', '--json'], { env });
    ok(keys);
    expect(JSON.parse(keys.stdout)).toHaveProperty('activeMasterKeyId');
    const rewrap = await runCli(['system', 'rewrap', '--json'], { env });
    ok(rewrap);
    expect(JSON.parse(rewrap.stdout)).toMatchObject({ remaining: 0 });
  });
});

describe('coffer trust and workload bindings', () => {
  it('trusts an issuer from a JWKS file, binds an identity to it, logs in with a minted token, then unbinds and removes it', async () => {
    const c = await cliTenant(t, url);
    const key = await signingKey('ES256');
    const jwksFile = path.join(c.configDir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
    const iss = `https://ci-${c.tenant.slug}.example`;
    const created = await runCli(['trust', 'create', 'ci', '--issuer', iss, '--jwks-file', jwksFile, '--json'], {
      env: c.env,
    });
    ok(created);
    const issuer = JSON.parse(created.stdout) as { id: string; audiences: string[] };
    expect(issuer.audiences).toEqual([`coffer:${c.tenant.slug}`]);
    expect(JSON.parse((await runCli(['trust', 'ls', '--json'], { env: c.env })).stdout)).toHaveLength(1);
    ok(await runCli(['trust', 'update', issuer.id, '--clock-skew', '5'], { env: c.env }));
    const shown = await runCli(['trust', 'show', issuer.id], { env: c.env });
    ok(shown);
    expect(shown.stdout).toMatch(/clock skew\s+5s/);
    expect(shown.stdout).toMatch(/keys\s+1 inline key/);

    const binding = JSON.stringify({ issuer: 'ci', subject: 'job:deploy' });
    const ident = await runCli(['identities', 'create', 'deployer', '--federation', binding, '--json'], {
      env: c.env,
    });
    ok(ident);
    const { identity } = JSON.parse(ident.stdout) as { identity: { id: string; clientId: string } };
    const tokenFile = path.join(c.configDir, 'platform-token');
    writeFileSync(tokenFile, await mint(key, { iss, aud: `coffer:${c.tenant.slug}`, sub: 'job:deploy' }));
    const wl = { COFFER_URL: url, COFFER_CONFIG_DIR: path.join(c.configDir, 'workload') };
    ok(await runCli(['login', '--identity', identity.clientId, '--token-file', tokenFile], { env: wl }));
    expect(JSON.parse((await runCli(['whoami', '--json'], { env: wl })).stdout)).toMatchObject({ name: 'deployer' });

    // Refused while an identity is bound to it; once unbound it goes.
    expect((await runCli(['trust', 'rm', issuer.id], { env: c.env })).code).toBe(1);
    ok(await runCli(['identities', 'update', identity.id, '--no-federation'], { env: c.env }));
    ok(await runCli(['trust', 'rm', issuer.id], { env: c.env }));
    expect((await runCli(['trust', 'show', issuer.id], { env: c.env })).code).toBe(3);
    c.cleanup();
  });

  it('refuses a --federation that is not a binding, and a create without a key source, before sending anything', async () => {
    const c = await cliTenant(t, url);
    const bad = await runCli(['identities', 'create', 'x', '--federation', '{"issuer":"ci"}'], { env: c.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--federation must be a binding');
    const nokeys = await runCli(['trust', 'create', 'ci', '--issuer', 'https://x.example'], { env: c.env });
    expect(nokeys.code).toBe(2);
    expect(nokeys.stderr).toContain('--discovery, --jwks-uri or --jwks-file');
    c.cleanup();
  });
});

describe('coffer platform-admins', () => {
  it('creates, lists, disables, enables and rotates a platform admin; the new secret logs in', async () => {
    const env = { COFFER_URL: url, COFFER_CLIENT_ID: 'root', COFFER_CLIENT_SECRET: rootSecret() };
    const name = `ops-${uniqueSlug()}`;
    const created = await runCli(['platform-admins', 'create', name, '--json'], { env });
    ok(created);
    const { admin } = JSON.parse(created.stdout) as { admin: { id: string; clientId: string } };
    const listed = JSON.parse((await runCli(['platform-admins', 'ls', '--json'], { env })).stdout) as { id: string }[];
    expect(listed.map((a) => a.id)).toContain(admin.id);
    const off = await runCli(['platform-admins', 'update', admin.id, '--disable', '--json'], { env });
    ok(off);
    expect(JSON.parse(off.stdout)).toMatchObject({ disabled: true });
    ok(await runCli(['platform-admins', 'update', admin.id, '--enable'], { env }));
    const rotated = await runCli(['platform-admins', 'rotate-secret', admin.id], { env });
    ok(rotated);
    const secret = rotated.stdout.trim();
    expect(rotated.stderr).not.toContain(secret);
    const me = await runCli(['whoami', '--json'], {
      env: { COFFER_URL: url, COFFER_CLIENT_ID: admin.clientId, COFFER_CLIENT_SECRET: secret },
    });
    ok(me);
    expect(JSON.parse(me.stdout)).toMatchObject({ name });
    expect((await runCli(['platform-admins', 'update', admin.id], { env })).code).toBe(2);
  });
});
