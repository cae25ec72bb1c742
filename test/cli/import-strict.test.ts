import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliTenant, runCli } from '../support/cli.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

describe('coffer import refuses what it cannot read and reads JSON', () => {
  it('names the malformed lines, never their text, and writes nothing', async () => {
    const c = await cliTenant(t, url);
    const file = path.join(c.configDir, 'bad.env');
    writeFileSync(file, '# ok\nGOOD=1\nthis line has no equals sign s3cr3t-v4lue\n\nMULTI="a\nb"\n= nameless\n');
    const r = await runCli(['import', file, '--bundle', 'sandbox/sbx-imp'], { env: c.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('lines 3, 7 are not KEY=value');
    expect(r.stderr).not.toContain('s3cr3t');
    const ls = await runCli(['ls', 'sandbox/sbx-imp', '--json'], { env: c.env });
    expect(JSON.parse(ls.stdout)).toEqual([]);
    c.cleanup();
  });

  it('imports a JSON object, as `export --format json` writes it, and refuses one with a non-string value', async () => {
    const c = await cliTenant(t, url);
    const file = path.join(c.configDir, 'bundle.json');
    writeFileSync(file, JSON.stringify({ API_TOKEN: 'tok', MOTD: 'first\nsecond' }, null, 2));
    const r = await runCli(['import', file, '--bundle', 'sandbox/sbx-json'], { env: c.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('2 created');
    const back = await runCli(['export', '--bundle', 'sandbox/sbx-json', '--format', 'json'], { env: c.env });
    expect(JSON.parse(back.stdout)).toEqual({ API_TOKEN: 'tok', MOTD: 'first\nsecond' });

    writeFileSync(file, JSON.stringify({ PORT: 8080 }));
    const bad = await runCli(['import', file, '--bundle', 'sandbox/sbx-json'], { env: c.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('the values of PORT are not strings');
    c.cleanup();
  });
});
