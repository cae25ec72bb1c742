import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliEntry } from '../support/build.ts';
import { baseEnv, cliTenant } from '../support/cli.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs the CLI on a pseudo-terminal (util-linux `script`), as a person at a terminal would: stdout and stderr are
 * both the terminal. `answer` is typed once the prompt it waits for appears.
 */
function onTerminal(args: string[], env: Record<string, string>, answer?: { after: string; type: string }) {
  const command = [process.execPath, cliEntry, ...args].map(quote).join(' ');
  return new Promise<{ code: number | null; screen: string }>((resolve) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      env: baseEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    let typed = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      screen += d;
      if (answer && !typed && screen.includes(answer.after)) {
        typed = true;
        child.stdin.write(answer.type);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      child.stdin.destroy();
      resolve({ code, screen });
    });
  });
}

describe('coffer on a terminal', () => {
  it('prompts for the client secret without echoing it', async () => {
    const c = await cliTenant(t, url);
    const r = await onTerminal(['login', '--client-id', c.admin.clientId], c.env, {
      after: 'Client secret: ',
      type: `${c.admin.clientSecret}\r`,
    });
    expect(r.code, r.screen).toBe(0);
    expect(r.screen).toContain('Logged in to');
    expect(r.screen).not.toContain(c.admin.clientSecret);
    const stored = JSON.parse(readFileSync(path.join(c.configDir, 'credentials.json'), 'utf8')) as { clientId: string };
    expect(stored.clientId).toBe(c.admin.clientId);
    c.cleanup();
  });

  it('uses colours only on a terminal and never with NO_COLOR', async () => {
    const c = await cliTenant(t, url);
    const manifest = path.join(c.configDir, 'm.json');
    writeFileSync(manifest, JSON.stringify({ secrets: [{ path: 'sandbox/a/DB', class: 'infrastructure' }] }));
    const coloured = await onTerminal(['plan', manifest, '--tier', 'desktop'], c.env);
    expect(coloured.screen).toContain('\u001b[31mstrip\u001b[39m');
    const plain = await onTerminal(['plan', manifest, '--tier', 'desktop'], { ...c.env, NO_COLOR: '1' });
    expect(plain.screen).toContain('strip');
    expect(plain.screen).not.toContain('\u001b[');
    const flag = await onTerminal(['--no-color', 'plan', manifest, '--tier', 'desktop'], c.env);
    expect(flag.screen).not.toContain('\u001b[');
    c.cleanup();
  });

  it('shows progress while importing and exporting, and only there', async () => {
    const c = await cliTenant(t, url);
    const file = path.join(c.configDir, 'many.env');
    writeFileSync(file, Array.from({ length: 50 }, (_, i) => `KEY_${i}=value-${i}`).join('\n'));
    const imported = await onTerminal(['import', file, '--bundle', 'sandbox/sbx-p'], c.env);
    expect(imported.code, imported.screen).toBe(0);
    expect(imported.screen).toContain('import sandbox/sbx-p: reading the bundle…');
    expect(imported.screen).toContain('import sandbox/sbx-p: writing 50/50…');
    expect(imported.screen).toContain('Imported into sandbox/sbx-p: 50 created');
    const exported = await onTerminal(
      ['export', '--bundle', 'sandbox/sbx-p', '--output', path.join(c.configDir, 'out.env')],
      c.env,
    );
    expect(exported.screen).toContain('export sandbox/sbx-p: writing 50 secrets…');
    expect(exported.screen).not.toContain('value-1');
    c.cleanup();
  });
});
