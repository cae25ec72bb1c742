import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { AuditEventView } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import { cliTenant, runCli, spawnCli } from '../support/cli.ts';
import { bearer, createIdentity } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

const ndjson = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEventView);

describe('coffer audit', () => {
  it('lists events oldest first with filters, as a table or one JSON object per line, never a value', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'sandbox/sbx-a/ONE', '--value', 'audit-value-1'], { env: c.env });
    await runCli(['set', 'sandbox/sbx-a/TWO', '--value', 'audit-value-2'], { env: c.env });
    await runCli(['get', 'sandbox/sbx-a/ONE'], { env: c.env });

    const all = await runCli(['audit', '--json', '--limit', '100'], { env: c.env });
    expect(all.code).toBe(0);
    const events = ndjson(all.stdout);
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(events.map((e) => `${e.action} ${e.resource ?? ''}`)).toEqual(
      expect.arrayContaining([
        'secrets.write sandbox/sbx-a/ONE',
        'secrets.write sandbox/sbx-a/TWO',
        'secrets.read sandbox/sbx-a/ONE',
      ]),
    );
    expect(all.stdout).not.toContain('audit-value');

    const writes = ndjson(
      (await runCli(['audit', '--json', '--action', 'secrets.write', '--path', 'sandbox/sbx-a/T'], { env: c.env }))
        .stdout,
    );
    expect(writes.map((e) => e.resource)).toEqual(['sandbox/sbx-a/TWO']);

    const table = await runCli(['audit', '--action', 'secrets.', '--since', '1h'], { env: c.env });
    expect(table.stdout).toMatch(/allowed\s+secrets\.read\s+sandbox\/sbx-a\/ONE@1/);

    const none = await runCli(['audit', '--path', 'sandbox/nothing-here/'], { env: c.env });
    expect(none).toMatchObject({ code: 0, stdout: '' });
    expect(none.stderr).toContain('No audit events match');

    const badSince = await runCli(['audit', '--since', 'yesterday-ish'], { env: c.env });
    expect(badSince.code).toBe(2);
    c.cleanup();
  });

  it('--follow prints new events as they happen, without its own polls, and stops on Ctrl-C', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'sandbox/sbx-f/BEFORE', '--value', 'x'], { env: c.env });
    const follow = spawnCli(['audit', '--follow', '--interval', '1', '--json'], { env: c.env });
    await follow.waitFor('sandbox/sbx-f/BEFORE');
    const initial = follow.output.stdout.length;
    await t.app.inject({
      method: 'PUT',
      url: '/v1/secrets/sandbox/sbx-f/AFTER',
      headers: bearer(c.adminToken),
      payload: { value: 'y' },
    });
    await follow.waitFor('sandbox/sbx-f/AFTER');
    // Let a few more polls happen: none of them may show up.
    await new Promise((r) => setTimeout(r, 2500));
    follow.child.kill('SIGINT');
    const { code } = await follow.exited;
    expect(code).toBe(0);
    const followed = ndjson(follow.output.stdout.slice(initial));
    expect(followed.map((e) => e.action)).toEqual(['secrets.write']);
    c.cleanup();
  });

  it('verifies the chain and streams an export as NDJSON or CSV', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'sandbox/sbx-v/A', '--value', 'x'], { env: c.env });
    const verify = await runCli(['audit', 'verify'], { env: c.env });
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/^ok: \d+ events and \d+ signed checkpoints verified/);
    const vJson = JSON.parse((await runCli(['audit', 'verify', '--json'], { env: c.env })).stdout);
    expect(vJson).toMatchObject({ ok: true });

    const exported = await runCli(['audit', 'export'], { env: c.env });
    expect(exported.code).toBe(0);
    expect(ndjson(exported.stdout).some((e) => e.resource === 'sandbox/sbx-v/A' && e.action === 'secrets.write')).toBe(
      true,
    );

    const file = path.join(c.configDir, 'audit.csv');
    const csv = await runCli(['audit', 'export', '--format', 'csv', '--output', file], { env: c.env });
    expect(csv.code).toBe(0);
    expect(csv.stderr).toMatch(/Wrote \d+ events to/);
    const text = readFileSync(file, 'utf8');
    expect(text.split('\n')[0]).toContain('action');
    expect(text).toContain('sandbox/sbx-v/A');
    c.cleanup();
  });

  it('is denied (exit 4) to a service identity', async () => {
    const c = await cliTenant(t, url);
    const svc = await createIdentity(t.app, c.adminToken, {
      role: 'service',
      policies: [{ path: 'sandbox/x/*', capabilities: ['read'] }],
    });
    const env = { ...c.env, COFFER_CLIENT_ID: svc.identity.clientId, COFFER_CLIENT_SECRET: svc.clientSecret };
    const r = await runCli(['audit'], { env });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('forbidden');
    c.cleanup();
  });
});
