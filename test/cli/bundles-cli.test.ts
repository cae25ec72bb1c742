import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { type CliTenant, cliTenant, runCli, spawnCli } from '../support/cli.ts';
import { listeningSuite } from '../support/suite.ts';
import type { TestApp } from '../support/test-app.ts';

let t: TestApp;
let url: string;
listeningSuite((s) => {
  ({ t, url } = s);
});

/** A .env file with everything that breaks naive parsers and writers. */
const TRICKY_ENV = `# database settings
PLAIN=hello
QUOTED="double # not a comment"
SINGLE='single $HOME stays literal'
EQUALS=postgres://u:p@h/db?sslmode=require&x=a=b==
MULTILINE="-----BEGIN KEY-----
line two
-----END KEY-----"
ESCAPED_NEWLINE="first\\nsecond"
UNICODE=grüße ✓ 🎉 日本語
EMPTY=
EMPTY_QUOTED=""
PADDED='  spaces kept  '
export EXPORTED=from-an-export-line
TRAILING=value # a trailing comment
QUOTES_INSIDE='she said "hi"'
APOSTROPHE="it's"
`;

const EXPECTED: Record<string, string> = {
  PLAIN: 'hello',
  QUOTED: 'double # not a comment',
  SINGLE: 'single $HOME stays literal',
  EQUALS: 'postgres://u:p@h/db?sslmode=require&x=a=b==',
  MULTILINE: '-----BEGIN KEY-----\nline two\n-----END KEY-----',
  ESCAPED_NEWLINE: 'first\nsecond',
  UNICODE: 'grüße ✓ 🎉 日本語',
  EMPTY: '',
  EMPTY_QUOTED: '',
  PADDED: '  spaces kept  ',
  EXPORTED: 'from-an-export-line',
  TRAILING: 'value',
  QUOTES_INSIDE: 'she said "hi"',
  APOSTROPHE: "it's",
};

async function importTricky(c: CliTenant, bundle: string): Promise<void> {
  const file = path.join(c.configDir, 'tricky.env');
  writeFileSync(file, TRICKY_ENV);
  const r = await runCli(['import', file, '--bundle', bundle], { env: c.env });
  expect(r.code, r.stderr).toBe(0);
}

describe('coffer import and export', () => {
  it('round-trips a tricky .env through the server in every format', async () => {
    const c = await cliTenant(t, url);
    await importTricky(c, 'sandbox/sbx-rt');

    // What the server holds is exactly what dotenv reads from the file.
    for (const [name, value] of Object.entries(EXPECTED)) {
      const got = await t.app.inject({
        url: `/v1/secrets/sandbox/sbx-rt/${name}`,
        headers: { authorization: `Bearer ${c.adminToken}` },
      });
      expect((got.json() as { value: string }).value, name).toBe(value);
    }

    const dotenv = await runCli(['export', '--bundle', 'sandbox/sbx-rt', '--format', 'dotenv'], { env: c.env });
    expect(dotenv.code).toBe(0);
    expect(parseDotenv(dotenv.stdout)).toEqual(EXPECTED);

    const json = await runCli(['export', '--bundle', 'sandbox/sbx-rt', '--format', 'json'], { env: c.env });
    expect(JSON.parse(json.stdout)).toEqual(EXPECTED);

    const yaml = await runCli(['export', '--bundle', 'sandbox/sbx-rt', '--format', 'yaml'], { env: c.env });
    expect(YAML.parse(yaml.stdout)).toEqual(EXPECTED);

    const shell = await runCli(['export', '--bundle', 'sandbox/sbx-rt', '--format', 'shell'], { env: c.env });
    const shellFile = path.join(c.configDir, 'vars.sh');
    writeFileSync(shellFile, shell.stdout);
    const sourced = execFileSync(
      'bash',
      [
        '--norc',
        '--noprofile',
        '-c',
        `set -e; . "$1"; node -e 'const k=JSON.parse(process.argv[1]); console.log(JSON.stringify(Object.fromEntries(k.map((n)=>[n,process.env[n]]))))' "$2"`,
        '_',
        shellFile,
        JSON.stringify(Object.keys(EXPECTED)),
      ],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } },
    );
    expect(JSON.parse(sourced)).toEqual(EXPECTED);

    // The exported .env, imported into another bundle, yields the same values again.
    const exported = path.join(c.configDir, 'exported.env');
    const toFile = await runCli(['export', '--bundle', 'sandbox/sbx-rt', '--output', exported], { env: c.env });
    expect(toFile.stdout).toBe('');
    expect(statSync(exported).mode & 0o777).toBe(0o600);
    expect((await runCli(['import', exported, '--bundle', 'sandbox/sbx-copy'], { env: c.env })).code).toBe(0);
    const copy = await runCli(['export', '--bundle', 'sandbox/sbx-copy', '--format', 'json'], { env: c.env });
    expect(JSON.parse(copy.stdout)).toEqual(EXPECTED);
    c.cleanup();
  });

  it('dry-runs an import: names what would change and never a value', async () => {
    const c = await cliTenant(t, url);
    await importTricky(c, 'sandbox/sbx-dry');
    const next = path.join(c.configDir, 'next.env');
    writeFileSync(next, 'PLAIN=hello\nQUOTED="a brand new value 8812"\nNEWCOMER=fresh-value-5531\n');
    const dry = await runCli(['import', next, '--bundle', 'sandbox/sbx-dry', '--dry-run'], { env: c.env });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('+ NEWCOMER  (new)');
    expect(dry.stdout).toContain('~ QUOTED  (changed: version 1 → 2)');
    expect(dry.stdout).toContain('= PLAIN  (unchanged)');
    expect(dry.stdout).toContain('MULTILINE  (not in the file: left as it is)');
    expect(dry.stderr).toContain('Nothing was written');
    for (const v of ['fresh-value-5531', 'a brand new value 8812', 'hello', 'double # not a comment']) {
      expect(dry.stdout + dry.stderr).not.toContain(v);
    }
    const json = JSON.parse(
      (await runCli(['import', next, '--bundle', 'sandbox/sbx-dry', '--dry-run', '--json'], { env: c.env })).stdout,
    );
    expect(json).toMatchObject({ dryRun: true, create: ['NEWCOMER'], update: ['QUOTED'], unchanged: ['PLAIN'] });

    // Nothing was written by the dry runs.
    const before = JSON.parse(
      (await runCli(['export', '--bundle', 'sandbox/sbx-dry', '--format', 'json'], { env: c.env })).stdout,
    );
    expect(before.NEWCOMER).toBeUndefined();
    expect(before.QUOTED).toBe('double # not a comment');

    const real = await runCli(['import', next, '--bundle', 'sandbox/sbx-dry'], { env: c.env });
    expect(real.code).toBe(0);
    expect(real.stderr).toContain('1 created, 1 changed, 1 unchanged');
    const after = JSON.parse(
      (await runCli(['export', '--bundle', 'sandbox/sbx-dry', '--format', 'json'], { env: c.env })).stdout,
    );
    expect(after).toMatchObject({
      NEWCOMER: 'fresh-value-5531',
      QUOTED: 'a brand new value 8812',
      PLAIN: 'hello',
      MULTILINE: EXPECTED.MULTILINE,
    });
    c.cleanup();
  });

  it('refuses a file with names that cannot be secrets, naming the key and not the value', async () => {
    const c = await cliTenant(t, url);
    const empty = await runCli(['export', '--bundle', 'sandbox/sbx-typo'], { env: c.env });
    expect(empty).toMatchObject({ code: 3, stdout: '' });
    expect(
      (await runCli(['export', '--bundle', 'sandbox/sbx-typo', '--allow-empty', '--format', 'json'], { env: c.env }))
        .stdout,
    ).toBe('{}\n');

    const bad = path.join(c.configDir, 'bad.env');
    writeFileSync(bad, 'GOOD=1\n9LIVES=secret-cat-value\n');
    const r = await runCli(['import', bad, '--bundle', 'sandbox/sbx-bad'], { env: c.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('9LIVES');
    expect(r.stderr).not.toContain('secret-cat-value');
    const missing = await runCli(['import', path.join(c.configDir, 'nope.env'), '--bundle', 'sandbox/sbx-bad'], {
      env: c.env,
    });
    expect(missing.code).toBe(2);
    c.cleanup();
  });
});

describe('coffer run', () => {
  it('gives the bundle to the child as environment variables, prints nothing itself, and exits with its code', async () => {
    const c = await cliTenant(t, url);
    await importTricky(c, 'sandbox/sbx-run');
    const script = `process.stdout.write(JSON.stringify({ m: process.env.MULTILINE, u: process.env.UNICODE, e: process.env.EMPTY, p: process.env.PATH !== undefined })); process.exit(7)`;
    const r = await runCli(['run', '--bundle', 'sandbox/sbx-run', '--', process.execPath, '-e', script], {
      env: c.env,
    });
    expect(r.code).toBe(7);
    expect(JSON.parse(r.stdout)).toEqual({ m: EXPECTED.MULTILINE, u: EXPECTED.UNICODE, e: '', p: true });
    expect(r.stderr).toBe('');

    const ok = await runCli(['run', '--bundle', 'sandbox/sbx-run', '--', process.execPath, '-e', 'process.exit(0)'], {
      env: c.env,
    });
    expect(ok).toMatchObject({ code: 0, stdout: '', stderr: '' });
    c.cleanup();
  });

  it('keeps existing variables with --no-override and layers bundles in order', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'shared/common/REGION', '--value', 'eu'], { env: c.env });
    await runCli(['set', 'shared/common/LEVEL', '--value', 'common'], { env: c.env });
    await runCli(['set', 'sandbox/sbx-l/LEVEL', '--value', 'sandbox'], { env: c.env });
    const print = `process.stdout.write([process.env.REGION, process.env.LEVEL].join(','))`;
    const layered = await runCli(
      ['run', '--bundle', 'shared/common', '--bundle', 'sandbox/sbx-l', '--', process.execPath, '-e', print],
      { env: c.env },
    );
    expect(layered.stdout).toBe('eu,sandbox');
    const kept = await runCli(
      ['run', '--bundle', 'shared/common', '--no-override', '--', process.execPath, '-e', print],
      {
        env: { ...c.env, REGION: 'from-shell' },
      },
    );
    expect(kept.stdout).toBe('from-shell,common');
    c.cleanup();
  });

  it('object keys: constructor and toString reach the child of coffer run (also with --no-override) and every export format', {
    timeout: 180_000,
  }, async () => {
    const c = await cliTenant(t, url);
    const file = path.join(c.configDir, 'keys.env');
    writeFileSync(file, 'constructor=built\ntoString=printed\nvalueOf=valued\n');
    expect((await runCli(['import', file, '--bundle', 'sandbox/sbx-keys'], { env: c.env })).code).toBe(0);
    const expected = { constructor: 'built', toString: 'printed', valueOf: 'valued' };
    const print = `process.stdout.write(JSON.stringify([process.env.constructor, process.env.toString, process.env.valueOf]))`;
    for (const flags of [[], ['--no-override']]) {
      const r = await runCli(['run', '--bundle', 'sandbox/sbx-keys', ...flags, '--', process.execPath, '-e', print], {
        env: c.env,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(['built', 'printed', 'valued']);
    }
    for (const format of ['dotenv', 'json', 'yaml', 'shell'] as const) {
      const r = await runCli(['export', '--bundle', 'sandbox/sbx-keys', '--format', format], { env: c.env });
      expect(r.code, `${format}: ${r.stderr}`).toBe(0);
      if (format === 'dotenv') expect(parseDotenv(r.stdout)).toEqual(expected);
      if (format === 'json') expect(JSON.parse(r.stdout)).toEqual(expected);
      if (format === 'yaml') expect(YAML.parse(r.stdout)).toEqual(expected);
      if (format === 'shell')
        for (const [k, v] of Object.entries(expected)) expect(r.stdout).toContain(`export ${k}='${v}'`);
    }
    c.cleanup();
  });

  it('loader env: coffer run refuses a bundle that sets NODE_OPTIONS, LD_PRELOAD or PATH, naming them, unless allowed', {
    timeout: 180_000,
  }, async () => {
    const c = await cliTenant(t, url);
    const marker = path.join(c.configDir, 'pwned');
    const evil = path.join(c.configDir, 'evil.cjs');
    writeFileSync(evil, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`);
    const file = path.join(c.configDir, 'loader.env');
    writeFileSync(file, `NODE_OPTIONS="--require ${evil}"\nLD_PRELOAD=\nPATH=${c.configDir}\nGOOD=fine\n`);
    expect((await runCli(['import', file, '--bundle', 'sandbox/sbx-loader'], { env: c.env })).code).toBe(0);
    const print = 'process.stdout.write(String(process.env.GOOD))';

    const refused = await runCli(['run', '--bundle', 'sandbox/sbx-loader', '--', process.execPath, '-e', print], {
      env: c.env,
    });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    for (const name of ['LD_PRELOAD', 'NODE_OPTIONS', 'PATH']) expect(refused.stderr).toContain(name);
    expect(refused.stderr).toContain('--allow-env');
    expect(existsSync(marker)).toBe(false);

    // Allowing only some is still a refusal of the rest.
    const partly = await runCli(
      ['run', '--bundle', 'sandbox/sbx-loader', '--allow-env', 'PATH', '--', process.execPath, '-e', print],
      { env: c.env },
    );
    expect(partly.code).toBe(1);
    expect(partly.stderr).not.toMatch(/sets [^\n]*PATH/);

    const allowed = await runCli(
      [
        'run',
        '--bundle',
        'sandbox/sbx-loader',
        ...['--allow-env', 'NODE_OPTIONS', '--allow-env', 'LD_PRELOAD', '--allow-env', 'PATH'],
        '--',
        process.execPath,
        '-e',
        print,
      ],
      { env: c.env },
    );
    expect(allowed).toMatchObject({ code: 0, stdout: 'fine' });
    expect(existsSync(marker)).toBe(true);

    // An export meant to be sourced refuses the same names; JSON is data, and carries them.
    const shell = await runCli(['export', '--bundle', 'sandbox/sbx-loader', '--format', 'shell'], { env: c.env });
    expect(shell.code).toBe(1);
    expect(shell.stdout).toBe('');
    expect(shell.stderr).toContain('NODE_OPTIONS');
    const json = await runCli(['export', '--bundle', 'sandbox/sbx-loader', '--format', 'json'], { env: c.env });
    expect(json.code).toBe(0);
    expect(Object.keys(JSON.parse(json.stdout)).sort()).toEqual(['GOOD', 'LD_PRELOAD', 'NODE_OPTIONS', 'PATH']);
    const sourced = await runCli(
      ['export', '--bundle', 'sandbox/sbx-loader', '--format', 'shell', '--allow-loader-env'],
      { env: c.env },
    );
    expect(sourced.code).toBe(0);
    expect(sourced.stdout).toContain('export NODE_OPTIONS=');
    c.cleanup();
  });

  it('forwards signals to the child and exits with the code the child chose', async () => {
    const c = await cliTenant(t, url);
    await runCli(['set', 'sandbox/sbx-sig/TOKEN', '--value', 'tok'], { env: c.env });
    const script =
      "process.on('SIGTERM', () => { process.stdout.write('child got SIGTERM with ' + process.env.TOKEN.length + ' chars\\n'); process.exit(42); }); process.stdout.write('ready\\n'); setInterval(() => {}, 1000);";
    const run = spawnCli(['run', '--bundle', 'sandbox/sbx-sig', '--', process.execPath, '-e', script], { env: c.env });
    await run.waitFor('ready');
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    expect(run.output.stdout).toContain('child got SIGTERM with 3 chars');
    expect(code).toBe(42);
    c.cleanup();
  });

  it('says when the command does not exist (127), the bundle is empty (3) or not readable (4)', async () => {
    const c = await cliTenant(t, url);
    const started = [process.execPath, '-e', 'console.log("started")'];
    const empty = await runCli(['run', '--bundle', 'sandbox/sbx-typo', '--', ...started], { env: c.env });
    expect(empty.code).toBe(3);
    expect(empty.stdout).toBe('');
    expect(empty.stderr).toContain('sandbox/sbx-typo has no secrets this identity may read');
    const allowed = await runCli(['run', '--bundle', 'sandbox/sbx-typo', '--allow-empty', '--', ...started], {
      env: c.env,
    });
    expect(allowed).toMatchObject({ code: 0, stdout: 'started\n' });

    await runCli(['set', 'sandbox/sbx-none/X', '--value', 'x'], { env: c.env });
    const missing = await runCli(['run', '--bundle', 'sandbox/sbx-none', '--', 'coffer-no-such-command-xyz'], {
      env: c.env,
    });
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('command not found: coffer-no-such-command-xyz');
    const noLogin = await runCli(['run', '--bundle', 'sandbox/sbx-none', '--', 'true'], {
      env: { COFFER_URL: url, COFFER_CONFIG_DIR: path.join(c.configDir, 'empty') },
    });
    expect(noLogin.code).toBe(4);
    const noCommand = await runCli(['run', '--bundle', 'sandbox/sbx-none'], { env: c.env });
    expect(noCommand.code).toBe(2);
    c.cleanup();
  });
});
