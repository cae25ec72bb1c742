import { existsSync, writeFileSync } from 'node:fs';
import type { SecretMetadata } from '@coffer/contracts';
import { type CofferClient, CofferError, parseOwnerPath, parseSecretPath } from '@coffer/sdk';
import type { Command } from 'commander';
import YAML from 'yaml';
import { connect } from '../context.ts';
import { loadManifest, type Manifest, type ManifestSecret, strategyOfManifest } from '../manifest.ts';
import { CliError, EXIT, json, note, out, styleFor } from '../output.ts';
import { collect, envOption, examples, globalsOf } from './common.ts';

const pathOf = (m: Pick<SecretMetadata, 'kind' | 'owner' | 'name'>) => `${m.kind}/${m.owner}/${m.name}`;

/** What `push` stores of a manifest secret: only the fields the file names. */
function pushBody(s: ManifestSecret) {
  const strategy = strategyOfManifest(s);
  return {
    ...(s.class !== undefined ? { class: s.class } : {}),
    ...(strategy ? { strategy } : {}),
    ...(s.ownerTeam !== undefined ? { ownerTeam: s.ownerTeam } : {}),
    ...(s.contact !== undefined ? { contact: s.contact } : {}),
    ...(s.description !== undefined ? { description: s.description } : {}),
  };
}

/** The server's deployment metadata of every secret of these owners, by path. */
async function metadataOf(
  client: CofferClient,
  owners: Iterable<string>,
  env: string | undefined,
): Promise<Map<string, SecretMetadata>> {
  const out = new Map<string, SecretMetadata>();
  for (const o of owners) {
    const { kind, owner } = parseOwnerPath(o);
    for await (const m of client.listSecrets({ kind, owner, limit: 1000, ...(env ? { env } : {}) })) {
      out.set(pathOf(m), m);
    }
  }
  return out;
}

/** A manifest entry with the server's class, strategy, owner, contact and description; its own check rules kept. */
function pulled(entry: ManifestSecret, m: SecretMetadata): ManifestSecret {
  const {
    tiers: _tiers,
    strategy: _strategy,
    class: _class,
    ownerTeam: _t,
    contact: _c,
    description: _d,
    ...own
  } = entry;
  return {
    ...own,
    ...(m.class ? { class: m.class } : {}),
    ...(m.strategy && Object.keys(m.strategy).length > 0 ? { strategy: m.strategy } : {}),
    ...(m.ownerTeam ? { ownerTeam: m.ownerTeam } : {}),
    ...(m.contact ? { contact: m.contact } : {}),
    ...(m.description ? { description: m.description } : {}),
  } as ManifestSecret;
}

export function registerManifest(program: Command): void {
  const manifest = program
    .command('manifest')
    .summary('Sync a manifest file with the strategies stored on the server')
    .description(
      "A manifest's class, strategy (and its `tiers` shorthand), ownerTeam, contact and description live on the " +
        'server, with each secret, so every deployment plans from the same rules: push stores them there, pull ' +
        'writes the server’s back into the file (its format and maxAgeDays checks stay as they are).',
    );

  examples(
    manifest
      .command('push')
      .summary("Store the manifest's classes and strategies on the server")
      .argument('<manifest>', 'a manifest (.json, .yaml or .yml)')
      .addOption(envOption())
      .option('--json', 'print the results as JSON')
      .description(
        'For each secret of the manifest, store the fields the file names (class, strategy and tiers, ownerTeam, ' +
          'contact, description) on the server; fields the file leaves out are left as they are. Needs write on ' +
          'each secret. Exit 1 if any secret could not be updated (missing, denied), naming each.',
      )
      .action(async (file: string, opts: { env?: string; json?: boolean }, cmd: Command) => {
        const m = loadManifest(file);
        const { client } = connect(globalsOf(cmd));
        const results: { path: string; ok: boolean; fields: string[]; problem?: string }[] = [];
        for (const s of m.secrets) {
          const body = pushBody(s);
          const fields = Object.keys(body);
          if (fields.length === 0) {
            results.push({ path: s.path, ok: true, fields });
            continue;
          }
          try {
            await client.call('patchSecret', {
              params: parseSecretPath(s.path),
              ...(opts.env !== undefined ? { query: { env: opts.env } } : {}),
              body,
            });
            results.push({ path: s.path, ok: true, fields });
          } catch (e) {
            if (!(e instanceof CofferError) || e.code === 'network_error' || e.code === 'unauthorized') throw e;
            results.push({ path: s.path, ok: false, fields, problem: `${e.message} (${e.code})` });
          }
        }
        const failed = results.filter((r) => !r.ok);
        if (opts.json) json({ ok: failed.length === 0, results });
        else {
          const st = styleFor(process.stdout);
          for (const r of results) {
            if (!r.ok) out(`${st.red('✗')} ${r.path}  ${r.problem}\n`);
            else if (r.fields.length === 0) out(`${st.dim('-')} ${r.path}  ${st.dim('nothing to push')}\n`);
            else out(`${st.green('✓')} ${r.path}  ${st.dim(r.fields.join(', '))}\n`);
          }
        }
        if (failed.length > 0) {
          throw new CliError(`${failed.length} of ${results.length} secrets of ${file} were not updated`, EXIT.failure);
        }
        note(`Pushed ${file}: ${results.filter((r) => r.fields.length > 0).length} secrets updated.`);
      }),
    ['$ coffer manifest push deploy/secrets.yaml', '$ coffer manifest push deploy/secrets.yaml --env production'],
  );

  examples(
    manifest
      .command('pull')
      .summary("Write the server's classes and strategies into the manifest")
      .argument('<manifest>', 'the manifest to update, or to create with --bundle')
      .option('--bundle <kind/owner>', 'also add every secret of this bundle not in the file yet (repeat it)', collect)
      .addOption(envOption())
      .description(
        'Update each secret of the manifest from the server (class, strategy, ownerTeam, contact, description: the ' +
          'server wins, and a `tiers` shorthand is folded into `strategy`), and add the secrets of --bundle not in ' +
          'it yet. The file is written back as JSON or YAML, by its name; format and maxAgeDays are kept. Needs list ' +
          'on the secrets.',
      )
      .action(async (file: string, opts: { bundle?: string[]; env?: string }, cmd: Command) => {
        const exists = existsSync(file);
        if (!exists && !opts.bundle)
          throw new CliError(`${file} does not exist: name --bundle to create it`, EXIT.usage);
        const current: Manifest = exists
          ? loadManifest(file)
          : { version: 1, secrets: [] as unknown as Manifest['secrets'] };
        const bundles = new Set<string>(
          (opts.bundle ?? []).map((b) => {
            const o = parseOwnerPath(b);
            return `${o.kind}/${o.owner}`;
          }),
        );
        const owners = new Set<string>(bundles);
        for (const s of current.secrets) {
          const p = parseSecretPath(s.path);
          owners.add(`${p.kind}/${p.owner}`);
        }
        const { client } = connect(globalsOf(cmd));
        const server = await metadataOf(client, owners, opts.env);
        const missing: string[] = [];
        const secrets: ManifestSecret[] = current.secrets.map((s) => {
          const m = server.get(s.path);
          if (!m) {
            missing.push(s.path);
            return s;
          }
          return pulled(s, m);
        });
        const listed = new Set(secrets.map((s) => s.path));
        for (const [path, m] of [...server.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
          if (listed.has(path) || !bundles.has(`${m.kind}/${m.owner}`)) continue;
          secrets.push(pulled({ path } as ManifestSecret, m));
        }
        if (secrets.length === 0) {
          throw new CliError(
            `nothing to write: ${[...bundles].join(', ')} has no secret this identity may list`,
            EXIT.notFound,
          );
        }
        const next = { version: 1 as const, secrets };
        writeFileSync(file, /\.json$/i.test(file) ? `${JSON.stringify(next, null, 2)}\n` : YAML.stringify(next));
        for (const p of missing) note(`${p} is not on the server (kept as it was)`);
        note(`Wrote ${file}: ${secrets.length} secrets (${secrets.length - current.secrets.length} added).`);
      }),
    ['$ coffer manifest pull deploy/secrets.yaml', '$ coffer manifest pull deploy/secrets.yaml --bundle sandbox/app'],
  );
}
