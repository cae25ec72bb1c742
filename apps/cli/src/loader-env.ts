import { CliError, EXIT } from './output.ts';

/**
 * Environment variables that change what code a process loads or runs, or what it trusts, rather than configure
 * the program. Whoever can write a bundle must not get code executed in every process started from it, so
 * `coffer run` (and the formats meant to be sourced into a shell) refuse these names unless allowed by name.
 * Matching ignores case: Windows reads `Path` as `PATH`, and npm reads `npm_config_*` in either case.
 */
const PREFIXES = [
  'LD_', // glibc/musl dynamic linker: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, …
  'DYLD_', // macOS dynamic linker: DYLD_INSERT_LIBRARIES, DYLD_LIBRARY_PATH, …
  'BASH_FUNC_', // bash imports exported functions from these
  'NPM_CONFIG_', // npm config: script-shell, node-options, …
  'CORECLR_', // .NET profilers loaded into the runtime
  'COR_PROFILER',
  'GIT_CONFIG_', // git config from the environment (core.sshCommand, …)
];

const NAMES = [
  // shells
  'PATH',
  'IFS',
  'ENV',
  'BASH_ENV',
  'CDPATH',
  'PS4',
  'PROMPT_COMMAND',
  'SHELLOPTS',
  'BASHOPTS',
  'ZDOTDIR',
  // Node.js and Electron
  'NODE_OPTIONS',
  'NODE_PATH',
  'NODE_REPL_EXTERNAL_MODULE',
  'NODE_TLS_REJECT_UNAUTHORIZED',
  'NODE_EXTRA_CA_CERTS',
  'ELECTRON_RUN_AS_NODE',
  // Python
  'PYTHONPATH',
  'PYTHONHOME',
  'PYTHONSTARTUP',
  'PYTHONUSERBASE',
  'PYTHONBREAKPOINT',
  'PYTHONWARNINGS',
  'PYTHONINSPECT',
  // Perl
  'PERL5LIB',
  'PERLLIB',
  'PERL5OPT',
  'PERL5DB',
  // Ruby
  'RUBYOPT',
  'RUBYLIB',
  'GEM_HOME',
  'GEM_PATH',
  // JVM
  'JAVA_TOOL_OPTIONS',
  '_JAVA_OPTIONS',
  'JDK_JAVA_OPTIONS',
  'CLASSPATH',
  // .NET
  'DOTNET_STARTUP_HOOKS',
  'DOTNET_ADDITIONAL_DEPS',
  // PHP, Lua
  'PHPRC',
  'PHP_INI_SCAN_DIR',
  'LUA_PATH',
  'LUA_CPATH',
  'LUA_INIT',
  // glibc locale and charset modules, OpenSSL engines and providers
  'GCONV_PATH',
  'LOCPATH',
  'NLSPATH',
  'OPENSSL_CONF',
  'OPENSSL_ENGINES',
  'OPENSSL_MODULES',
  // programs other programs run
  'GIT_SSH',
  'GIT_SSH_COMMAND',
  'GIT_EXEC_PATH',
  'GIT_ASKPASS',
  'SSH_ASKPASS',
];

const EXACT = new Set(NAMES);

export function isLoaderEnv(name: string): boolean {
  const upper = name.toUpperCase();
  return EXACT.has(upper) || PREFIXES.some((p) => upper.startsWith(p));
}

export interface LoaderEnvAllowance {
  /** Names allowed one by one (`--allow-env NAME`). */
  allowEnv?: string[] | undefined;
  /** Every such name (`--allow-loader-env`). */
  allowLoaderEnv?: boolean | undefined;
}

/** Refuses, naming them, the bundle names that would change how a process loads code, unless allowed. */
export function refuseLoaderEnv(names: Iterable<string>, source: string, allow: LoaderEnvAllowance): void {
  if (allow.allowLoaderEnv) return;
  const allowed = new Set((allow.allowEnv ?? []).map((n) => n.toUpperCase()));
  const refused = [...names].filter((n) => isLoaderEnv(n) && !allowed.has(n.toUpperCase())).sort();
  if (refused.length === 0) return;
  throw new CliError(
    `${source} sets ${refused.join(', ')}, which change${refused.length === 1 ? 's' : ''} how a process loads code: ` +
      `refused. Allow ${refused.length === 1 ? 'it' : 'each'} with --allow-env ${refused[0]}` +
      `${refused.length > 1 ? ' (repeat it)' : ''}, or all of them with --allow-loader-env.`,
    EXIT.failure,
  );
}
