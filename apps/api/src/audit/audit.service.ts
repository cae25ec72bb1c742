import { Readable } from 'node:stream';
import {
  type AuditEventView,
  type AuditPage,
  type AuditSummary,
  type AuditVerifyResult,
  DEFAULT_ENVIRONMENT,
} from '@coffer/contracts';
import { stringify } from 'csv-stringify/sync';
import { principalOf } from '../auth/principal.ts';
import { type MasterKeyring, MissingMasterKeyError } from '../crypto/keyring.ts';
import { CURSOR_KEY_PURPOSE, cursorCodec } from '../http/cursor.ts';
import type { RequestContext } from '../http/request-context.ts';
import { headMac, linkKeyPurpose } from './audit.digest.ts';
import { auditEvent } from './audit.events.ts';
import type { AuditFilter, AuditQueries, AuditRow, HeadRow } from './audit.queries.ts';
import type { AuditSink } from './audit.sink.ts';
import { CHECKPOINT_PURPOSE, checkpointMac, verifyChain } from './audit.verify.ts';
import type { AuditWitness } from './audit.witness.ts';

export interface AuditServiceDeps {
  queries: AuditQueries;
  audit: Pick<AuditSink, 'record'>;
  keyring: Pick<MasterKeyring, 'deriveFor' | 'derive'>;
  batchSize?: number;
  /** Checkpoints exported outside the database; verify reports a chain that is behind one. */
  witness?: Pick<AuditWitness, 'read'> | undefined;
  /** See Config.auditCheckpointMaxAgeMs; unset: no age requirement. */
  checkpointMaxAgeMs?: number;
}

export function toView(r: AuditRow): AuditEventView {
  return {
    id: r.id,
    seq: r.seq,
    occurredAt: r.occurredAt.toISOString(),
    actorId: r.actorId,
    actorName: r.actorName,
    action: r.action,
    resource: r.resource,
    version: r.version,
    outcome: r.outcome,
    errorCode: r.errorCode,
    requestId: r.requestId,
    sourceIp: r.sourceIp,
    userAgent: r.userAgent,
    fingerprint: r.fingerprint,
    details: r.details ?? null,
    prevHash: r.prevHash.toString('hex'),
    hash: r.hash.toString('hex'),
  };
}

export const CSV_COLUMNS = [
  'id',
  'seq',
  'occurredAt',
  'actorId',
  'actorName',
  'action',
  'resource',
  'version',
  'outcome',
  'errorCode',
  'requestId',
  'sourceIp',
  'userAgent',
  'fingerprint',
  'details',
  'prevHash',
  'hash',
] as const;

const FORMULA_START = /^[=+\-@\t\r]/;
const FORMULA_AFTER_SEPARATOR = /([;,\t|])(?=[=+\-@\t\r])/g;

/**
 * A spreadsheet must not run a cell as a formula (OWASP CSV injection). Text the caller chose (a user agent, a
 * resource) starting with = + - @ tab or CR gets a leading '. A spreadsheet set to another separator (`;` in much
 * of Europe, tab, `|`) splits a field where this file did not, so the same goes after each of those inside a
 * field: `x;=cmd|…` exports as `x;'=cmd|…`. NDJSON is the lossless export.
 */
export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = (typeof v === 'object' ? JSON.stringify(v) : String(v)).replace(FORMULA_AFTER_SEPARATOR, "$1'");
  return FORMULA_START.test(s) ? `'${s}` : s;
}

/** Every field quoted, so no reading of the file takes a cell's text for anything but text. */
const CSV_OPTIONS = { quoted: true, quoted_empty: true } as const;

export function csvLine(view: AuditEventView): string {
  return stringify([CSV_COLUMNS.map((c) => csvCell(view[c]))], CSV_OPTIONS);
}

/** The auditor's side of the log: query, export, verify and summarise one tenant's events. */
export function auditService(deps: AuditServiceDeps) {
  const { queries } = deps;
  const batchSize = deps.batchSize ?? 2_000;

  async function* rowsOf(tenantId: string, f: Pick<AuditFilter, 'from' | 'to'>, afterSeq: number, throughSeq?: number) {
    let after = afterSeq;
    for (;;) {
      const rows = await queries.batch(tenantId, f, after, batchSize, throughSeq);
      for (const r of rows) yield r;
      const last = rows.at(-1);
      if (!last || rows.length < batchSize) return;
      after = last.seq;
    }
  }

  async function* verifiableRowsOf(tenantId: string, afterSeq: number, throughSeq?: number) {
    let after = afterSeq;
    for (;;) {
      const rows = await queries.verifyBatch(tenantId, {}, after, batchSize, throughSeq);
      for (const r of rows) yield r;
      const last = rows.at(-1);
      if (!last || rows.length < batchSize) return;
      after = last.seq;
    }
  }

  function checkMac(tenantId: string) {
    return (c: { seq: number; hash: Buffer; mac: Buffer; masterKeyId: string }): boolean | undefined => {
      try {
        const key = deps.keyring.deriveFor(c.masterKeyId, CHECKPOINT_PURPOSE);
        return checkpointMac(key, tenantId, c.seq, c.hash).equals(c.mac);
      } catch (err) {
        if (err instanceof MissingMasterKeyError) return undefined;
        throw err;
      }
    };
  }

  const cursors = cursorCodec(deps.keyring.derive(CURSOR_KEY_PURPOSE));

  function linkKey(tenantId: string) {
    const keys = new Map<string, Buffer | undefined>();
    return (masterKeyId: string): Buffer | undefined => {
      if (keys.has(masterKeyId)) return keys.get(masterKeyId);
      let key: Buffer | undefined;
      try {
        key = deps.keyring.deriveFor(masterKeyId, linkKeyPurpose(tenantId));
      } catch (err) {
        if (!(err instanceof MissingMasterKeyError)) throw err;
      }
      keys.set(masterKeyId, key);
      return key;
    };
  }

  /** A head whose signature does not hold was set by hand (rewound, or moved onto other rows). */
  function badHead(tenantId: string, head: HeadRow | undefined): AuditVerifyResult | null {
    // Unsigned: a new chain, or a chain written before heads were signed, as migration 0015 left it (no keyed event
    // yet: seq = keyed_from - 1). Its first keyed append signs it; verify checks its unkeyed links meanwhile.
    if (!head || (head.mac === null && head.keyId === null && head.seq === head.keyedFrom - 1)) return null;
    const key = head.keyId ? linkKey(tenantId)(head.keyId) : undefined;
    if (head.keyId && !key) return null; // signed under a master key no longer held: events report that
    const ok =
      key !== undefined &&
      head.mac !== null &&
      head.signedAt !== null &&
      headMac(key, {
        tenantId,
        seq: head.seq,
        hash: head.hash,
        keyedFrom: head.keyedFrom,
        signedAt: head.signedAt,
      }).equals(head.mac);
    if (ok) return null;
    return {
      ok: false,
      checked: 0,
      checkpoints: 0,
      firstBrokenId: null,
      firstBrokenSeq: head.seq,
      reason: 'bad_head',
      message: `the chain head (seq ${head.seq}) does not match its signature: it was set outside Coffer`,
    };
  }

  return {
    async query(
      ctx: RequestContext,
      q: AuditFilter & { env?: string | undefined; limit: number; cursor?: string | undefined },
    ): Promise<AuditPage> {
      const p = principalOf(ctx);
      const tenantId = p.tenantId;
      const environment = q.env ?? DEFAULT_ENVIRONMENT;
      const scope = {
        route: 'audit.query',
        tenantId,
        identityId: p.identityId,
        filters: {
          actor: q.actor,
          action: q.action,
          path: q.path,
          outcome: q.outcome,
          from: q.from,
          to: q.to,
          ...(environment !== DEFAULT_ENVIRONMENT ? { env: environment } : {}),
        },
      };
      const before = cursors.openSeq(scope, q.cursor);
      const rows = await queries.page(tenantId, { ...q, environment }, before, q.limit + 1);
      const items = rows.slice(0, q.limit);
      const last = items.at(-1);
      await deps.audit.record(
        auditEvent(ctx, {
          action: 'audit.query',
          outcome: 'allowed',
          resource: 'audit',
          details: { count: items.length },
        }),
      );
      return {
        items: items.map(toView),
        nextCursor: rows.length > q.limit && last ? cursors.seal(scope, { s: last.seq }) : null,
      };
    },

    /** A stream, read from the database in batches as the client consumes it: memory stays flat whatever the size. */
    async export(
      ctx: RequestContext,
      q: { format: 'ndjson' | 'csv'; from?: string | undefined; to?: string | undefined },
    ): Promise<Readable> {
      const tenantId = principalOf(ctx).tenantId;
      await deps.audit.record(
        auditEvent(ctx, {
          action: 'audit.export',
          outcome: 'allowed',
          resource: 'audit',
          details: { format: q.format },
        }),
      );
      const rows = rowsOf(tenantId, q, 0);
      async function* lines() {
        if (q.format === 'csv') yield stringify([CSV_COLUMNS as unknown as string[]], CSV_OPTIONS);
        for await (const r of rows) {
          const view = toView(r);
          yield q.format === 'csv' ? csvLine(view) : `${JSON.stringify(view)}\n`;
        }
      }
      return Readable.from(lines(), { objectMode: false, highWaterMark: 64 * 1024 });
    },

    async verify(
      ctx: RequestContext,
      q: { from?: string | undefined; to?: string | undefined },
    ): Promise<AuditVerifyResult> {
      const tenantId = principalOf(ctx).tenantId;
      // Checked before this verify's own event is chained, which would otherwise sign a head set by hand afresh (the
      // append function refuses to, so recording fails; the answer is then the head, not a 503).
      const headBefore = badHead(tenantId, await queries.head(tenantId));
      try {
        await deps.audit.record(auditEvent(ctx, { action: 'audit.verify', outcome: 'allowed', resource: 'audit' }));
      } catch (err) {
        if (headBefore) return headBefore;
        throw err;
      }
      if (headBefore) return headBefore;
      const partial = q.from !== undefined || q.to !== undefined;
      let start: { seq: number; hash: Buffer } | null = null;
      let afterSeq = 0;
      let throughSeq: number | undefined;
      if (partial) {
        const range = await queries.seqRange(tenantId, q);
        if (range.first === null || range.last === null) return { ok: true, checked: 0, checkpoints: 0 };
        afterSeq = range.first - 1;
        throughSeq = range.last;
        // Link the range to what precedes it: the previous event, a retention checkpoint, or the genesis.
        if (range.first > 1) {
          const before = await queries.bySeq(tenantId, range.first - 1);
          if (before) start = { seq: before.seq, hash: before.hash };
        }
      }
      const checkpoints = await queries.checkpoints(tenantId);
      const head = await queries.head(tenantId);
      if (!partial) {
        const bad = badHead(tenantId, head);
        if (bad) return bad;
      }
      const checkWitness = checkMac(tenantId);
      const witnessed =
        partial || !deps.witness ? [] : (await deps.witness.read(tenantId)).filter((w) => checkWitness(w) === true);
      const createdAt =
        partial || deps.checkpointMaxAgeMs === undefined ? undefined : await queries.tenantCreatedAt(tenantId);
      return verifyChain({
        tenantId,
        rows: verifiableRowsOf(tenantId, afterSeq, throughSeq),
        start,
        checkpoints: partial
          ? // From afterSeq: when retention removed the event before the range, its checkpoint is the anchor.
            checkpoints.filter((c) => c.seq >= afterSeq && c.seq <= (throughSeq ?? c.seq))
          : checkpoints,
        checkMac: checkMac(tenantId),
        linkKey: linkKey(tenantId),
        keyedFrom: head?.keyedFrom ?? 1,
        head: partial ? null : (head ?? { seq: 0, hash: Buffer.alloc(32) }),
        seqOfHash: (hash) => queries.seqOfHash(tenantId, hash),
        witnessed,
        freshness:
          createdAt && deps.checkpointMaxAgeMs !== undefined
            ? { tenantCreatedAt: createdAt, maxAgeMs: deps.checkpointMaxAgeMs, now: new Date() }
            : null,
      });
    },

    async summary(
      ctx: RequestContext,
      q: { from?: string | undefined; to?: string | undefined },
    ): Promise<AuditSummary> {
      const tenantId = principalOf(ctx).tenantId;
      const s = await queries.summary(tenantId, q);
      await deps.audit.record(auditEvent(ctx, { action: 'audit.summary', outcome: 'allowed', resource: 'audit' }));
      const readsBy = new Map<string, AuditSummary['secretsReadBy'][number]>();
      for (const r of s.reads) {
        const key = r.actor_id ?? '';
        let entry = readsBy.get(key);
        if (!entry) {
          entry = { actorId: r.actor_id, actorName: r.actor_name, secrets: [] };
          readsBy.set(key, entry);
        }
        entry.secrets.push({ path: r.path, reads: Number(r.n) });
      }
      const byOutcome = Object.fromEntries(s.byOutcome.map((r) => [r.k, Number(r.n)]));
      return {
        from: q.from ?? null,
        to: q.to ?? null,
        total: Object.values(byOutcome).reduce((a, b) => a + b, 0),
        byAction: Object.fromEntries(s.byAction.map((r) => [r.k, Number(r.n)])),
        byOutcome,
        byActor: s.byActor.map((r) => ({
          actorId: r.actor_id,
          actorName: r.actor_name,
          total: Number(r.n),
          denied: Number(r.denied),
        })),
        secretsReadBy: [...readsBy.values()],
      };
    },
  };
}

export type AuditService = ReturnType<typeof auditService>;
