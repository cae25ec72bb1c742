import type { Command } from 'commander';
import { readEnv } from '../config.ts';
import { connect, newClient, serverUrl } from '../context.ts';
import { credentialsFile, removeCredentials, writeCredentials } from '../credentials.ts';
import { detectSource, subjectTokenOf } from '../federation.ts';
import { json, note, out, styleFor, table } from '../output.ts';
import { promptHidden, promptLine, readStdin } from '../prompt.ts';
import { examples, globalsOf } from './common.ts';

export function registerAuth(program: Command): void {
  examples(
    program
      .command('login')
      .summary('Log in and cache the token')
      .description(
        'Log in with client credentials and cache the token (mode 0600). Credentials come from the flags, then ' +
          'COFFER_CLIENT_ID / COFFER_CLIENT_SECRET, then a prompt (the secret is not echoed).',
      )
      .option('--client-id <id>', 'the client id of a Coffer identity')
      .option(
        '--client-secret <secret>',
        'the client secret (visible to other users in the process list: prefer the prompt)',
      )
      .option('--client-secret-stdin', 'read the client secret from standard input')
      .option('--save-secret', 'also keep the client secret in the credentials file, so the token renews itself')
      .option('--identity <client-id>', 'log in by workload identity federation as this identity (no client secret)')
      .option('--token-file <path>', 'with --identity: the platform token (e.g. a projected service-account token)')
      .option('--audience <aud>', 'with --identity in GitHub Actions: the audience to request (coffer:<tenant slug>)')
      .option('--json', 'print the identity as JSON')
      .action(
        async (
          opts: {
            clientId?: string;
            clientSecret?: string;
            clientSecretStdin?: boolean;
            saveSecret?: boolean;
            json?: boolean;
            identity?: string;
            tokenFile?: string;
            audience?: string;
          },
          cmd: Command,
        ) => {
          const env = readEnv();
          const url = serverUrl(globalsOf(cmd));
          const identity = opts.identity ?? (opts.clientId || opts.clientSecret ? undefined : env.identity);
          if (identity) {
            const source = detectSource(opts, env);
            const client = newClient(url, {
              federation: { identity, subjectToken: subjectTokenOf(source, env) },
            });
            const accessToken = await client.accessToken();
            const me = await client.whoami();
            writeCredentials(env.configDir, {
              url,
              clientId: identity,
              accessToken,
              expiresAt: Date.parse(me.tokenExpiresAt),
              federation: { identity, source },
            });
            if (opts.json) json(me);
            note(
              `Logged in to ${url} as ${me.name} (${me.role}) with ${'file' in source ? source.file : 'the GitHub Actions OIDC token'}; ` +
                `the token renews itself from it (cached in ${credentialsFile(env.configDir)}).`,
            );
            return;
          }
          const clientId = opts.clientId ?? env.clientId ?? (await promptLine('Client id: '));
          const clientSecret =
            opts.clientSecret ??
            (opts.clientSecretStdin ? (await readStdin()).replace(/\r?\n$/, '') : undefined) ??
            env.clientSecret ??
            (await promptHidden('Client secret: '));
          const client = newClient(url, { clientId, clientSecret });
          const accessToken = await client.accessToken();
          const me = await client.whoami();
          const expiresAt = Date.parse(me.tokenExpiresAt);
          writeCredentials(env.configDir, {
            url,
            clientId,
            accessToken,
            expiresAt,
            ...(opts.saveSecret ? { clientSecret } : {}),
          });
          if (opts.json) json(me);
          note(
            `Logged in to ${url} as ${me.name} (${me.role}). The token is valid until ${me.tokenExpiresAt}` +
              `${opts.saveSecret ? ' and renews itself' : ''}; cached in ${credentialsFile(env.configDir)}.`,
          );
        },
      ),
    [
      '$ coffer login --client-id ci-deployer          # prompts for the secret',
      '$ COFFER_CLIENT_ID=… COFFER_CLIENT_SECRET=… coffer login --url https://coffer.internal:7400',
      '$ vault-read ci-secret | coffer login --client-id ci-deployer --client-secret-stdin',
      '$ coffer login --identity coffer_ci_… --token-file /var/run/secrets/coffer/token   # Kubernetes',
      '$ coffer login --identity coffer_ci_… --audience coffer:acme                       # GitHub Actions',
    ],
  );

  examples(
    program
      .command('logout')
      .summary('Forget the cached token')
      .description('Forget the cached token (and the client secret, if it was saved).')
      .action(() => {
        const env = readEnv();
        note(removeCredentials(env.configDir) ? 'Logged out.' : 'Not logged in.');
      }),
    ['$ coffer logout'],
  );

  examples(
    program
      .command('whoami')
      .summary('Who the CLI acts as')
      .description('Who the CLI acts as: identity, tenant, role, policies and token expiry.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client, url } = connect(globalsOf(cmd));
        const me = await client.whoami();
        if (opts.json) return json(me);
        const s = styleFor(process.stdout);
        out(
          table([
            [s.bold('server'), url],
            [s.bold('identity'), `${me.name} (${me.clientId})`],
            [s.bold('role'), me.role],
            [s.bold('tenant'), me.tenantId],
            [s.bold('token expires'), me.tokenExpiresAt],
            ...me.policies.map((p, i) => [
              s.bold(i === 0 ? 'policies' : ''),
              `${p.path}: ${p.capabilities.join(', ')}`,
            ]),
          ]),
        );
      }),
    ['$ coffer whoami', '$ coffer whoami --json | jq -r .role'],
  );
}
