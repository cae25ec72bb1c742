import v8 from 'node:v8';
import vm from 'node:vm';
import { AuditEventView, type AuditPage } from '@coffer/contracts';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { auditRowsFor, auditRowsOf } from '../support/audit.ts';
import { appendEvents, ownerEvent, parseCsv } from '../support/ops.ts';
import { expectError, requestIdOf, sleep } from '../support/secrets.ts';
import { ownerSuite, tenantCtx } from '../support/suite.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

let t: TestApp;
let owner: pg.Client;
let root: string;

ownerSuite((s) => {
  ({ t, owner, root } = s);
});

const COLUMNS = [
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

/** What a spreadsheet should show in each cell of an event (formula-like text, also after a separator, gets a '). */
function expectedCells(v: AuditEventView): string[] {
  return COLUMNS.map((c) => {
    const x = v[c];
    if (x === null || x === undefined) return '';
    const s = (typeof x === 'object' ? JSON.stringify(x) : String(x)).replace(/([;,\t|])(?=[=+\-@\t\r])/g, "$1'");
    return /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  });
}

const ndjsonOf = (body: string) =>
  body
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => AuditEventView.parse(JSON.parse(l)));

describe('GET /v1/audit/export', () => {
  it('streams NDJSON and CSV, oldest first, escaping commas, quotes and line breaks', async () => {
    const { tid, api, ops } = await tenantCtx(t, root);
    const agent = 'Agent/1.0 (X11, Linux) "quoted", more';
    await api.send('PUT', '/v1/secrets/sandbox/app/KEY', { value: 'v' }, { 'user-agent': agent });
    await api.get('sandbox/app/KEY');
    // Text no request can carry (line breaks, leading formula characters), appended as the service would.
    await appendEvents(owner, tid, [
      ownerEvent(tid, {
        action: 'secrets.read',
        actorName: 'Smith, "Bob"\nJr.',
        resource: 'sandbox/odd/a,b"c\nd',
        userAgent: '=HYPERLINK("http://evil.example")',
        errorCode: '+1',
        sourceIp: '@home',
        fingerprint: '-x',
        details: { note: 'a,b "c"\r\nd', n: 3, flag: true, nil: null },
      }),
    ]);

    const page = (await ops.audit({ limit: 1000 })).json() as AuditPage;
    const nd = await ops.exportAudit({ format: 'ndjson' });
    expect(nd.statusCode).toBe(200);
    expect(nd.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    expect(nd.headers['content-disposition']).toBe('attachment; filename="coffer-audit.ndjson"');
    const lines = ndjsonOf(nd.body);
    // Oldest first, the whole chain: what the query showed (newest first), then the query's and export's own events.
    expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: lines.length }, (_, i) => i + 1));
    expect(lines.slice(0, page.items.length)).toEqual([...page.items].reverse());
    expect(lines.slice(page.items.length).map((l) => l.action)).toEqual(['audit.query', 'audit.export']);
    const odd = lines.find((l) => l.actorName === 'Smith, "Bob"\nJr.');
    expect(odd).toMatchObject({
      resource: 'sandbox/odd/a,b"c\nd',
      details: { note: 'a,b "c"\r\nd', n: 3, flag: true },
    });
    expect(lines.find((l) => l.userAgent === agent)?.action).toBe('secrets.write');
    expect(await auditRowsFor(owner, requestIdOf(nd))).toMatchObject([
      { action: 'audit.export', outcome: 'allowed', details: { format: 'ndjson' } },
    ]);

    const csv = await ops.exportAudit({ format: 'csv' });
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(csv.headers['content-disposition']).toBe('attachment; filename="coffer-audit.csv"');
    const rows = parseCsv(csv.body);
    expect(rows[0]).toEqual([...COLUMNS]);
    const data = rows.slice(1);
    // The CSV holds the NDJSON's events, then the NDJSON export's own event and its own.
    expect(data).toHaveLength(lines.length + 1);
    for (const [i, line] of lines.entries()) expect(data[i]).toEqual(expectedCells(line));
    expect(data.at(-1)?.[COLUMNS.indexOf('action')]).toBe('audit.export');
    const oddRow = data.find((r) => r[COLUMNS.indexOf('actorName')] === 'Smith, "Bob"\nJr.');
    expect(oddRow?.[COLUMNS.indexOf('resource')]).toBe('sandbox/odd/a,b"c\nd');
    expect(oddRow?.[COLUMNS.indexOf('userAgent')]).toBe(`'=HYPERLINK("http://evil.example")`);
    expect(oddRow?.[COLUMNS.indexOf('errorCode')]).toBe("'+1");
    expect(oddRow?.[COLUMNS.indexOf('sourceIp')]).toBe("'@home");
    expect(oddRow?.[COLUMNS.indexOf('fingerprint')]).toBe("'-x");
    expect(JSON.parse(oddRow?.[COLUMNS.indexOf('details')] ?? '')).toEqual({
      flag: true,
      n: 3,
      nil: null,
      note: 'a,b "c"\r\nd',
    });
    // Quoted as RFC 4180 says: the field in quotes, inner quotes doubled, the line break kept inside.
    expect(csv.body).toContain('"Smith, ""Bob""\nJr."');
    expect(csv.body).toContain(`"${agent.replaceAll('"', '""')}"`);
  });

  it("CSV injection: a user agent of x;=cmd|'/C calc'!A0;x exports quoted, with no cell that starts a formula under a ; , tab or | separator", async () => {
    const { api, ops } = await tenantCtx(t, root);
    const agents = ["x;=cmd|'/C calc'!A0;x", 'a,+1+1', 'b\t@SUM(A1)', 'c|-2+3', 'd;;=1', "=cmd|'/C calc'!A0"];
    for (const agent of agents)
      await api.send('GET', '/v1/secrets/sandbox/app/MISSING', undefined, { 'user-agent': agent });
    const csv = await ops.exportAudit({ format: 'csv' });
    expect(csv.statusCode).toBe(200);
    const lines = csv.body.split('\n').filter((l) => l !== '');
    // Every field quoted: each line is "…","…",…, header included.
    for (const line of lines) expect(line).toMatch(/^"(?:[^"]|"")*"(?:,"(?:[^"]|"")*")*$/);
    // However a spreadsheet splits the line, no piece starts a formula.
    for (const separator of [';', ',', '\t', '|']) {
      for (const line of lines) {
        for (const piece of line.split(separator)) {
          expect(piece.replace(/^[\s"]+/, ''), `${JSON.stringify(separator)} in ${line}`).not.toMatch(/^[=+\-@]/);
        }
      }
    }
    // The text is still all there, readable: the defusing ' is the only change.
    const agentsOut = parseCsv(csv.body)
      .slice(1)
      .map((r) => r[COLUMNS.indexOf('userAgent')]);
    expect(agentsOut).toContain("x;'=cmd|'/C calc'!A0;x");
    expect(agentsOut).toContain("'=cmd|'/C calc'!A0");
  });

  it('limits the export to a time range, and refuses an unknown format', async () => {
    const { tid, api, ops } = await tenantCtx(t, root);
    await api.put('sandbox/app/A', { value: 'a' });
    await sleep(5);
    const from = new Date().toISOString();
    await api.put('sandbox/app/B', { value: 'b' });
    await api.put('sandbox/app/C', { value: 'c' });
    await sleep(5);
    const to = new Date().toISOString();
    await api.put('sandbox/app/D', { value: 'd' });

    const expected = (await auditRowsOf(owner, tid))
      .filter((r) => r.occurred_at.getTime() >= Date.parse(from) && r.occurred_at.getTime() < Date.parse(to))
      .map((r) => Number(r.seq));
    const nd = ndjsonOf((await ops.exportAudit({ from, to })).body);
    expect(nd.map((l) => l.seq)).toEqual(expected);
    expect(nd.map((l) => l.resource)).toEqual(['sandbox/app/B', 'sandbox/app/C']);
    const csv = parseCsv((await ops.exportAudit({ format: 'csv', from, to })).body);
    expect(csv.slice(1).map((r) => r[COLUMNS.indexOf('resource')])).toEqual(['sandbox/app/B', 'sandbox/app/C']);

    // Nothing in range: an empty NDJSON body, a CSV with its header only.
    const past = { from: '2001-01-01T00:00:00Z', to: '2001-01-02T00:00:00Z' };
    expect((await ops.exportAudit(past)).body).toBe('');
    expect(parseCsv((await ops.exportAudit({ ...past, format: 'csv' })).body)).toEqual([[...COLUMNS]]);
    expectError(await ops.exportAudit({ format: 'xlsx' }), 400, 'validation_failed');
    expectError(await ops.exportAudit({ from: 'last week' }), 400, 'validation_failed');
  });

  it('streams 20 000 events over a socket without holding them in memory', async () => {
    const { tenant, tid } = await tenantCtx(t, root);
    const N = 20_000;
    const padding = 'x'.repeat(1200);
    const started = Date.now();
    await appendEvents(
      owner,
      tid,
      Array.from({ length: N }, (_, i) =>
        ownerEvent(tid, { action: 'secrets.read', resource: `sandbox/load/S_${i}`, details: { i, padding } }),
      ),
    );
    const appended = Date.now() - started;

    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const live = () => {
      gc();
      return process.memoryUsage().heapUsed;
    };

    const server = await createTestApp();
    try {
      const address = await server.app.listen({ port: 0, host: '127.0.0.1' });
      const baseline = live();
      const res = await fetch(`${address}/v1/audit/export?format=ndjson`, {
        headers: { authorization: `Bearer ${tenant.adminToken}` },
      });
      expect(res.status).toBe(200);
      // Streamed: sent in chunks, without a length known in advance.
      expect(res.headers.get('transfer-encoding')).toBe('chunked');
      expect(res.headers.get('content-length')).toBeNull();
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();

      // Read a little, then stop reading: backpressure must stop the server too, so almost nothing is held.
      const first = await reader.read();
      expect(first.done).toBe(false);
      await sleep(300);
      const paused = live() - baseline;

      let bytes = first.value?.byteLength ?? 0;
      let newlines = 0;
      let peak = paused;
      let nextSample = 4 * 1024 * 1024;
      const count = (chunk: Uint8Array) => {
        for (const b of chunk) if (b === 10) newlines++;
      };
      if (first.value) count(first.value);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        count(value);
        if (bytes >= nextSample) {
          peak = Math.max(peak, live() - baseline);
          nextSample += 4 * 1024 * 1024;
        }
      }
      // Every event (plus the tenant's own first events and the export's event) arrived.
      expect(newlines).toBeGreaterThanOrEqual(N + 1);
      expect(bytes).toBeGreaterThan(N * 1200);
      // Far less than the export's size stayed live at any time (holding it would take over 24 MB).
      expect(paused).toBeLessThan(12 * 2 ** 20);
      expect(peak).toBeLessThan(16 * 2 ** 20);
    } finally {
      await server.close();
    }
    expect(appended).toBeLessThan(15_000);
  });
});
