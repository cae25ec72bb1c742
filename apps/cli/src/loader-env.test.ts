import { describe, expect, it } from 'vitest';
import { isLoaderEnv, refuseLoaderEnv } from './loader-env.ts';

describe('loader environment variables', () => {
  it('loader env: names that change how a process loads code are recognised, in any case, and ordinary names are not', () => {
    for (const n of [
      'LD_PRELOAD',
      'LD_LIBRARY_PATH',
      'LD_AUDIT',
      'DYLD_INSERT_LIBRARIES',
      'NODE_OPTIONS',
      'NODE_PATH',
      'PYTHONPATH',
      'PYTHONSTARTUP',
      'PYTHONHOME',
      'PERL5LIB',
      'PERL5OPT',
      'RUBYOPT',
      'RUBYLIB',
      'BASH_ENV',
      'ENV',
      'PATH',
      'Path',
      'IFS',
      'JAVA_TOOL_OPTIONS',
      '_JAVA_OPTIONS',
      'GCONV_PATH',
      'npm_config_script_shell',
      'GIT_SSH_COMMAND',
    ]) {
      expect(isLoaderEnv(n), n).toBe(true);
    }
    for (const n of ['DATABASE_URL', 'STRIPE_KEY', 'LD', 'PATHS', 'MY_PATH', 'NODE_ENV', 'ENVIRONMENT', 'HOME']) {
      expect(isLoaderEnv(n), n).toBe(false);
    }
  });

  it('refuses naming every such name, and lets through what is allowed by name or wholesale', () => {
    expect(() => refuseLoaderEnv(['PATH', 'A', 'NODE_OPTIONS'], 'sandbox/x', {})).toThrow(
      /sandbox\/x sets NODE_OPTIONS, PATH, which change how a process loads code/,
    );
    expect(() => refuseLoaderEnv(['PATH', 'A'], 'sandbox/x', { allowEnv: ['path'] })).not.toThrow();
    expect(() => refuseLoaderEnv(['PATH', 'LD_PRELOAD'], 'sandbox/x', { allowLoaderEnv: true })).not.toThrow();
    expect(() => refuseLoaderEnv(['A', 'B'], 'sandbox/x', {})).not.toThrow();
  });
});
