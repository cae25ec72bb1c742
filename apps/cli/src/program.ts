import { Command, Option } from 'commander';
import { registerAudit } from './commands/audit.ts';
import { registerAuth } from './commands/auth.ts';
import { registerBundles } from './commands/bundles.ts';
import { registerCheck } from './commands/check.ts';
import { registerConsumers } from './commands/consumers.ts';
import { registerDeploy } from './commands/deploy.ts';
import { registerManifest } from './commands/manifest-sync.ts';
import { registerPlan } from './commands/plan.ts';
import { registerRun } from './commands/run.ts';
import { registerSecrets } from './commands/secrets.ts';
import { readEnv } from './config.ts';
import { VERSION } from './meta.ts';
import { setColorAllowed } from './output.ts';

const FOOTER = `
Environment:
  COFFER_URL                  the server (default http://127.0.0.1:7400; --url wins)
  COFFER_CLIENT_ID            with COFFER_CLIENT_SECRET: log in on every command (CI), no cached token
  COFFER_CLIENT_SECRET
  COFFER_CONFIG_DIR           where coffer login caches the token (default ~/.config/coffer)
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
  registerCheck(program);
  registerPlan(program);
  registerManifest(program);
  registerDeploy(program);
  registerConsumers(program);
  registerAudit(program);
  program.commands.forEach(function perCommand(c: Command) {
    // Positional options (which `run -- cmd` needs) would take --url only before the command name; users write it
    // after (`coffer login --url …`), so every command accepts it too. COFFER_URL stays on the program's option,
    // so an explicit --url anywhere wins over the environment.
    if (!c.options.some((o) => o.long === '--url')) c.option('--url <url>', 'the Coffer server');
    c.exitOverride();
    c.commands.forEach(perCommand);
  });
  program.exitOverride();
  return program;
}
