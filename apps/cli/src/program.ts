import { type RouteName, routes } from '@coffer/contracts';
import { Command, Option } from 'commander';
import {
  registerIdentities,
  registerKeys,
  registerPlatformAdmins,
  registerRotation,
  registerStatus,
  registerTenants,
  registerWebhooks,
} from './commands/admin.ts';
import { registerAudit } from './commands/audit.ts';
import { registerAuth } from './commands/auth.ts';
import { registerBundles } from './commands/bundles.ts';
import { registerCheck } from './commands/check.ts';
import { registerConsumers } from './commands/consumers.ts';
import { registerDeploy } from './commands/deploy.ts';
import { registerDynamic } from './commands/dynamic.ts';
import { registerEnvironments } from './commands/environments.ts';
import { registerIntake } from './commands/intake.ts';
import { registerManifest } from './commands/manifest-sync.ts';
import { registerPlan } from './commands/plan.ts';
import { registerRun } from './commands/run.ts';
import { registerSecrets } from './commands/secrets.ts';
import { registerTrust } from './commands/trust.ts';
import { readEnv } from './config.ts';
import { VERSION } from './meta.ts';
import { setColorAllowed } from './output.ts';
import { COMMAND_ROUTES } from './route-coverage.ts';

/** Whether a route takes `?env` (as the SDK decides when it adds its `environment` option). */
const takesEnv = (r: RouteName) => {
  const q = (routes[r] as { query?: { shape?: Record<string, unknown> } }).query;
  return q?.shape !== undefined && Object.hasOwn(q.shape, 'env');
};

/**
 * The commands that work in one environment: those calling a route that takes `?env`, and plan (whose tiers map
 * to environments in the manifest). The others (identities, tenants, `env diff` with its own two) take no --env.
 */
const PER_ENVIRONMENT = new Set<string>([
  ...Object.entries(COMMAND_ROUTES)
    .filter(([, rs]) => (rs as readonly RouteName[]).some(takesEnv))
    .map(([c]) => c),
  'plan',
]);

const FOOTER = `
Environment:
  COFFER_URL                  the server (default http://127.0.0.1:7400; --url wins)
  COFFER_ENV                  the environment of secret commands (default: the tenant's default; --env wins)
  COFFER_CLIENT_ID            with COFFER_CLIENT_SECRET: log in on every command (CI), no cached token
  COFFER_CLIENT_SECRET
  COFFER_CONFIG_DIR           where coffer login caches the token (default ~/.config/coffer)
  COFFER_CREDENTIAL_STORE     a session's secrets: auto (keychain, else a 0600 file), keychain or file
  NO_COLOR                    no colours (they are only used on a terminal anyway)

Exit codes:
  0  ok
  1  failure (including a check that does not hold)
  2  usage: bad arguments, unreadable or invalid input
  3  not found
  4  denied: not logged in, bad credentials, or no permission
  coffer run exits with the command's own code.
`;

export function buildProgram(): Command {
  const program = new Command('coffer')
    .description('The Coffer command-line client: secrets for services, CI gates and deployments.')
    .version(`coffer ${VERSION}`, '-v, --version')
    .addOption(new Option('--url <url>', 'the Coffer server').env('COFFER_URL'))
    // Not .env('COFFER_ENV'): check tells a flag from the variable (context.ts reads COFFER_ENV).
    .option('--env <slug>', 'the environment of secret commands (default: COFFER_ENV, else the tenant default)')
    .option('--no-color', 'no colours')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', FOOTER)
    .hook('preAction', (thisCommand) => {
      const opts = thisCommand.optsWithGlobals() as { color?: boolean };
      setColorAllowed(opts.color !== false && !readEnv().noColor);
    });
  registerAuth(program);
  registerSecrets(program);
  registerRun(program);
  registerBundles(program);
  registerEnvironments(program);
  registerCheck(program);
  registerPlan(program);
  registerManifest(program);
  registerDeploy(program);
  registerConsumers(program);
  registerAudit(program);
  registerRotation(program);
  registerIdentities(program);
  registerTenants(program);
  registerWebhooks(program);
  registerKeys(program);
  registerTrust(program);
  registerPlatformAdmins(program);
  registerStatus(program);
  registerIntake(program);
  registerDynamic(program);
  const perCommand = (prefix: string[]) => (c: Command) => {
    const words = [...prefix, c.name()];
    // Positional options (which `run -- cmd` needs) would take --url only before the command name; users write it
    // after (`coffer login --url …`), so every command accepts it too. COFFER_URL stays on the program's option,
    // so an explicit --url anywhere wins over the environment. --env likewise, on the commands it means something to.
    if (!c.options.some((o) => o.long === '--url')) c.option('--url <url>', 'the Coffer server');
    if (PER_ENVIRONMENT.has(words.join(' ')) && !c.options.some((o) => o.long === '--env'))
      c.option('--env <slug>', 'the environment (default: COFFER_ENV, else the tenant default)');
    c.exitOverride();
    c.commands.forEach(perCommand(words));
  };
  program.commands.forEach(perCommand([]));
  program.exitOverride();
  return program;
}
