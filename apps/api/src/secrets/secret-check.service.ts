import {
  CHECK_STATUSES,
  type CheckRequest,
  type CheckResponse,
  type CheckResult,
  type CheckStatus,
  type SecretFormat,
  type SecretKind,
} from '@coffer/contracts';
import { auditEvent } from '../audit/audit.events.ts';
import type { AuditSink } from '../audit/audit.sink.ts';
import { principalOf } from '../auth/principal.ts';
import type { TenantKeyCache } from '../crypto/tenant-key-cache.ts';
import type { Database } from '../db/database.ts';
import { pgErrorCode } from '../db/pg-errors.ts';
import type { RequestContext } from '../http/request-context.ts';
import { checkFormat } from './formats.ts';
import { allowed, checkRowMacs, integrityError, type SecretReadDeps, unbind } from './secret-reads.service.ts';
import type { CheckRow, SecretPath, SecretQueries } from './secrets.queries.ts';
import { invalidPattern } from './write-validation.ts';

export interface SecretCheckDeps {
  db: Pick<Database, 'withTenant'>;
  secrets: Pick<SecretQueries, 'checkRows' | 'matchPatterns'>;
  keys: Pick<TenantKeyCache, 'get' | 'invalidate'>;
  audit: Pick<AuditSink, 'record'>;
  macs: SecretReadDeps['macs'];
}

const DAY_MS = 86_400_000;

type Verdict = { status: CheckStatus; version: number | null; message: string };

/** A verdict still waiting on its custom pattern, which only PostgreSQL evaluates. */
type Pending = { index: number; value: string; pattern: string; version: number };

const keyOf = (p: { kind: string; owner: string; name: string }) => `${p.kind}/${p.owner}/${p.name}`;

function toPath(path: string, environment: string): SecretPath {
  // The contracts' path regex already guaranteed three parts with a valid kind.
  const [kind, owner, name] = path.split('/') as [SecretKind, string, string];
  return { environment, kind, owner, name };
}

/** What a secret's facts say before its format, in the order a deployment cares: gone first, then stale. */
function lifecycleVerdict(row: CheckRow, now: number): Verdict | null {
  const version = row.current_version;
  if (row.deleted_at) {
    return { status: 'deleted', version, message: `deleted at ${row.deleted_at.toISOString()}; it can be restored` };
  }
  if (row.expires_at && row.expires_at.getTime() <= now) {
    return { status: 'expired', version, message: `expired at ${row.expires_at.toISOString()}` };
  }
  if (row.destroyed) return { status: 'missing', version, message: `the current version ${version} was destroyed` };
  return null;
}

function ageVerdict(row: CheckRow, maxAgeDays: number | undefined, now: number): Verdict | null {
  const version = row.current_version;
  if (row.next_rotation_at && row.next_rotation_at.getTime() <= now) {
    return { status: 'overdue', version, message: `rotation was due at ${row.next_rotation_at.toISOString()}` };
  }
  if (maxAgeDays !== undefined && row.version_created_at) {
    const ageDays = (now - row.version_created_at.getTime()) / DAY_MS;
    if (ageDays > maxAgeDays) {
      return {
        status: 'overdue',
        version,
        message: `version ${version} is ${ageDays.toFixed(1)} days old (created ${row.version_created_at.toISOString()}); the manifest allows ${maxAgeDays}`,
      };
    }
  }
  return null;
}

/**
 * `POST /v1/check`: the CI gate's verdicts with only `list` on each path. Values are decrypted inside one statement,
 * checked here by the same rules as writes, and dropped: the response and the audit event carry statuses and counts.
 */
export function secretCheck(deps: SecretCheckDeps) {
  const { db, secrets, keys, audit } = deps;

  return {
    async check(ctx: RequestContext, environment: string, body: CheckRequest): Promise<CheckResponse> {
      const p = principalOf(ctx);
      const now = Date.now();
      const verdicts: (Verdict | undefined)[] = new Array(body.secrets.length);
      // Denied paths never reach the database, so nothing about them (not even existence) can leak out.
      const wanted: SecretPath[] = [];
      body.secrets.forEach((entry, i) => {
        const path = toPath(entry.path, environment);
        if (allowed(p, 'secrets.check', path)) wanted.push(path);
        else
          verdicts[i] = {
            status: 'denied',
            version: null,
            message: 'this identity has no list capability on the path',
          };
      });

      if (wanted.length > 0) {
        let keySet = await keys.get(p.tenantId);
        let rows: CheckRow[] = [];
        const pending: Pending[] = [];
        const byPath = new Map<string, CheckRow>();
        for (let attempt = 0; ; attempt++) {
          rows = await db.withTenant(p.tenantId, async (tx) => {
            try {
              return await secrets.checkRows(p.tenantId, environment, wanted, keySet.sqlKeys, tx);
            } catch (err) {
              if (pgErrorCode(err) === '39000') throw integrityError();
              throw err;
            }
          });
          // Another replica rotated the data key: reload the keys once, as reads do, then call it corrupt.
          const stale = rows.some((r) => r.plaintext === null && r.key_missing && !lifecycleVerdict(r, now));
          if (!stale) break;
          if (attempt > 0) throw integrityError();
          keys.invalidate(p.tenantId);
          keySet = await keys.get(p.tenantId);
        }
        for (const r of rows) byPath.set(keyOf(r), r);

        body.secrets.forEach((entry, i) => {
          if (verdicts[i]) return;
          const row = byPath.get(entry.path);
          if (!row) {
            verdicts[i] = { status: 'missing', version: null, message: 'no such secret' };
            return;
          }
          const gone = lifecycleVerdict(row, now);
          if (gone) {
            verdicts[i] = gone;
            return;
          }
          const version = row.current_version;
          // As a read does: the row MACs hold, and the binding line names this secret, version and path.
          const path = toPath(entry.path, environment);
          checkRowMacs(deps.macs, p.tenantId, path, row, { secretId: row.secret_id, currentVersion: version, version });
          const value = unbind(p.tenantId, row.secret_id, version, path, row.plaintext as string);
          const format = entry.format ?? (row.format as SecretFormat | null);
          const verdict = checkFormat(format, value);
          if (!verdict.ok) {
            verdicts[i] = { status: 'malformed', version, message: `the value does not satisfy ${verdict.rule}` };
          } else if (verdict.pattern !== undefined) {
            pending.push({ index: i, value, pattern: verdict.pattern, version });
          } else {
            verdicts[i] = ageVerdict(row, entry.maxAgeDays, now) ?? { status: 'ok', version, message: 'ok' };
          }
        });

        if (pending.length > 0) {
          const matches = await db.withTenant(p.tenantId, async (tx) => {
            try {
              return await secrets.matchPatterns(
                pending.map((x) => x.value),
                pending.map((x) => x.pattern),
                tx,
              );
            } catch (err) {
              if (pgErrorCode(err) === '2201B') throw invalidPattern('secrets.format.pattern');
              throw err;
            }
          });
          pending.forEach((x, j) => {
            const entry = body.secrets[x.index];
            const row = entry && byPath.get(entry.path);
            if (!entry || !row) return;
            verdicts[x.index] = matches[j]
              ? (ageVerdict(row, entry.maxAgeDays, now) ?? { status: 'ok', version: x.version, message: 'ok' })
              : { status: 'malformed', version: x.version, message: 'the value does not satisfy pattern' };
          });
        }
      }

      const counts = Object.fromEntries(CHECK_STATUSES.map((s) => [s, 0])) as Record<CheckStatus, number>;
      const results: CheckResult[] = body.secrets.map((entry, i) => {
        const v = verdicts[i] ?? { status: 'missing' as const, version: null, message: 'no such secret' };
        counts[v.status] += 1;
        const excused = !entry.required && (v.status === 'missing' || v.status === 'deleted');
        return {
          path: entry.path,
          status: v.status,
          required: entry.required,
          passed: v.status === 'ok' || excused,
          version: v.version,
          message: v.message,
        };
      });
      const ok = results.every((r) => r.passed);
      // One event per run, whatever it found: a gate that runs on every deploy must not flood the log with denials.
      await audit.record(
        auditEvent(ctx, {
          action: 'secrets.check',
          outcome: 'allowed',
          environment,
          details: { checked: results.length, passed: ok, ...counts },
        }),
      );
      return { ok, counts, results };
    },
  };
}

export type SecretCheck = ReturnType<typeof secretCheck>;
