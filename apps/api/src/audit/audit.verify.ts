import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AuditVerifyResult } from '@coffer/contracts';
import { canonicalDigest, eventDigest, GENESIS_HASH, keyedLink, linkHash } from './audit.digest.ts';
import { type CheckpointRow, toAuditEvent, type VerifiableRow } from './audit.queries.ts';

export const CHECKPOINT_PURPOSE = 'coffer/audit-checkpoint/v1';

/** What a checkpoint signs: tenant, position and hash of the chain at that position. */
export function checkpointMac(key: Buffer, tenantId: string, seq: number, hash: Buffer): Buffer {
  return createHmac('sha256', key)
    .update(`${tenantId}:${seq}:${hash.toString('hex')}`)
    .digest();
}

export interface VerifyInput {
  tenantId: string;
  /** Events in seq order (batched by the caller). */
  rows: AsyncIterable<VerifiableRow>;
  /** The tenant's link key under a master key id; undefined when that master key is not in the keyring. */
  linkKey: (masterKeyId: string) => Buffer | undefined;
  /** Events from this seq on must have keyed links (the head's keyed_from): an unkeyed one was not made by Coffer. */
  keyedFrom: number;
  /** Hash and seq the first row must link to; null: find it from the rows and checkpoints. */
  start: { seq: number; hash: Buffer } | null;
  checkpoints: CheckpointRow[];
  /** Checks a checkpoint's signature; undefined when its master key is no longer in the keyring. */
  checkMac: (c: CheckpointRow) => boolean | undefined;
  /** The chain head, when verifying to the end (a tail removed or added is found against it). */
  head: { seq: number; hash: Buffer } | null;
  seqOfHash: (hash: Buffer) => Promise<number | null>;
  /** Checkpoints exported to the witness (signatures already checked): the chain must not be behind any of them. */
  witnessed?: { seq: number; hash: Buffer }[];
  /**
   * For a full verify: a tenant older than `maxAgeMs` must have a checkpoint covering every event older than that,
   * so that history cannot quietly go missing behind the last checkpoint.
   */
  freshness?: { tenantCreatedAt: Date; maxAgeMs: number; now: Date } | null;
}

type Broken = Pick<AuditVerifyResult, 'firstBrokenId' | 'firstBrokenSeq' | 'reason' | 'message'>;

/**
 * Walks a tenant's chain and names the first broken link:
 * - `edited`: an event's content no longer matches its digest, or its hash is not its keyed link (changed, or written
 *   by someone without the tenant's link key: every direct insert, the owner's included);
 * - `unverifiable_event`: an event's link was keyed under a master key no longer in the keyring;
 * - `deleted`: a seq is missing, or an event links to a predecessor that is gone;
 * - `inserted`: an event not in the original chain (its successor links past it, or it lies beyond the head);
 * - `reordered`: an event links to a predecessor that now sits later in the chain;
 * - `truncated`: events at the end are gone (the head or a checkpoint is ahead of the last event);
 * - `checkpoint_mismatch` / `bad_checkpoint` / `unverifiable_checkpoint`: a signed checkpoint disagrees with the
 *   chain, carries a bad signature, or was signed by a master key no longer in the keyring;
 * - `rolled_back`: the chain is behind, or differs from, a checkpoint exported to the witness;
 * - `stale_checkpoint`: no checkpoint covers events older than the configured age (checkpoints were removed).
 */
export async function verifyChain(input: VerifyInput): Promise<AuditVerifyResult> {
  const checkpoints = new Map(input.checkpoints.map((c) => [c.seq, c]));
  let checkedCheckpoints = 0;
  for (const c of input.checkpoints) {
    const ok = input.checkMac(c);
    if (ok === undefined) {
      return fail(0, 0, {
        firstBrokenSeq: c.seq,
        reason: 'unverifiable_checkpoint',
        message: `checkpoint at seq ${c.seq} was signed by master key ${c.masterKeyId}, which is not in the keyring`,
      });
    }
    if (!ok)
      return fail(0, 0, {
        firstBrokenSeq: c.seq,
        reason: 'bad_checkpoint',
        message: `the signature of the checkpoint at seq ${c.seq} is wrong`,
      });
  }

  const witnessed = new Map((input.witnessed ?? []).map((w) => [w.seq, w.hash]));
  const lastCheckpointSeq = input.checkpoints.at(-1)?.seq ?? 0;
  let firstUncovered: Date | null = null;
  let prev = input.start;
  let checked = 0;
  let previousRow: VerifiableRow | null = null;
  for await (const row of input.rows) {
    const at = (reason: NonNullable<Broken['reason']>, message: string, r: VerifiableRow = row): AuditVerifyResult =>
      fail(checked, checkedCheckpoints, { firstBrokenId: r.id, firstBrokenSeq: r.seq, reason, message });

    if (input.head && row.seq > input.head.seq)
      return at('inserted', `event seq ${row.seq} lies beyond the chain head (${input.head.seq})`);
    if (prev === null) {
      // First event of a full verify: the genesis, or a checkpoint left where retention cut the chain.
      const anchor = row.seq === 1 ? { seq: 0, hash: GENESIS_HASH } : checkpoints.get(row.seq - 1);
      if (!anchor) return at('deleted', `events before seq ${row.seq} are missing and no checkpoint covers them`);
      prev = { seq: anchor.seq, hash: anchor.hash };
    }
    let key: Buffer | undefined;
    if (row.linkKeyId === null) {
      if (row.seq >= input.keyedFrom)
        return at('edited', `event seq ${row.seq} has no keyed link: it was not written by Coffer`);
    } else {
      // Every event from keyed_from on is keyed and none before it: keyed_from only moves in migration 0015. A keyed
      // event below it means keyed_from was raised by hand, to pass unkeyed events above the keyed ones.
      if (row.seq < input.keyedFrom)
        return at('edited', `event seq ${row.seq} is keyed but lies below keyed_from: the chain head was altered`);
      key = input.linkKey(row.linkKeyId);
      // Linked under a master key since retired: a checkpoint re-signed under a key still held, at or after this
      // event, still pins its place in the chain (not its content: see docs/audit-trust.md).
      if (!key && !(lastCheckpointSeq >= row.seq))
        return at(
          'unverifiable_event',
          `event seq ${row.seq} was linked under master key ${row.linkKeyId}, which is not in the keyring`,
        );
    }
    const keyed = row.linkKeyId !== null;
    const digest = keyed ? canonicalDigest(row.canonical) : eventDigest(toAuditEvent(row));
    if (!digest.equals(row.digest)) return at('edited', `event seq ${row.seq} was changed after it was written`);
    if (row.seq !== prev.seq + 1)
      return at(
        'deleted',
        `seq ${prev.seq + 1}${row.seq > prev.seq + 2 ? `..${row.seq - 1}` : ''} missing before event seq ${row.seq}`,
      );
    if (!row.prevHash.equals(prev.hash)) {
      const where = await input.seqOfHash(row.prevHash);
      if (where !== null && where > row.seq)
        return at('reordered', `event seq ${row.seq} follows an event that now sits at seq ${where}`);
      if (where !== null && where < row.seq - 1 && previousRow) {
        return at(
          'inserted',
          `event seq ${previousRow.seq} is not part of the chain: seq ${row.seq} links past it`,
          previousRow,
        );
      }
      return at('deleted', `event seq ${row.seq} links to a predecessor that is no longer in the chain`);
    }
    const link = key
      ? keyedLink(key, row.prevHash, row.seq, row.digest)
      : keyed
        ? row.hash
        : linkHash(row.prevHash, row.seq, row.digest);
    if (!safeEqual(link, row.hash))
      return at(
        'edited',
        `the hash of event seq ${row.seq} is not its link under the tenant's key: it was changed or written outside Coffer`,
      );
    const w = witnessed.get(row.seq);
    if (w && !safeEqual(w, row.hash))
      return at(
        'rolled_back',
        `the chain at seq ${row.seq} differs from the checkpoint exported to the witness: it was rolled back or rewritten`,
      );
    if (firstUncovered === null && row.seq > lastCheckpointSeq) firstUncovered = row.occurredAt;
    const cp = checkpoints.get(row.seq);
    if (cp) {
      checkedCheckpoints++;
      if (!cp.hash.equals(row.hash))
        return at(
          'checkpoint_mismatch',
          `the chain at seq ${row.seq} differs from its signed checkpoint: history was rewritten`,
        );
    }
    prev = { seq: row.seq, hash: row.hash };
    previousRow = row;
    checked++;
  }

  const endSeq = prev?.seq ?? 0;
  const maxWitnessed = Math.max(0, ...witnessed.keys());
  if (maxWitnessed > endSeq) {
    return fail(checked, checkedCheckpoints, {
      firstBrokenSeq: endSeq + 1,
      reason: 'rolled_back',
      message: `the witness holds a checkpoint at seq ${maxWitnessed}, but the chain ends at seq ${endSeq}: the database was rolled back or its tail removed`,
    });
  }
  const f = input.freshness;
  if (f && f.now.getTime() - f.tenantCreatedAt.getTime() > f.maxAgeMs) {
    const limit = f.now.getTime() - f.maxAgeMs;
    if (input.checkpoints.length === 0 || (firstUncovered && firstUncovered.getTime() < limit)) {
      return fail(checked, checkedCheckpoints, {
        firstBrokenSeq: lastCheckpointSeq + 1,
        reason: 'stale_checkpoint',
        message:
          input.checkpoints.length === 0
            ? 'the tenant has no signed checkpoint: its history cannot be vouched for (checkpoints removed?)'
            : `events after seq ${lastCheckpointSeq} are older than the checkpoint age allows and no checkpoint covers them`,
      });
    }
  }

  if (input.head) {
    const lastSeq = endSeq;
    const lastCheckpoint = input.checkpoints.at(-1);
    if (input.head.seq > lastSeq || (lastCheckpoint && lastCheckpoint.seq > lastSeq)) {
      return fail(checked, checkedCheckpoints, {
        firstBrokenSeq: lastSeq + 1,
        reason: 'truncated',
        message: `events after seq ${lastSeq} are missing (head at ${input.head.seq})`,
      });
    }
    if (prev && !safeEqual(prev.hash, input.head.hash)) {
      return fail(checked, checkedCheckpoints, {
        firstBrokenId: previousRow?.id ?? null,
        firstBrokenSeq: prev.seq,
        reason: 'edited',
        message: 'the last event does not match the chain head',
      });
    }
  }
  return { ok: true, checked, checkpoints: checkedCheckpoints };
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function fail(checked: number, checkpoints: number, b: Broken): AuditVerifyResult {
  return {
    ok: false,
    checked,
    checkpoints,
    firstBrokenId: b.firstBrokenId ?? null,
    firstBrokenSeq: b.firstBrokenSeq ?? null,
    reason: b.reason,
    message: b.message,
  };
}
