import { type IntakeLink, SecretWithValue } from '@coffer/contracts';
import { describe, expect, it } from 'vitest';
import { cliTenant, runCli } from '../support/cli.ts';
import { bearer } from '../support/factories.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

describe('coffer intake', () => {
  it('create prints only the URL; the person submits through it with no login; ls and revoke see the links', async () => {
    const c = await cliTenant(t, url);
    try {
      const created = await runCli(
        [
          'intake',
          'create',
          'shared/payments/STRIPE_KEY',
          '--label',
          'Stripe secret key',
          '--help',
          'Dashboard → Developers → API keys',
          '--format',
          'stripe-secret-key',
          '--expires-in',
          '1h',
        ],
        { env: c.env },
      );
      expect(created.code, created.stderr).toBe(0);
      const link = created.stdout.trim();
      expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/intake\/[A-Za-z0-9_-]{43}$/);
      expect(created.stderr).toMatch(/^Link [0-9a-f-]{36} into shared\/payments\/STRIPE_KEY \(default\), until /);
      const token = link.split('/').pop() as string;
      const asJson = await runCli(
        ['intake', 'create', 'shared/payments/OTHER', '--label', 'Other', '--expires-in', '600', '--json'],
        { env: c.env },
      );
      const other = JSON.parse(asJson.stdout) as { id: string; url: string };

      // The person: no config dir, no credentials; the server is reached at --url, the link names only the token.
      const person = { HOME: '/nonexistent', COFFER_CONFIG_DIR: '/nonexistent' };
      const bad = await runCli(['intake', 'submit', token, '--url', url], { env: person, input: 'pk_nope\n' });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('Stripe secret key (for STRIPE_KEY, format stripe-secret-key)');
      expect(bad.stderr).toContain('Dashboard → Developers → API keys');
      expect(bad.stderr).toMatch(/unprocessable/);
      expect(bad.stderr).not.toContain('pk_nope');
      // The whole link: it names its server.
      const good = await runCli(['intake', 'submit', link], {
        env: person,
        input: 'sk_test_0123456789abcdefXYZ\n',
      });
      expect(good.code, good.stderr).toBe(0);
      expect(good.stderr).toContain('Received: STRIPE_KEY is stored');
      const again = await runCli(['intake', 'submit', token, '--url', url], { env: person, input: 'sk_test_x\n' });
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/already used: ask for a new one \(gone/);
      const stored = await t.app.inject({
        url: '/v1/secrets/shared/payments/STRIPE_KEY',
        headers: bearer(c.adminToken),
      });
      expect(SecretWithValue.parse(stored.json()).value).toBe('sk_test_0123456789abcdefXYZ');

      const revoked = await runCli(['intake', 'revoke', other.id], { env: c.env });
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.stderr).toContain(`Revoked ${other.id} (shared/payments/OTHER).`);
      const listed = await runCli(['intake', 'ls', '--json'], { env: c.env });
      expect((JSON.parse(listed.stdout) as IntakeLink[]).map((l) => [l.path, l.state])).toEqual([
        ['shared/payments/OTHER', 'revoked'],
        ['shared/payments/STRIPE_KEY', 'received'],
      ]);
      const table = await runCli(['intake', 'ls', '--state', 'received'], { env: c.env });
      expect(table.stdout).toMatch(/^ID\s+STATE\s+PATH\s+ENV\s+LABEL\s+WHEN\n/);
      expect(table.stdout.trim().split('\n')).toHaveLength(2);
      expect(table.stdout).not.toContain(token);
      expect((await runCli(['intake', 'revoke', other.id], { env: c.env })).code).toBe(1);
    } finally {
      c.cleanup();
    }
  });

  it('refuses bad arguments as usage errors, and --help without text shows the page', async () => {
    const c = await cliTenant(t, url);
    try {
      for (const args of [
        ['intake', 'create', 'shared/app/KEY'],
        ['intake', 'create', '--label', 'x'],
        ['intake', 'create', 'shared/app/KEY', '--label', 'x', '--expires-in', '30s'],
        ['intake', 'create', 'shared/app/KEY', '--label', 'x', '--expires-in', '8d'],
        ['intake', 'create', 'shared/app', '--label', 'x'],
        ['intake', 'create', 'shared/app/KEY', '--label', 'x', '--format', 'nonsense'],
        ['intake', 'ls', '--state', 'open'],
        ['intake', 'submit', 'https://coffer.example.com/v1/intake/'],
      ]) {
        const r = await runCli(args, { env: c.env });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      }
      const help = await runCli(['intake', 'create', '--help'], { env: c.env });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('--help [text]');
      expect(help.stdout).toContain('(default: 24h)');
      // In an environment the link is made there.
      await t.app.inject({
        method: 'POST',
        url: '/v1/environments',
        headers: bearer(c.adminToken),
        payload: { slug: 'staging', name: 'Staging' },
      });
      const staged = await runCli(
        ['intake', 'create', 'shared/app/KEY', '--label', 'Key', '--env', 'staging', '--json'],
        {
          env: c.env,
        },
      );
      expect(JSON.parse(staged.stdout)).toMatchObject({ path: 'shared/app/KEY', environment: 'staging' });
    } finally {
      c.cleanup();
    }
  });
});
