import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwksResolver, JwksUnavailable } from '../../apps/api/src/trust/jwks.ts';
import type { Resolve } from '../../apps/api/src/webhooks/url-policy.ts';
import { signingKey } from '../support/issuers.ts';

let server: http.Server;
let port: number;
let hits = 0;
let body = '';
beforeAll(async () => {
  const key = await signingKey();
  body = JSON.stringify({ keys: [key.publicJwk] });
  server = http.createServer((req, res) => {
    hits++;
    res.setHeader('content-type', 'application/json');
    res.end(req.url === '/huge' ? `{"keys":[],"pad":"${'x'.repeat(300 * 1024)}"}` : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const issuer = (uri: string) => ({
  id: `i-${Math.random()}`,
  issuer: 'https://x.example',
  jwks: { uri },
  version: '1',
});

describe('fetching an issuer’s keys', () => {
  it('DNS rebinding: a JWKS host that answers a public address to the check, then 127.0.0.1, is never fetched', async () => {
    let queries = 0;
    const rebinding: Resolve = async () => [
      queries++ === 0 ? { address: '93.184.216.34', family: 4 } : { address: '127.0.0.1', family: 4 },
    ];
    const jwks = new JwksResolver({ urlPolicy: { allowPrivate: false, allowHttp: true }, resolve: rebinding });
    const before = hits;
    await expect(jwks.keys(issuer(`http://jwks.rebind.example:${port}/keys`))).rejects.toBeInstanceOf(JwksUnavailable);
    expect(queries).toBeGreaterThanOrEqual(2);
    expect(hits).toBe(before);
  });

  it('refuses a document over the size bound, and fetches a good one under the same resolver', async () => {
    const local: Resolve = async () => [{ address: '127.0.0.1', family: 4 }];
    const jwks = new JwksResolver({ urlPolicy: { allowPrivate: true, allowHttp: true }, resolve: local });
    await expect(jwks.keys(issuer(`http://jwks.local.example:${port}/huge`))).rejects.toThrow(/larger than/);
    await expect(jwks.keys(issuer(`http://jwks.local.example:${port}/keys`))).resolves.toBeTypeOf('function');
  });
});
