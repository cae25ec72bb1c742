import type { Command } from 'commander';
import { readEnv } from '../config.ts';
import { connect, newClient, serverUrl } from '../context.ts';
import { credentialsFile, readCredentials, removeCredentials, writeCredentials } from '../credentials.ts';
import { detectSource, subjectTokenOf } from '../federation.ts';
import { json, note, out, styleFor, table, usageError } from '../output.ts';
import { promptHidden, promptLine, readStdin } from '../prompt.ts';
import { keepNewSession, machineName, newMachineKey } from '../session.ts';
import { deleteSessionSecret, sessionSecretFile } from '../session-store.ts';
import { examples, globalsOf } from './common.ts';

export function registerAuth(program: Command): void {
  examples(
    program
      .command('login')
      .summary('Log in and cache the token')
      .description(
        'Log in with client credentials and open a session: the token renews itself for a working day, with a ' +
          'refresh credential bound to a key made for this machine, kept in the OS keychain (else a 0600 file). ' +
          'Credentials come from the flags, then COFFER_CLIENT_ID / COFFER_CLIENT_SECRET, then a prompt (the ' +
          'secret is not echoed).',
      )
      .option('--client-id <id>', 'the client id of a Coffer identity')
      .option(
        '--client-secret <secret>',
        'the client secret (visible to other users in the process list: prefer the prompt)',
      )
      .option('--client-secret-stdin', 'read the client secret from standard input')
      // --session first: defined after it, --no-session leaves the default undefined (a session unless --identity).
      .option('--session', 'with --identity: open a session too, renewed without the platform token')
      .option('--no-session', 'no session: the token is not renewed, and lasts its lifetime (15 minutes by default)')
      .option(
        '--save-secret',
        'instead of a session, keep the client secret in the credentials file to renew the token',
      )
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
            session?: boolean;
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
            if (opts.session === true) {
              const key = newMachineKey();
              const answer = await newClient(url, {}).call('issueToken', {
                body: {
                  identity,
                  subjectToken: (await subjectTokenOf(source, env)()).trim(),
                  session: { publicKey: key.publicKey, name: machineName() },
                },
              });
              const creds = keepNewSession(env, url, identity, answer, key.privateKey);
              const me = await newClient(url, { token: creds.accessToken }).whoami();
              if (opts.json) json(me);
              note(
                `Logged in to ${url} as ${me.name} (${me.role}); the session renews the token until ` +
                  `${new Date(creds.session?.expiresAt ?? 0).toISOString()} (${describeStore(creds.session?.store, env.configDir)}).`,
              );
              return;
            }
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
          if (opts.saveSecret && opts.session === true) throw usageError('give --session or --save-secret, not both');
          if (!opts.saveSecret && opts.session !== false) {
            const key = newMachineKey();
            const answer = await newClient(url, {}).call('issueToken', {
              body: { clientId, clientSecret, session: { publicKey: key.publicKey, name: machineName() } },
            });
            const creds = keepNewSession(env, url, clientId, answer, key.privateKey);
            const me = await newClient(url, { token: creds.accessToken }).whoami();
            if (opts.json) json(me);
            note(
              `Logged in to ${url} as ${me.name} (${me.role}). The session renews the token until ` +
                `${new Date(creds.session?.expiresAt ?? 0).toISOString()} (${describeStore(creds.session?.store, env.configDir)}); ` +
                'coffer logout ends it.',
            );
            return;
          }
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
      .summary('End the session and forget the cached token')
      .description(
        'End the session on the server (its refresh credential and tokens stop at once), remove its secrets from ' +
          'the keychain or file, and forget the cached token (and the client secret, if it was saved).',
      )
      .action(async (_opts: unknown, cmd: Command) => {
        const env = readEnv();
        const stored = readCredentials(env.configDir);
        if (stored?.session) {
          const { id, store, expiresAt } = stored.session;
          try {
            const { client } = connect({ ...globalsOf(cmd), url: stored.url });
            await client.call('revokeSession', { params: { id } });
            note(`Ended session ${id} on ${stored.url}.`);
          } catch (e) {
            // Logging out still forgets everything here; the user must know the server may still hold it.
            note(
              `Could not end session ${id} on ${stored.url} (${e instanceof Error ? e.message : String(e)}); it ends at ` +
                `${new Date(expiresAt).toISOString()}, or when revoked with coffer sessions revoke ${id}.`,
            );
          }
          deleteSessionSecret(store, env, id);
        }
        note(removeCredentials(env.configDir) ? 'Logged out.' : 'Not logged in.');
      }),
    ['$ coffer logout'],
  );

  const sessions = program
    .command('sessions')
    .summary("People's sessions: list and end them")
    .description(
      'Sessions opened by coffer login: yours, or (tenant admin, --all) every identity’s. Never shows a credential.',
    );
  examples(
    sessions
      .command('ls')
      .description('List sessions, newest first; * marks the one this CLI is using.')
      .option('--all', "every identity's sessions (tenant admin)")
      .option('--identity <id>', "one identity's sessions (tenant admin, or your own id)")
      .option('--state <state>', 'active, expired or revoked')
      .option('--json', 'print as JSON')
      .action(async (opts: { all?: boolean; identity?: string; state?: string; json?: boolean }, cmd: Command) => {
        if (opts.state !== undefined && !['active', 'expired', 'revoked'].includes(opts.state))
          throw usageError(`--state must be active, expired or revoked, not "${opts.state}"`);
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('listSessions', {
          query: {
            ...(opts.all ? { all: 'true' as const } : {}),
            ...(opts.identity ? { identityId: opts.identity } : {}),
            ...(opts.state ? { state: opts.state as 'active' | 'expired' | 'revoked' } : {}),
          },
        });
        if (opts.json) return json(r.items);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((x) => [
              `${x.current ? '* ' : '  '}${x.id}`,
              x.identityName,
              x.name ?? '',
              x.state === 'active' ? x.state : s.red(`${x.state}${x.revokedReason ? ` (${x.revokedReason})` : ''}`),
              x.createdAt,
              x.expiresAt,
              x.lastRefreshedAt ?? '',
              x.lastSourceIp ?? '',
            ]),
            ['  ID', 'IDENTITY', 'MACHINE', 'STATE', 'CREATED', 'ENDS', 'LAST REFRESH', 'FROM'].map(s.bold),
          ),
        );
      }),
    ['$ coffer sessions ls', '$ coffer sessions ls --all --state active'],
  );
  examples(
    sessions
      .command('revoke')
      .description(
        'End a session: its refresh credential and access tokens stop at once (yours, or any as tenant admin).',
      )
      .argument('<id>', 'the session id')
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await client.call('revokeSession', { params: { id } });
        note(`Ended session ${id}.`);
      }),
    ['$ coffer sessions revoke 0190f3…'],
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

function describeStore(store: string | undefined, configDir: string): string {
  if (store === 'secret-tool') return 'its refresh credential and machine key are in the keychain, via secret-tool';
  if (store === 'security') return 'its refresh credential and machine key are in the login keychain';
  return `no keychain here: its refresh credential and machine key are in ${sessionSecretFile(configDir)}, mode 0600`;
}
