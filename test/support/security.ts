import { spawn } from 'node:child_process';
import type pg from 'pg';
import { apiEntry } from './build.ts';

/** Helpers for the security suites: what a tenant's rows look like, and what must never appear in a response. */

/** Every tenant-owned table that a request could change, with the column that names the tenant (audit excluded). */
const TENANT_TABLES = [
  ['tenants', 'id'],
  ['identities', 'tenant_id'],
  ['tenant_keys', 'tenant_id'],
  ['secrets', 'tenant_id'],
  ['secret_versions', 'tenant_id'],
  ['rotation_schedule', 'tenant_id'],
  ['webhooks', 'tenant_id'],
  ['webhook_deliveries', 'tenant_id'],
  ['audit_retention', 'tenant_id'],
  ['sessions', 'tenant_id'],
  ['intake_links', 'tenant_id'],
  ['dynamic_backends', 'tenant_id'],
  ['leases', 'tenant_id'],
  ['deployments', 'tenant_id'],
  ['deployment_items', 'tenant_id'],
  ['deployment_receipts', 'tenant_id'],
] as const;

const DIGEST_SQL = TENANT_TABLES.map(
  ([table, column]) =>
    `select '${table}' as t, count(*)::int as n, md5(coalesce(string_agg(x::text, E'\\n' order by x::text), '')) as h
     from coffer.${table} x where x.${column} = $1`,
).join(' union all ');

/**
 * A digest of every row a tenant owns, table by table, read as the owner (so row-level security hides nothing).
 * Audit tables are left out on purpose: a refused request is supposed to add an audit event.
 */
export async function tenantRowsDigest(db: pg.Client | pg.Pool, tenantId: string): Promise<Record<string, string>> {
  const { rows } = await db.query<{ t: string; n: number; h: string }>(DIGEST_SQL, [tenantId]);
  return Object.fromEntries(rows.map((r) => [r.t, `${r.n}:${r.h}`]));
}

/**
 * Fragments of every ciphertext and wrapped key a tenant has, as hex, base64 and base64url: if a response carries
 * one of these, encrypted material left the server. Fragments skip the first bytes (packet headers are alike).
 */
export async function keyMaterialOf(db: pg.Client | pg.Pool, tenantId: string): Promise<string[]> {
  const { rows } = await db.query<{ b: Buffer }>(
    `select ciphertext as b from coffer.secret_versions where tenant_id = $1 and ciphertext is not null
     union all select wrapped_key from coffer.tenant_keys where tenant_id = $1
     union all select secret_wrapped from coffer.webhooks where tenant_id = $1
     union all select fingerprint_key_wrapped from coffer.tenants where id = $1 and fingerprint_key_wrapped is not null`,
    [tenantId],
  );
  const out: string[] = [];
  for (const { b } of rows) {
    if (b.length < 40) continue;
    const slice = b.subarray(9, 39);
    out.push(slice.toString('hex'), slice.toString('base64'), slice.toString('base64url'));
    // As a whole buffer would be encoded: base64 of bytes 9.. starts at character 12.
    out.push(
      b.toString('base64').slice(12, 52),
      b.toString('base64url').slice(12, 52),
      b.toString('hex').slice(18, 78),
    );
  }
  return out;
}

/** Anything shaped like a JWT (two base64url JSON objects and a signature part). */
export const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/;

/** The forbidden strings that occur in `text` (each at most once), for a readable failure message. */
export function leaksIn(text: string, forbidden: Iterable<string>): string[] {
  const found = new Set<string>();
  for (const f of forbidden) if (f.length >= 8 && text.includes(f)) found.add(f);
  return [...found];
}

export interface ExitedProcess {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built server (`apps/api/dist/main.js`) with exactly `env` (plus PATH) and waits for it to exit on its own:
 * for starts that must be refused. Killed (and reported as a timeout) if it is still running after `timeoutMs`.
 */
export function runServerToExit(env: Record<string, string>, timeoutMs = 20_000): Promise<ExitedProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [apiEntry], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not exit within ${timeoutMs} ms:\n${stderr}\n${stdout}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close', not 'exit': only then has everything the process wrote been read.
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
