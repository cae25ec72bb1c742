import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { statementName } from '../../apps/api/src/ops/tracing.ts';
import {
  loginOverHttp,
  type ScratchDatabase,
  type ServerProcess,
  scratchDatabase,
  startServerProcess,
} from '../support/server-process.ts';

/** An OTLP/HTTP receiver: what the server exported, as raw request bodies (JSON). */
interface Collector {
  url: string;
  bodies: string[];
  close(): Promise<void>;
}

async function collector(): Promise<Collector> {
  const bodies: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces') bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    bodies,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

function spansOf(bodies: string[]): OtlpSpan[] {
  return bodies.flatMap((b) => {
    const doc = JSON.parse(b) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
    return doc.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
  });
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v ? Object.values(v)[0] : undefined;
};

describe('OpenTelemetry tracing (COFFER_OTEL_TRACES_ENDPOINT)', () => {
  let otlp: Collector;
  let db: ScratchDatabase;
  let server: ServerProcess;
  let dataDir: string;
  const rootSecret = randomBytes(24).toString('base64url');
  const canary = `CANARY-${randomBytes(12).toString('hex')}`;
  const traceId = randomBytes(16).toString('hex');
  const callerSpanId = randomBytes(8).toString('hex');
  const tokens: string[] = [];

  beforeAll(async () => {
    otlp = await collector();
    db = await scratchDatabase();
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-otel-'));
    server = await startServerProcess({
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      DATABASE_URL: db.ownerUrl,
      DATABASE_APP_URL: db.appUrl,
      COFFER_MASTER_KEYS: inject('masterKeys'),
      COFFER_JWT_PRIVATE_KEY: inject('jwtPrivateKeyPem'),
      COFFER_DATA_DIR: dataDir,
      COFFER_BOOTSTRAP_SECRET: rootSecret,
      COFFER_SCHEDULER_ENABLED: 'false',
      COFFER_OTEL_TRACES_ENDPOINT: otlp.url,
      COFFER_OTEL_SERVICE_NAME: 'coffer-under-test',
    });

    const root = await loginOverHttp(server.url, 'root', rootSecret);
    const json = async (method: string, p: string, token: string, body?: unknown, headers = {}) => {
      const res = await fetch(`${server.url}${p}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const tenant = await json('POST', '/v1/tenants', root.token as string, { slug: 'otel', name: 'otel' });
    const admin = tenant.body.admin as { clientId: string; clientSecret: string };
    const adminToken = (await loginOverHttp(server.url, admin.clientId, admin.clientSecret)).token as string;
    tokens.push(root.token as string, adminToken, admin.clientSecret, rootSecret);
    expect((await json('PUT', '/v1/secrets/sandbox/sbx-1/API_KEY', adminToken, { value: canary })).status).toBe(201);
    const read = await json('GET', '/v1/secrets/sandbox/sbx-1/API_KEY', adminToken, undefined, {
      traceparent: `00-${traceId}-${callerSpanId}-01`,
    });
    expect(read.body.value).toBe(canary);
    // SIGTERM flushes the span buffer before the process exits.
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  afterAll(async () => {
    await server?.stop('SIGKILL').catch(() => undefined);
    await otlp?.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("continues the caller's trace: a server span named by the route, with the read's statements inside it", () => {
    const spans = spansOf(otlp.bodies);
    const request = spans.find((s) => s.traceId === traceId && s.kind === 2);
    expect(request?.name).toBe('GET /v1/secrets/:kind/:owner/:name');
    expect(request?.parentSpanId).toBe(callerSpanId);
    expect(attr(request as OtlpSpan, 'http.route')).toBe('/v1/secrets/:kind/:owner/:name');
    expect(Number(attr(request as OtlpSpan, 'http.response.status_code'))).toBe(200);

    const children = spans.filter((s) => s.traceId === traceId && s.parentSpanId === request?.spanId);
    const names = children.map((s) => s.name);
    expect(names).toContain('coffer_read_secret');
    for (const c of children) {
      expect(c.kind).toBe(3); // client
      expect(attr(c, 'db.system.name')).toBe('postgresql');
    }
  });

  it('traces every request of the run, the write with its one statement', () => {
    const spans = spansOf(otlp.bodies);
    const write = spans.find((s) => s.name === 'PUT /v1/secrets/:kind/:owner/:name');
    expect(write).toBeDefined();
    const inWrite = spans.filter((s) => s.traceId === write?.traceId && s.kind === 3).map((s) => s.name);
    // A write is one statement, coffer.write_secrets: its inserts and updates are inside it (the transaction
    // around it, if any, loads the tenant's data keys on its first write).
    expect(inWrite).toContain('coffer_write_secrets');
    expect(inWrite.filter((n) => /^(insert|update) /.test(n))).toEqual([]);
    expect(spans.some((s) => s.name === 'POST /v1/auth/token')).toBe(true);
  });

  it('never exports a value, a token, a secret or a concrete path', () => {
    const everything = otlp.bodies.join('\n');
    expect(everything).toContain('coffer-under-test');
    for (const needle of [canary, ...tokens, 'sbx-1', 'API_KEY']) expect(everything).not.toContain(needle);
  });
});

describe('statement names', () => {
  it('name a statement by its prepared name, or by verb and table or function, never by its text', () => {
    expect(statementName({ name: 'coffer_read_secret', text: 'select …' })).toBe('coffer_read_secret');
    expect(statementName("select set_config('app.tenant_id', $1, true)")).toBe('select set_config');
    expect(statementName('select name from coffer.bundle_names($1, $2, $3, $4)')).toBe('select bundle_names');
    expect(statementName('select "id" from "coffer"."secrets" where "name" = $1')).toBe('select secrets');
    expect(statementName('insert into "coffer"."secret_versions" ("v") values ($1)')).toBe('insert secret_versions');
    expect(statementName('select count(*)::int as n from coffer.replicas')).toBe('select replicas');
    expect(statementName('COMMIT')).toBe('commit');
  });
});
