import { DEFAULT_ENVIRONMENT, type SecretKind } from '@coffer/contracts';
import { and, asc, eq, inArray, isNotNull, lt, sql } from 'drizzle-orm';
import { type LinkKeys, toAppendRow } from '../audit/audit.digest.ts';
import type { AuditEvent } from '../audit/audit.types.ts';
import type { RowMacs, SecretMacFields, VersionMacFields } from '../crypto/row-macs.ts';
import type { Database, Tx } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import { identities, rotationSchedule, secrets, secretVersions } from '../db/schema.ts';
import { unavailable } from '../errors/app-error.ts';
import { ReadBatcher, type ReadCall } from './read-batcher.ts';
import type { BundleOutcome, ReadOutcome, WantedVersion } from './read-outcomes.ts';

export type SecretRow = typeof secrets.$inferSelect;
export type SecretVersionRow = Omit<typeof secretVersions.$inferSelect, 'ciphertext' | 'fingerprint' | 'mac'> & {
  destroyed: boolean;
};

/** Where a secret lives: its environment (a slug of coffer.environments) and its kind/owner/name. */
export interface SecretPath {
  environment: string;
  kind: SecretKind;
  owner: string;
  name: string;
}

/**
 * pgp_sym_encrypt options. The key is 32 random bytes, not a passphrase, so the costly iterated S2K buys nothing;
 * salted S2K (mode 1) still derives a fresh key per message. AES-256, no compression (compression before encryption
 * leaks length information).
 */
export const PGP_OPTIONS = 'cipher-algo=aes256, compress-algo=0, s2k-mode=1, s2k-digest-algo=sha256';

/**
 * The first line of every plaintext: binds a ciphertext to its tenant, secret, version and path, so a ciphertext
 * moved to another row, or a row renamed to another path, fails its read. The path comes last: names hold no newline.
 */
export function bindingLine(tenantId: string, secretId: string, version: number, path: SecretPath): string {
  // Outside `default` the environment follows the path after an `@`, which no name holds.
  const where = path.environment === DEFAULT_ENVIRONMENT ? '' : `@${path.environment}`;
  return `coffer:v2:${tenantId}:${secretId}:${version}:${path.kind}/${path.owner}/${path.name}${where}\n`;
}

const matchAt = (s: string, at: number, part: string): number =>
  at >= 0 && s.startsWith(part, at) ? at + part.length : -1;

/**
 * The length of `bindingLine(tenantId, secretId, version, path)` if the plaintext starts with it, else -1: the line
 * compared piece by piece, so a read never builds (and flattens) the line only to compare it.
 */
export function bindingLineLength(
  plaintext: string,
  tenantId: string,
  secretId: string,
  version: number,
  path: SecretPath,
): number {
  let at = matchAt(plaintext, 0, 'coffer:v2:');
  at = matchAt(plaintext, at, tenantId);
  at = matchAt(plaintext, at, ':');
  at = matchAt(plaintext, at, secretId);
  at = matchAt(plaintext, at, ':');
  at = matchAt(plaintext, at, String(version));
  at = matchAt(plaintext, at, ':');
  at = matchAt(plaintext, at, path.kind);
  at = matchAt(plaintext, at, '/');
  at = matchAt(plaintext, at, path.owner);
  at = matchAt(plaintext, at, '/');
  at = matchAt(plaintext, at, path.name);
  if (path.environment !== DEFAULT_ENVIRONMENT) {
    at = matchAt(plaintext, at, '@');
    at = matchAt(plaintext, at, path.environment);
  }
  return matchAt(plaintext, at, '\n');
}

/**
 * The binding line of versions written before the path was bound. Still accepted on read: the secret row's MAC
 * covers the path, so such a version is served only from the path its row was MACed at.
 */
export function legacyBindingLine(tenantId: string, secretId: string, version: number): string {
  return `coffer:v1:${tenantId}:${secretId}:${version}\n`;
}

/** The columns of a secret row that its MAC covers. */
export const secretMacFields = (r: SecretRow): SecretMacFields => ({
  tenantId: r.tenantId,
  id: r.id,
  environment: r.environment,
  kind: r.kind,
  owner: r.owner,
  name: r.name,
  currentVersion: r.currentVersion,
  expiresAt: r.expiresAt,
  deleted: r.deletedAt !== null,
  class: r.class ?? null,
  strategy: r.strategy ?? null,
  ownerTeam: r.ownerTeam ?? null,
  contact: r.contact ?? null,
});

/** The columns of a version row that its MAC covers. */
export const versionMacFields = (
  tenantId: string,
  v: {
    secretId: string;
    version: number;
    servedUntil: Date | null;
    revokedAt: Date | null;
    deploymentId: string | null;
  },
): VersionMacFields => ({
  tenantId,
  secretId: v.secretId,
  version: v.version,
  servedUntil: v.servedUntil,
  revokedAt: v.revokedAt,
  deploymentId: v.deploymentId,
});

/** What an UPDATE of a version returns so that its MAC can be made again from the row as stored. */
const macColumns = {
  secretId: secretVersions.secretId,
  version: secretVersions.version,
  servedUntil: secretVersions.servedUntil,
  revokedAt: secretVersions.revokedAt,
  deploymentId: secretVersions.deploymentId,
};
type VersionMacInput = Parameters<typeof versionMacFields>[1];

/** One row of coffer.read_secret: `outcome` says whether `plaintext` is there, and why not. */
export interface ReadRow {
  outcome: ReadOutcome;
  /** The secret's columns are null when the outcome is identity_changed or not_found. */
  secret_id: string;
  current_version: number;
  description: string | null;
  tags: string[];
  format: unknown;
  expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
  created_by: string | null;
  version: number | null;
  served_until: Date | null;
  plaintext: string | null;
  rotation_interval_days: number | null;
  rotation_grace_hours: number | null;
  generator: { length: number; charset: string; prefix?: string } | null;
  last_rotated_at: Date | null;
  next_rotation_at: Date | null;
  secret_mac: string | null;
  version_mac: string | null;
  class: SecretRow['class'];
  strategy: Record<string, unknown> | null;
  owner_team: string | null;
  contact: string | null;
  revoked_at: Date | null;
  deployment_id: string | null;
}

/** One secret a check run found, with its current version's facts and, when it can be read, its plaintext. */
export interface CheckRow {
  environment: string;
  kind: SecretKind;
  owner: string;
  name: string;
  secret_id: string;
  current_version: number;
  format: unknown;
  expires_at: Date | null;
  deleted_at: Date | null;
  next_rotation_at: Date | null;
  version_created_at: Date | null;
  destroyed: boolean;
  key_missing: boolean;
  /** Only for a live, unexpired secret whose current version is sealed under a key in the set passed in. */
  plaintext: string | null;
  served_until: Date | null;
  secret_mac: string | null;
  version_mac: string | null;
  class: SecretRow['class'];
  strategy: Record<string, unknown> | null;
  owner_team: string | null;
  contact: string | null;
  revoked_at: Date | null;
  deployment_id: string | null;
}

export interface BundleRow {
  outcome: BundleOutcome;
  secret_id: string;
  name: string;
  version: number;
  plaintext: string | null;
  expires_at: Date | null;
  served_until: Date | null;
  secret_mac: string | null;
  version_mac: string | null;
  /** The other columns the two MACs cover. */
  class: SecretRow['class'];
  strategy: Record<string, unknown> | null;
  owner_team: string | null;
  contact: string | null;
  revoked_at: Date | null;
  deployment_id: string | null;
}

/** One name of a coffer.write_secrets call, as the API planned it: the row it saw and the row it will store. */
export interface WriteItem {
  name: string;
  op: 'write' | 'delete';
  /** The xmin of the row the item was planned on; null when planned on no row (a create). */
  xmin: string | null;
  /** Planned on the row an earlier call of the same statement leaves: that row's MAC (then `xmin` is null). */
  left_mac?: string | null;
  create: boolean;
  purge: boolean;
  /** The soft-deleted row erased first, its recovery window closed (then `create`). */
  purge_id: string | null;
  /** The secret row as it will be stored (snake_case columns), its MAC included. */
  row: Record<string, unknown>;
  version: {
    version: number;
    binding: string;
    /** 1-based, into the call's values. */
    value: number;
    dek_version: number;
    created_by: string | null;
    fingerprint: string | null;
    mac: string;
    deployment_id: string | null;
  } | null;
  /** The custom pattern the value must match (decided by PostgreSQL's regex engine), or null. */
  pattern: string | null;
  /** Bring the rotation schedule in step with the stored row. */
  schedule: boolean;
}

/** A check-only item: is the row still the one the API saw (and does the value match its pattern)? */
export interface CheckItem {
  name: string;
  xmin: string | null;
  left_mac?: string | null;
  pattern: string | null;
  version: { value: number } | null;
}

/** One request's part of a coffer.write_secrets statement. */
export interface WriteCall {
  identity: string;
  revision: number;
  env: string;
  kind: SecretKind;
  owner: string;
  /** False: the API refuses the request on what it saw; the statement only confirms that it saw the current rows. */
  apply: boolean;
  /** New custom patterns, compiled first (a bad one: bad_pattern, with its index). */
  patterns: string[];
  items: (WriteItem | CheckItem)[];
  /** Audit rows (toAppendRow) and webhook notices, staged and enqueued only if the call applies. */
  events: Record<string, unknown>[];
  notices: { event: string; payload: Record<string, unknown> }[];
  /** Offset of this call's values in the statement's value array. */
  value_base: number;
}

/** One row of coffer.write_secrets. */
export interface WriteResultRow {
  call_index: number;
  outcome: string;
  item_index: number | null;
  pattern_ok: boolean | null;
  row_xmin: string | null;
  secret: Record<string, unknown> | null;
  error_code: string | null;
}

/** A secret row as stored, in the snake_case columns coffer.write_secrets reads with jsonb_populate_record. */
function toJsonRow(r: SecretRow): Record<string, unknown> {
  const at = (d: Date | null) => (d ? d.toISOString() : null);
  return {
    id: r.id,
    tenant_id: r.tenantId,
    environment: r.environment,
    kind: r.kind,
    owner: r.owner,
    name: r.name,
    current_version: r.currentVersion,
    description: r.description,
    tags: r.tags,
    format: r.format ?? null,
    expires_at: at(r.expiresAt),
    created_by: r.createdBy,
    updated_by: r.updatedBy,
    deleted_at: at(r.deletedAt),
    deleted_by: r.deletedBy,
    rotation_interval_days: r.rotationIntervalDays,
    rotation_grace_hours: r.rotationGraceHours,
    generator: r.generator,
    last_rotated_at: at(r.lastRotatedAt),
    next_rotation_at: at(r.nextRotationAt),
    mac: r.mac,
    class: r.class,
    strategy: r.strategy,
    owner_team: r.ownerTeam,
    contact: r.contact,
  };
}

/** A read whose event the audit chain refused (CF002) is not served: 503, as when the group commit fails. */
function servedRefusal(err: unknown): unknown {
  if (pgErrorCode(err) !== 'CF002') return err;
  return Object.assign(unavailable('the audit log is unavailable, so the request was refused'), { cause: err });
}

/** Data access for secrets. Every function takes the tenant first and an optional transaction last. */
export function secretQueries(
  db: Database,
  macs: RowMacs,
  o: {
    /** Each tenant's audit link key: a read's statement appends the read's event itself. */
    linkKey: LinkKeys;
    observeReads?: (reads: number) => void;
  },
) {
  // The reads of one statement, each with its audit event or none (coffer.read_secrets): a read and its event
  // commit together or not at all.
  async function readStatement(tenantId: string, calls: readonly ReadCall[], keys: readonly (string | null)[]) {
    const link = o.linkKey(tenantId);
    try {
      const { rows } = await db.pool.query<ReadRow & { n: string }>(
        db.statement(
          'coffer_read_secret',
          'select * from coffer.read_secrets($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)',
          [
            tenantId,
            calls.map((c) => c.identityId),
            calls.map((c) => c.revision),
            calls.map((c) => c.environment),
            calls.map((c) => c.kind),
            calls.map((c) => c.owner),
            calls.map((c) => c.name),
            calls.map((c) => c.version),
            calls.map((c) => c.previous),
            keys,
            JSON.stringify(calls.map((c) => (c.event ? toAppendRow(c.event) : null))),
            link.id,
            link.key,
          ],
        ),
      );
      return rows;
    } catch (err) {
      throw servedRefusal(err);
    }
  }

  const reads = new ReadBatcher<ReadRow>({
    async one(tenantId, c, keys) {
      const [row] = await readStatement(tenantId, [c], keys);
      if (!row) throw new Error('coffer.read_secret returned no row');
      return row;
    },
    many: readStatement,
    isItemError: (err) => pgErrorCode(err) === '39000',
    ...(o.observeReads ? { observe: o.observeReads } : {}),
  });

  /** Every write of a secret row ends here: its MAC is made from the row as stored, in the same transaction. */
  async function sealed(t: Tx, row: SecretRow): Promise<SecretRow> {
    const mac = macs.secret(secretMacFields(row));
    await t.update(secrets).set({ mac }).where(eq(secrets.id, row.id));
    return { ...row, mac };
  }

  /** The same for a version whose covered columns an UPDATE just changed (`row`: the columns as stored). */
  async function sealVersion(t: Tx, tenantId: string, row: VersionMacInput): Promise<void> {
    await t
      .update(secretVersions)
      .set({ mac: macs.version(versionMacFields(tenantId, row)) })
      .where(and(eq(secretVersions.secretId, row.secretId), eq(secretVersions.version, row.version)));
  }

  return {
    /**
     * One round trip: the caller's identity re-checked, then metadata, one version and its decrypted value
     * (see coffer.read_secret), and, if the read is served and has an event, the event appended with the version.
     */
    read(
      tenantId: string,
      caller: { identityId: string; revision: number },
      path: SecretPath,
      version: WantedVersion,
      keys: (string | null)[],
      event: AuditEvent | null,
    ): Promise<ReadRow> {
      return reads.read(
        tenantId,
        {
          identityId: caller.identityId,
          revision: caller.revision,
          environment: path.environment,
          kind: path.kind,
          owner: path.owner,
          name: path.name,
          version: typeof version === 'number' ? version : null,
          previous: version === 'previous',
          event,
        },
        keys,
      );
    },

    /**
     * Every wanted path in one statement (soft-deleted secrets included, so a check can say `deleted`), with the
     * current version decrypted only where the secret is live and unexpired: a check never decrypts more than a
     * read would. Paths that are not there come back as no row.
     */
    checkRows(
      tenantId: string,
      environment: string,
      paths: readonly Omit<SecretPath, 'environment'>[],
      keys: (string | null)[],
      tx: Tx,
    ): Promise<CheckRow[]> {
      return db.inTenant(tenantId, tx, async (t) => {
        const k = sql`(${sql.param(keys)}::text[])[v.dek_version]`;
        const { rows } = await t.execute<Record<string, unknown>>(sql`
          select s.environment, s.kind, s.owner, s.name, s.id as secret_id, s.current_version, s.format, s.expires_at, s.deleted_at,
            s.next_rotation_at, v.created_at as version_created_at, v.ciphertext is null as destroyed,
            v.served_until, s.mac as secret_mac, v.mac as version_mac,
            s.class, s.strategy, s.owner_team, s.contact, v.revoked_at, v.deployment_id,
            ${k} is null as key_missing,
            case when s.deleted_at is null and (s.expires_at is null or s.expires_at > now())
                   and v.ciphertext is not null and ${k} is not null
                 then pgp_sym_decrypt(v.ciphertext, ${k}) end as plaintext
          from unnest(${sql.param(paths.map((p) => p.kind))}::text[], ${sql.param(paths.map((p) => p.owner))}::text[],
                      ${sql.param(paths.map((p) => p.name))}::text[]) as w(kind, owner, name)
          join coffer.secrets s on s.tenant_id = ${tenantId} and s.environment = ${environment} and s.kind = w.kind and s.owner = w.owner and s.name = w.name
          left join coffer.secret_versions v on v.secret_id = s.id and v.version = s.current_version`);
        // drizzle hands raw statements' timestamps back as text: give the rows the Dates the interface promises.
        const at = (x: unknown) => (x === null || x === undefined ? null : new Date(x as string | Date));
        return rows.map((r) => ({
          ...(r as unknown as CheckRow),
          expires_at: at(r.expires_at),
          deleted_at: at(r.deleted_at),
          next_rotation_at: at(r.next_rotation_at),
          version_created_at: at(r.version_created_at),
          served_until: at(r.served_until),
          revoked_at: at(r.revoked_at),
        }));
      });
    },

    /**
     * Which values match their custom pattern, one statement for a whole check run, by PostgreSQL's regex engine
     * (as on writes: its statement timeout bounds a hostile pattern). Values travel only as bind parameters.
     */
    async matchPatterns(values: string[], patterns: string[], tx: Tx): Promise<boolean[]> {
      const { rows } = await tx.execute<{ ok: boolean }>(sql`
        select x.value ~ x.pattern as ok
        from unnest(${sql.param(values)}::text[], ${sql.param(patterns)}::text[]) with ordinality as x(value, pattern, i)
        order by x.i`);
      return rows.map((r) => r.ok === true);
    },

    async bundleNames(tenantId: string, environment: string, kind: SecretKind, owner: string): Promise<string[]> {
      const { rows } = await db.pool.query<{ name: string }>(
        db.statement('coffer_bundle_names', 'select name from coffer.bundle_names($1, $2, $3, $4)', [
          tenantId,
          environment,
          kind,
          owner,
        ]),
      );
      return rows.map((r) => r.name);
    },

    /** Current values of an owner's live secrets, each with its outcome (see coffer.read_bundle). */
    async readBundle(
      tenantId: string,
      caller: { identityId: string; revision: number },
      environment: string,
      kind: SecretKind,
      owner: string,
      names: string[] | null,
      keys: (string | null)[],
    ): Promise<BundleRow[]> {
      const { rows } = await db.pool.query<BundleRow>(
        db.statement('coffer_read_bundle', 'select * from coffer.read_bundle($1, $2, $3, $4, $5, $6, $7, $8)', [
          tenantId,
          caller.identityId,
          caller.revision,
          environment,
          kind,
          owner,
          names,
          keys,
        ]),
      );
      return rows;
    },

    async list(
      tenantId: string,
      environment: string,
      f: {
        kind?: SecretKind | undefined;
        owner?: string | undefined;
        prefix?: string | undefined;
        deleted?: boolean | undefined;
      },
      after: Omit<SecretPath, 'environment'> | undefined,
      limit: number,
    ): Promise<SecretRow[]> {
      // Soft-deleted rows are few and listed rarely (to find what to restore): the live list keeps its SQL function.
      if (f.deleted === true) {
        return db.inTenant(tenantId, undefined, (t) =>
          t
            .select()
            .from(secrets)
            .where(
              and(
                eq(secrets.environment, environment),
                isNotNull(secrets.deletedAt),
                f.kind !== undefined ? eq(secrets.kind, f.kind) : undefined,
                f.owner !== undefined ? eq(secrets.owner, f.owner) : undefined,
                f.prefix !== undefined ? sql`starts_with(${secrets.name}, ${f.prefix})` : undefined,
                after
                  ? sql`(${secrets.kind}, ${secrets.owner}, ${secrets.name}) > (${after.kind}, ${after.owner}, ${after.name})`
                  : undefined,
              ),
            )
            .orderBy(asc(secrets.kind), asc(secrets.owner), asc(secrets.name))
            .limit(limit),
        );
      }
      const { rows } = await db.pool.query('select * from coffer.list_secrets($1, $2, $3, $4, $5, $6, $7, $8, $9)', [
        tenantId,
        environment,
        f.kind ?? null,
        f.owner ?? null,
        f.prefix ?? null,
        after?.kind ?? null,
        after?.owner ?? null,
        after?.name ?? null,
        limit,
      ]);
      return rows.map(fromSqlRow);
    },

    /** The secret row as it is now, unlocked (soft-deleted ones included): for answers that change nothing. */
    find(tenantId: string, path: SecretPath, tx?: Tx): Promise<SecretRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .select()
          .from(secrets)
          .where(
            and(
              eq(secrets.environment, path.environment),
              eq(secrets.kind, path.kind),
              eq(secrets.owner, path.owner),
              eq(secrets.name, path.name),
            ),
          );
        return row;
      });
    },

    /** The secret row, locked for the rest of the transaction (soft-deleted ones included). */
    lock(tenantId: string, path: SecretPath, tx: Tx): Promise<SecretRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .select()
          .from(secrets)
          .where(
            and(
              eq(secrets.environment, path.environment),
              eq(secrets.kind, path.kind),
              eq(secrets.owner, path.owner),
              eq(secrets.name, path.name),
            ),
          )
          .for('update');
        return row;
      });
    },

    /** Several secrets of one owner, locked in name order (so concurrent bundle writes cannot deadlock). */
    lockMany(
      tenantId: string,
      environment: string,
      kind: SecretKind,
      owner: string,
      names: string[],
      tx: Tx,
    ): Promise<SecretRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(secrets)
          .where(
            and(
              eq(secrets.environment, environment),
              eq(secrets.kind, kind),
              eq(secrets.owner, owner),
              inArray(secrets.name, names),
            ),
          )
          .orderBy(asc(secrets.name))
          .for('update'),
      );
    },

    /**
     * The item coffer.write_secrets stores for `next`, the secret row as the write leaves it: its MAC, and its new
     * version's MAC and binding line, are made here, under a key the database never holds.
     */
    writeItem(
      next: SecretRow,
      o: {
        op: 'write' | 'delete';
        xmin: string | null;
        create: boolean;
        purgeId: string | null;
        version?: {
          value: number;
          dekVersion: number;
          createdBy: string | null;
          fingerprint: string | null;
        };
        pattern: string | null;
        schedule: boolean;
      },
    ): WriteItem {
      const mac = macs.secret(secretMacFields(next));
      const v = o.version;
      const version = next.currentVersion;
      return {
        name: next.name,
        op: o.op,
        xmin: o.xmin,
        create: o.create,
        purge: o.purgeId !== null,
        purge_id: o.purgeId,
        row: toJsonRow({ ...next, mac }),
        version: v
          ? {
              version,
              binding: bindingLine(next.tenantId, next.id, version, next),
              value: v.value,
              dek_version: v.dekVersion,
              created_by: v.createdBy,
              fingerprint: v.fingerprint,
              // A write through write_secrets is never a deployment's: its version has no deployment and no revocation.
              mac: macs.version(
                versionMacFields(next.tenantId, {
                  secretId: next.id,
                  version,
                  servedUntil: null,
                  revokedAt: null,
                  deploymentId: null,
                }),
              ),
              deployment_id: null,
            }
          : null,
        pattern: o.pattern,
        schedule: o.schedule,
      };
    },

    /**
     * Several requests' writes of one tenant in one statement, one transaction and one commit (see
     * coffer.write_secrets): the values and the active data key travel as bind parameters, with the tenant's audit
     * link key for the events. Fails as a whole only when the commit does (CF002: the audit chain refused) or the
     * database does; each call's own outcome is in its rows.
     */
    async writeSecrets(
      tenantId: string,
      calls: readonly WriteCall[],
      values: readonly string[],
      dekHex: string,
      link: { id: string; key: Buffer },
      lockWaitMs: number,
    ): Promise<WriteResultRow[]> {
      try {
        const { rows } = await db.pool.query<WriteResultRow>(
          db.statement('coffer_write_secrets', 'select * from coffer.write_secrets($1, $2, $3, $4, $5, $6, $7, $8)', [
            tenantId,
            JSON.stringify(calls),
            values,
            dekHex,
            PGP_OPTIONS,
            link.id,
            link.key,
            lockWaitMs,
          ]),
        );
        return rows;
      } catch (err) {
        if (pgErrorCode(err) === 'CF002') {
          throw Object.assign(unavailable('the audit log is unavailable, so the change was not made'), { cause: err });
        }
        throw err;
      }
    },

    /** Inserts a new secret unless another writer just did; returns undefined then (the caller re-locks). */
    insertSecret(
      tenantId: string,
      row: Omit<typeof secrets.$inferInsert, 'tenantId'>,
      tx: Tx,
    ): Promise<SecretRow | undefined> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [created] = await t
          .insert(secrets)
          .values({ ...row, tenantId })
          .onConflictDoNothing({
            target: [secrets.tenantId, secrets.environment, secrets.kind, secrets.owner, secrets.name],
          })
          .returning();
        return created ? sealed(t, created) : undefined;
      });
    },

    /** Encrypts inside PostgreSQL: the value and the data key travel only as bind parameters. */
    insertVersion(
      tenantId: string,
      v: {
        secretId: string;
        path: SecretPath;
        version: number;
        value: string;
        dekHex: string;
        dekVersion: number;
        createdBy: string | null;
        fingerprint: string | null;
        deploymentId?: string | null | undefined;
      },
      tx: Tx,
    ): Promise<void> {
      const plaintext = bindingLine(tenantId, v.secretId, v.version, v.path) + v.value;
      const deploymentId = v.deploymentId ?? null;
      const mac = macs.version(versionMacFields(tenantId, { ...v, servedUntil: null, revokedAt: null, deploymentId }));
      return db.inTenant(tenantId, tx, async (t) => {
        await t.insert(secretVersions).values({
          tenantId,
          secretId: v.secretId,
          version: v.version,
          ciphertext: sql`pgp_sym_encrypt(${plaintext}, ${v.dekHex}, ${PGP_OPTIONS})`,
          dekVersion: v.dekVersion,
          createdBy: v.createdBy,
          fingerprint: v.fingerprint,
          mac,
          deploymentId,
        });
      });
    },

    update(
      tenantId: string,
      id: string,
      patch: Partial<Omit<typeof secrets.$inferInsert, 'id' | 'tenantId'>>,
      tx: Tx,
    ): Promise<SecretRow> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(secrets)
          .set({ ...patch, updatedAt: sql`now()` })
          .where(eq(secrets.id, id))
          .returning();
        return sealed(t, row as SecretRow);
      });
    },

    /** With the name each version's author has now (an identity of the same tenant, or none once deleted). */
    versions(
      tenantId: string,
      secretId: string,
      tx?: Tx,
    ): Promise<(SecretVersionRow & { createdByName: string | null; mac: string | null })[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select({
            tenantId: secretVersions.tenantId,
            secretId: secretVersions.secretId,
            version: secretVersions.version,
            dekVersion: secretVersions.dekVersion,
            createdAt: secretVersions.createdAt,
            createdBy: secretVersions.createdBy,
            destroyedAt: secretVersions.destroyedAt,
            servedUntil: secretVersions.servedUntil,
            revokedAt: secretVersions.revokedAt,
            revokedBy: secretVersions.revokedBy,
            deploymentId: secretVersions.deploymentId,
            destroyed: sql<boolean>`${secretVersions.ciphertext} is null`,
            createdByName: identities.name,
            mac: secretVersions.mac,
          })
          .from(secretVersions)
          .leftJoin(
            identities,
            and(eq(identities.id, secretVersions.createdBy), eq(identities.tenantId, secretVersions.tenantId)),
          )
          .where(eq(secretVersions.secretId, secretId))
          .orderBy(asc(secretVersions.version)),
      );
    },

    /** Marks a superseded version as served only until `until` (the rotation grace period). */
    serveUntil(tenantId: string, secretId: string, version: number, until: Date, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(secretVersions)
          .set({ servedUntil: until })
          .where(and(eq(secretVersions.secretId, secretId), eq(secretVersions.version, version)))
          .returning(macColumns);
        if (row) await sealVersion(t, tenantId, row);
      });
    },

    /**
     * Revokes one version: never served again (read_secret answers `revoked`), and served_until ends now so anything
     * that only looks at the grace period sees it over. False when there is no such version.
     */
    revokeVersion(
      tenantId: string,
      secretId: string,
      version: number,
      by: string | null,
      tx: Tx,
    ): Promise<Date | null> {
      return db.inTenant(tenantId, tx, async (t) => {
        const [row] = await t
          .update(secretVersions)
          .set({
            revokedAt: sql`coalesce(${secretVersions.revokedAt}, now())`,
            revokedBy: sql`coalesce(${secretVersions.revokedBy}, ${by}::uuid)`,
            servedUntil: sql`least(coalesce(${secretVersions.servedUntil}, now()), now())`,
          })
          .where(and(eq(secretVersions.secretId, secretId), eq(secretVersions.version, version)))
          .returning(macColumns);
        if (!row) return null;
        // revoked_at and served_until are under the version's MAC: the MAC follows them, as serveUntil's does.
        await sealVersion(t, tenantId, row);
        return row.revokedAt;
      });
    },

    /** Keeps the rotation schedule in step with the secret's policy (no policy: no row). */
    schedule(tenantId: string, secretId: string, dueAt: Date | null, automatic: boolean, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        if (!dueAt) {
          await t.delete(rotationSchedule).where(eq(rotationSchedule.secretId, secretId));
          return;
        }
        await t
          .insert(rotationSchedule)
          .values({ secretId, tenantId, dueAt, automatic })
          .onConflictDoUpdate({ target: rotationSchedule.secretId, set: { dueAt, automatic } });
      });
    },

    /** Erases one version's ciphertext; returns false when there is no such version. */
    destroyVersion(tenantId: string, secretId: string, version: number, tx: Tx): Promise<boolean> {
      return db.inTenant(tenantId, tx, async (t) => {
        const rows = await t
          .update(secretVersions)
          .set({ ciphertext: null, destroyedAt: sql`coalesce(${secretVersions.destroyedAt}, now())` })
          .where(and(eq(secretVersions.secretId, secretId), eq(secretVersions.version, version)))
          .returning({ version: secretVersions.version });
        return rows.length > 0;
      });
    },

    /** Erases a secret and, by cascade, every ciphertext of it. */
    purge(tenantId: string, id: string, tx: Tx): Promise<void> {
      return db.inTenant(tenantId, tx, async (t) => {
        await t.delete(secrets).where(eq(secrets.id, id));
      });
    },

    /** Soft-deleted secrets whose recovery window has closed, locked for purging. */
    expiredDeletions(tenantId: string, deletedBefore: Date, limit: number, tx: Tx): Promise<SecretRow[]> {
      return db.inTenant(tenantId, tx, (t) =>
        t
          .select()
          .from(secrets)
          .where(and(isNotNull(secrets.deletedAt), lt(secrets.deletedAt, deletedBefore)))
          .limit(limit)
          .for('update', { skipLocked: true }),
      );
    },

    /**
     * Whether `value` matches a custom format's pattern, decided by PostgreSQL's regex engine (its statement timeout
     * bounds a hostile pattern), on the write's own connection: a second connection per write could exhaust the pool.
     */
    async matchesPattern(value: string, pattern: string, tx: Tx): Promise<boolean> {
      const { rows } = await tx.execute<{ ok: boolean }>(sql`select ${value}::text ~ ${pattern}::text as ok`);
      return rows[0]?.ok === true;
    },

    /** Throws SQLSTATE 2201B when the pattern is not a valid regular expression (and aborts `tx`). */
    async compilePattern(pattern: string, tx: Tx): Promise<void> {
      await tx.execute(sql`select ''::text ~ ${pattern}::text`);
    },
  };
}

const date = (x: unknown): Date | null => (x === null || x === undefined ? null : new Date(x as string | Date));

/** list_secrets returns raw rows, and write_secrets rows as jsonb (timestamps as text): give them drizzle's shape. */
export function fromSqlRow(r: Record<string, unknown>): SecretRow {
  return {
    id: r.id as string,
    tenantId: r.tenant_id as string,
    environment: r.environment as string,
    kind: r.kind as SecretKind,
    owner: r.owner as string,
    name: r.name as string,
    currentVersion: r.current_version as number,
    description: r.description as string | null,
    tags: r.tags as string[],
    format: r.format,
    expiresAt: date(r.expires_at),
    createdAt: date(r.created_at) as Date,
    updatedAt: date(r.updated_at) as Date,
    createdBy: r.created_by as string | null,
    updatedBy: r.updated_by as string | null,
    deletedAt: date(r.deleted_at),
    deletedBy: r.deleted_by as string | null,
    rotationIntervalDays: r.rotation_interval_days as number | null,
    rotationGraceHours: r.rotation_grace_hours as number | null,
    generator: r.generator as SecretRow['generator'],
    lastRotatedAt: date(r.last_rotated_at),
    nextRotationAt: date(r.next_rotation_at),
    mac: r.mac as string | null,
    class: r.class as SecretRow['class'],
    strategy: r.strategy as SecretRow['strategy'],
    ownerTeam: r.owner_team as string | null,
    contact: r.contact as string | null,
  };
}

export type SecretQueries = ReturnType<typeof secretQueries>;
