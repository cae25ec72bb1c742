import { readFileSync } from 'node:fs';
import {
  FederationAlgorithm,
  type JwksSource,
  PublicJwk,
  type TrustedIssuer,
  type UpdateIssuerRequest,
} from '@coffer/contracts';
import type { Command } from 'commander';
import { z } from 'zod';
import { connect } from '../context.ts';
import { json, note, out, styleFor, table, usageError } from '../output.ts';
import { examples, globalsOf, nonNegativeInt, positiveInt } from './common.ts';

const repeat = (raw: string, previous: string[] = []): string[] => [...previous, raw];

const algorithms = (raw: string, previous: FederationAlgorithm[] = []): FederationAlgorithm[] => {
  const a = FederationAlgorithm.safeParse(raw);
  if (!a.success)
    throw usageError(`--algorithm must be one of ${FederationAlgorithm.options.join(', ')}, not "${raw}"`);
  return [...previous, a.data];
};

interface JwksOptions {
  discovery?: boolean;
  jwksUri?: string;
  bearerTokenFile?: string;
  jwksFile?: string;
}

/** Where the issuer's keys come from: exactly one of --discovery, --jwks-uri or --jwks-file (a JWKS document). */
function jwksOf(o: JwksOptions, required: boolean): JwksSource | undefined {
  const given = [o.discovery, o.jwksUri, o.jwksFile].filter((x) => x !== undefined).length;
  if (given > 1) throw usageError('give one of --discovery, --jwks-uri or --jwks-file');
  if (o.bearerTokenFile && !o.jwksUri) throw usageError('--bearer-token-file goes with --jwks-uri');
  if (o.discovery) return { discovery: true };
  if (o.jwksUri) return { uri: o.jwksUri, ...(o.bearerTokenFile ? { bearerTokenFile: o.bearerTokenFile } : {}) };
  if (o.jwksFile) {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(o.jwksFile, 'utf8'));
    } catch (e) {
      throw usageError(`--jwks-file ${o.jwksFile}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const set = z.object({ keys: z.array(PublicJwk).min(1) }).safeParse(doc);
    if (!set.success)
      throw usageError(`--jwks-file ${o.jwksFile} is not a JWKS document of public keys ({"keys": [...]})`);
    return { keys: set.data.keys };
  }
  if (required) throw usageError('say where the signing keys come from: --discovery, --jwks-uri or --jwks-file');
  return undefined;
}

function describeJwks(j: JwksSource): string {
  if ('discovery' in j) return 'OIDC discovery';
  if ('uri' in j) return j.uri;
  return `${j.keys.length} inline key${j.keys.length === 1 ? '' : 's'}`;
}

function showIssuer(i: TrustedIssuer): void {
  out(
    table([
      ['id', i.id],
      ['name', i.name],
      ['issuer', i.issuer],
      ['keys', describeJwks(i.jwks)],
      ['audiences', i.audiences.join(', ')],
      ['algorithms', i.algorithms.join(', ')],
      ['max token age', `${i.maxTokenAgeSeconds}s`],
      ['clock skew', `${i.clockSkewSeconds}s`],
      ['created', i.createdAt],
      ['updated', i.updatedAt],
    ]),
  );
}

const jwksOptions = (c: Command): Command =>
  c
    .option('--discovery', "fetch the keys by OIDC discovery at the issuer's URL")
    .option('--jwks-uri <url>', 'fetch the keys from this JWKS URL')
    .option('--bearer-token-file <path>', 'with --jwks-uri: a file on the Coffer host with a bearer token for it')
    .option('--jwks-file <path>', 'inline keys: a JWKS document ({"keys": [...]}) read from this file')
    .option('--audience <aud>', 'an accepted audience (repeat; default coffer:<tenant slug>)', repeat)
    .option(
      '--algorithm <alg>',
      `an accepted algorithm (repeat): ${FederationAlgorithm.options.join(', ')}`,
      algorithms,
    )
    .option('--max-token-age <seconds>', 'refuse tokens issued longer ago than this', positiveInt('--max-token-age'))
    .option('--clock-skew <seconds>', 'tolerance for exp, nbf and iat', nonNegativeInt('--clock-skew'));

type IssuerOptions = JwksOptions & {
  audience?: string[];
  algorithm?: FederationAlgorithm[];
  maxTokenAge?: number;
  clockSkew?: number;
  json?: boolean;
};

const limitsOf = (o: IssuerOptions) => ({
  ...(o.audience ? { audiences: o.audience } : {}),
  ...(o.algorithm ? { algorithms: o.algorithm } : {}),
  ...(o.maxTokenAge !== undefined ? { maxTokenAgeSeconds: o.maxTokenAge } : {}),
  ...(o.clockSkew !== undefined ? { clockSkewSeconds: o.clockSkew } : {}),
});

/** Trusted issuers for workload identity federation (tenant admin). */
export function registerTrust(program: Command): void {
  const trust = program
    .command('trust')
    .summary('Trusted token issuers for workload login (tenant admin)')
    .description(
      'OIDC/JWT issuers whose tokens may log in as an identity bound to them (Kubernetes, GitHub Actions, any OIDC).',
    );
  examples(
    trust
      .command('ls')
      .description('The issuers this tenant trusts.')
      .option('--json', 'print as JSON')
      .action(async (opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const r = await client.call('listIssuers');
        if (opts.json) return json(r.items);
        const s = styleFor(process.stdout);
        out(
          table(
            r.items.map((i) => [i.id, i.name, i.issuer, describeJwks(i.jwks), i.audiences.join(',')]),
            ['ID', 'NAME', 'ISSUER', 'KEYS', 'AUDIENCES'].map(s.bold),
          ),
        );
      }),
    ['$ coffer trust ls'],
  );
  examples(
    jwksOptions(
      trust
        .command('create')
        .description('Trust an issuer.')
        .argument('<name>', 'lowercase letters, digits and dashes, e.g. github-actions')
        .requiredOption('--issuer <iss>', 'the exact `iss` of its tokens'),
    )
      .option('--json', 'print as JSON')
      .action(async (name: string, opts: IssuerOptions & { issuer: string }, cmd: Command) => {
        const jwks = jwksOf(opts, true) as JwksSource;
        const { client } = connect(globalsOf(cmd));
        const i = await client.call('createIssuer', { body: { name, issuer: opts.issuer, jwks, ...limitsOf(opts) } });
        if (opts.json) return json(i);
        note(`Trusted issuer ${i.name} (${i.id}) for ${i.issuer}; accepted audiences: ${i.audiences.join(', ')}.`);
      }),
    [
      '$ coffer trust create github-actions --issuer https://token.actions.githubusercontent.com --discovery',
      '$ coffer trust create k8s --issuer https://kubernetes.default.svc --jwks-file cluster-jwks.json',
    ],
  );
  examples(
    trust
      .command('show')
      .description('One trusted issuer.')
      .argument('<id>', 'the issuer id')
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        const i = await client.call('getIssuer', { params: { id } });
        if (opts.json) return json(i);
        showIssuer(i);
      }),
    ['$ coffer trust show 5e0f…'],
  );
  examples(
    jwksOptions(
      trust
        .command('update')
        .description("Change a trusted issuer's keys, audiences, algorithms or limits.")
        .argument('<id>', 'the issuer id'),
    )
      .option('--json', 'print as JSON')
      .action(async (id: string, opts: IssuerOptions, cmd: Command) => {
        const jwks = jwksOf(opts, false);
        const body: UpdateIssuerRequest = { ...(jwks ? { jwks } : {}), ...limitsOf(opts) };
        if (Object.keys(body).length === 0) throw usageError('nothing to change: give at least one option');
        const { client } = connect(globalsOf(cmd));
        const i = await client.call('updateIssuer', { params: { id }, body });
        if (opts.json) return json(i);
        note(`Updated issuer ${i.name}.`);
      }),
    ['$ coffer trust update 5e0f… --jwks-file rotated-jwks.json', '$ coffer trust update 5e0f… --clock-skew 5'],
  );
  examples(
    trust
      .command('rm')
      .description('Stop trusting an issuer (refused while an identity is bound to it).')
      .argument('<id>', 'the issuer id')
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const { client } = connect(globalsOf(cmd));
        await client.call('deleteIssuer', { params: { id } });
        note(`No longer trusting issuer ${id}.`);
      }),
    ['$ coffer trust rm 5e0f…'],
  );
}
