import { type AuditEventView, CHECK_MAX_ENTRIES } from '@coffer/contracts';
import { type CofferClient, CofferError, parseSecretPath } from '@coffer/sdk';
import type { Command } from 'commander';
import { connect } from '../context.ts';
import { checkFormat } from '../formats.ts';
import { environmentFor, loadManifest, type ManifestSecret, TIERS, type Tier, tierArg } from '../manifest.ts';
import { CliError, EXIT, json, note, out, styleFor } from '../output.ts';
import { examples, globalsOf } from './common.ts';

export const CHECK_REASONS = ['missing', 'deleted', 'expired', 'malformed', 'overdue', 'denied', 'error'] as const;
export type CheckReason = (typeof CHECK_REASONS)[number];

export interface CheckResult {
  path: string;
  ok: boolean;
  version: number | null;
  problems: { reason: CheckReason; message: string }[];
}

const DAY_MS = 86_400_000;
const LIFECYCLE = new Set(['secrets.write', 'secrets.delete', 'secrets.purge', 'secrets.restore', 'secrets.rotate']);

/** Not found: deleted (restorable), erased, or never there. Only the audit log can tell, if this identity may read it. */
async function whyMissing(client: CofferClient, path: string): Promise<{ reason: CheckReason; message: string }> {
  let last: AuditEventView | undefined;
  try {
    const page = await client.call('queryAudit', { query: { path, action: 'secrets.', limit: 200 } });
    last = page.items.find((e) => e.resource === path && e.outcome === 'allowed' && LIFECYCLE.has(e.action));
  } catch (e) {
    if (e instanceof CofferError && (e.code === 'forbidden' || e.code === 'unauthorized')) {
      return {
        reason: 'missing',
        message: 'not found (this identity cannot read the audit log to tell whether it was deleted)',
      };
    }
    throw e;
  }
  const by = last?.actorName ? ` by ${last.actorName}` : '';
  if (last?.action === 'secrets.delete')
    return {
      reason: 'deleted',
      message: `deleted at ${last.occurredAt}${by}; restore it with: coffer restore ${path}`,
    };
  if (last?.action === 'secrets.purge')
    return { reason: 'missing', message: `erased for good at ${last.occurredAt}${by}` };
  return { reason: 'missing', message: 'no such secret' };
}

export async function checkOne(client: CofferClient, entry: ManifestSecret, now: number): Promise<CheckResult> {
  const result: CheckResult = { path: entry.path, ok: true, version: null, problems: [] };
  const problem = (reason: CheckReason, message: string) => {
    result.ok = false;
    result.problems.push({ reason, message });
  };
  const p = parseSecretPath(entry.path);
  try {
    const secret = await client.getSecret(p, { fresh: true });
    result.version = secret.version;
    const format = entry.format ?? secret.format;
    const verdict = checkFormat(format, secret.value);
    if (!verdict.ok) problem('malformed', `the value does not satisfy its format (${verdict.rule})`);
    if (secret.expiresAt && Date.parse(secret.expiresAt) <= now) problem('expired', `expired at ${secret.expiresAt}`);
    if (secret.nextRotationAt && Date.parse(secret.nextRotationAt) <= now)
      problem('overdue', `rotation was due at ${secret.nextRotationAt}`);
    if (entry.maxAgeDays !== undefined) {
      const versions = await client.secretVersions(p);
      const current = versions.items.find((v) => v.version === secret.version);
      if (current) {
        const ageDays = (now - Date.parse(current.createdAt)) / DAY_MS;
        if (ageDays > entry.maxAgeDays)
          problem(
            'overdue',
            `version ${secret.version} is ${ageDays.toFixed(1)} days old (set ${current.createdAt}); the manifest allows ${entry.maxAgeDays}`,
          );
      }
    }
  } catch (e) {
    if (!(e instanceof CofferError)) throw e;
    if (e.code === 'not_found') {
      const why = await whyMissing(client, entry.path).catch(() => ({
        reason: 'missing' as const,
        message: 'no such secret',
      }));
      problem(why.reason, why.message);
    } else if (e.code === 'expired') problem('expired', e.message);
    else if (e.code === 'forbidden' || e.code === 'unauthorized') problem('denied', e.message);
    else if (e.code === 'network_error') throw e;
    else problem('error', `${e.message} (${e.code})`);
  }
  return result;
}

/**
 * The server's verdicts (POST /v1/check): the identity needs only `list` on each path, and no value leaves the
 * server. Sent in chunks of the route's limit, so any manifest fits.
 */
export async function checkOnServer(client: CofferClient, entries: ManifestSecret[]): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (let i = 0; i < entries.length; i += CHECK_MAX_ENTRIES) {
    const chunk = entries.slice(i, i + CHECK_MAX_ENTRIES).map((e) => ({
      path: e.path,
      ...(e.required !== undefined ? { required: e.required } : {}),
      ...(e.format !== undefined ? { format: e.format } : {}),
      ...(e.maxAgeDays !== undefined ? { maxAgeDays: e.maxAgeDays } : {}),
    }));
    const answer = await client.check(chunk);
    for (const r of answer.results) {
      results.push({
        path: r.path,
        ok: r.passed,
        version: r.version,
        // A secret that may be absent passes, yet still says why it is not there.
        problems:
          r.status === 'ok'
            ? []
            : [
                {
                  reason: r.status,
                  message:
                    r.status === 'deleted' ? `${r.message}; restore it with: coffer restore ${r.path}` : r.message,
                },
              ],
      });
    }
  }
  return results;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function registerCheck(program: Command): void {
  examples(
    program
      .command('check')
      .summary('Fail unless every secret of a manifest holds (CI gate)')
      .argument('<manifest>', 'a manifest (.json, .yaml or .yml) listing the secrets a deployment needs')
      .description(
        'The fail-closed gate for CI: checks that every secret of the manifest exists, is not deleted or expired, ' +
          'satisfies its format and is not overdue for rotation (its schedule or the maximum age). Exit 0 only when ' +
          'all hold; otherwise exit 1 and name every failing secret and why. Values are never printed. The server ' +
          'does the checking (POST /v1/check), so the identity needs only list access to each path.',
      )
      .option(
        '--tier <tier>',
        `${TIERS.join(' | ')}: check in the environment the manifest's environments maps this tier to`,
        tierArg,
      )
      .option('--json', 'print the results as JSON')
      .option(
        '--client-side',
        'check in this process instead of on the server: reads every value, so the identity needs read access',
      )
      .action(
        async (manifestFile: string, opts: { tier?: Tier; json?: boolean; clientSide?: boolean }, cmd: Command) => {
          const manifest = loadManifest(manifestFile);
          const globals = globalsOf(cmd);
          const env = environmentFor(manifest, globals.env, opts.tier);
          if (env.warning) note(env.warning);
          const environment = env.slug ?? 'default';
          // The slug goes to the client as a flag would, so COFFER_ENV cannot undo the choice made here.
          const { client } = connect({ ...globals, ...(env.slug !== undefined ? { env: env.slug } : {}) });
          // Fail closed on credentials first: a login problem is not "every secret missing".
          await client.whoami();
          const now = Date.now();
          const results = opts.clientSide
            ? await mapLimit(manifest.secrets, 8, (s) => checkOne(client, s, now))
            : await checkOnServer(client, manifest.secrets);
          const failed = results.filter((r) => !r.ok);
          if (opts.json)
            json({ ok: failed.length === 0, environment, checked: results.length, failed: failed.length, results });
          else {
            note(`Checking ${manifestFile} in the ${environment} environment (${env.source}).`);
            const s = styleFor(process.stdout);
            for (const r of results) {
              if (r.ok && r.problems.length === 0)
                out(`${s.green('✓')} ${r.path}  ${s.dim(`ok (version ${r.version})`)}\n`);
              else if (r.ok)
                for (const p of r.problems) out(`${s.green('✓')} ${r.path}  ${s.dim(`${p.reason}, not required`)}\n`);
              else for (const p of r.problems) out(`${s.red('✗')} ${r.path}  ${s.red(p.reason)}: ${p.message}\n`);
            }
          }
          if (failed.length > 0) {
            throw new CliError(
              `${failed.length} of ${results.length} secrets fail ${manifestFile} in ${environment}`,
              EXIT.failure,
            );
          }
          note(`All ${results.length} secrets of ${manifestFile} hold in ${environment}.`);
        },
      ),
    [
      '$ coffer check deploy/secrets.yaml',
      '$ coffer check deploy/secrets.json --json | jq ".results[] | select(.ok == false)"',
      '$ coffer check deploy/secrets.yaml --tier cloud     # in the environment the manifest maps cloud to',
      '$ coffer check deploy/secrets.yaml --env staging',
      '',
      'Manifest (YAML or JSON):',
      '  environments:                  # optional: the environment of each tier (--env and COFFER_ENV win)',
      '    cloud: production',
      '  secrets:',
      '    - path: sandbox/sbx-42/DATABASE_URL',
      '      format: postgres-url        # or {pattern, minLength, maxLength}; default: the stored format',
      '      maxAgeDays: 90              # the current version must be younger',
      '      required: false             # absent (missing or deleted) does not fail the check; default true',
      '      class: infrastructure       # infrastructure | service | user (for coffer plan)',
    ],
    'Exit codes: 0 every secret holds, 1 at least one does not (or a failure), 2 usage or invalid manifest, 4 denied.',
  );
}
