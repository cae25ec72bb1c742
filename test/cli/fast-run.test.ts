import { parseOwnerPath } from '@coffer/sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRunArgs } from '../../apps/cli/src/fast-run.ts';
import { VERSION } from '../../apps/cli/src/meta.ts';
import { runCli } from '../support/cli.ts';

const bundleOf = (path: string) => parseRunArgs(['run', '--bundle', path, '--', 'true'])?.bundles[0];

/** Whether the SDK (and so the full `coffer run`) accepts the path. */
const sdkAccepts = (path: string) => {
  try {
    parseOwnerPath(path);
    return true;
  } catch {
    return false;
  }
};

describe("coffer run's fast path", () => {
  it('takes exactly the bundle paths the SDK takes (else the full command reports the error)', () => {
    const part = fc.stringMatching(/^[A-Za-z0-9_.\-/ ]{0,12}$/);
    const kind = fc.constantFrom('sandbox', 'user', 'shared', 'Sandbox', 'other', '');
    fc.assert(
      fc.property(kind, part, fc.boolean(), (k, owner, raw) => {
        const path = raw ? owner : `${k}/${owner}`;
        expect(bundleOf(path) !== undefined).toBe(sdkAccepts(path));
      }),
      { numRuns: 2000 },
    );
    expect(bundleOf('sandbox/sbx-42')).toBe('sandbox/sbx-42');
    expect(bundleOf(`sandbox/${'a'.repeat(129)}`)).toBeUndefined();
  });

  it("reads run's options as commander does, and leaves every other spelling to commander", () => {
    expect(
      parseRunArgs(['run', '--bundle=user/u1', '--bundle', 'shared/g', '--no-override', '--', 'env', '-0']),
    ).toEqual({
      bundles: ['user/u1', 'shared/g'],
      url: undefined,
      override: false,
      allowEmpty: false,
      command: ['env', '-0'],
    });
    // passThroughOptions: the first operand starts the command, whose own options stay its own
    expect(parseRunArgs(['run', '--url', 'http://h:1', '--bundle', 'user/u1', 'node', '--allow-empty'])).toMatchObject({
      url: 'http://h:1',
      allowEmpty: false,
      command: ['node', '--allow-empty'],
    });
    for (const args of [
      ['run', '--bundle', 'user/u1'], // no command
      ['run', '--', 'true'], // no bundle
      ['run', '--bundle', 'user/u1', '--help', '--', 'true'],
      ['run', '--bundle', 'user/u1', '--no-color', '--', 'true'], // a program option after the command: commander refuses it
      ['run', '--bundle', '--', 'true'],
      ['--url', 'http://h:1', 'run', '--bundle', 'user/u1', '--', 'true'],
      ['get', 'user/u1/A'],
    ]) {
      expect(parseRunArgs(args), args.join(' ')).toBeNull();
    }
  });

  it('--version and -v answer from the entry, exactly as the full CLI (commander) answers them', async () => {
    for (const flag of ['--version', '-v']) {
      const fast = await runCli([flag]);
      expect(fast, flag).toMatchObject({ code: 0, stdout: `coffer ${VERSION}\n`, stderr: '' });
      // Another option first: the entry leaves it to commander, which prints the same line.
      expect(await runCli(['--no-color', flag]), flag).toMatchObject({ code: 0, stdout: fast.stdout });
    }
  });
});
