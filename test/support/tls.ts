import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';

/** Whether an `openssl` binary answers (the TLS tests make their certificate with it). */
export function opensslAvailable(): boolean {
  const r = spawnSync('openssl', ['version'], { stdio: 'ignore' });
  return r.status === 0;
}

export interface SelfSigned {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  /** SHA-256 fingerprint as node:crypto formats it (`AB:CD:…`). */
  fingerprint256: string;
}

/** A P-256 self-signed certificate for localhost and 127.0.0.1, valid for a day, made in `dir`. */
export function makeSelfSignedCert(dir: string): SelfSigned {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  const cert = readFileSync(certFile);
  return { certFile, keyFile, cert, fingerprint256: new X509Certificate(cert).fingerprint256 };
}

export interface PlainResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The certificate the server presented (HTTPS only). */
  peerFingerprint256?: string;
  protocol?: string | null;
}

/**
 * One request over node:https (or node:http for an `http:` URL) with its own connection, trusting only `ca` when
 * given. Rejects on a TLS or socket error.
 */
export function request(
  url: string,
  o: { method?: string; headers?: Record<string, string>; body?: unknown; ca?: Buffer } = {},
): Promise<PlainResponse> {
  const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
  const headers = { ...(payload ? { 'content-type': 'application/json' } : {}), ...o.headers };
  const isHttps = url.startsWith('https:');
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage) => {
      const socket = res.socket as TLSSocket;
      const peer = isHttps ? socket.getPeerCertificate() : undefined;
      const protocol = isHttps ? socket.getProtocol() : undefined;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          ...(peer ? { peerFingerprint256: peer.fingerprint256 } : {}),
          ...(protocol !== undefined ? { protocol } : {}),
        }),
      );
    };
    const req = isHttps
      ? https.request(
          url,
          { method: o.method ?? 'GET', headers, agent: false, ...(o.ca ? { ca: o.ca } : {}) },
          onResponse,
        )
      : http.request(url, { method: o.method ?? 'GET', headers, agent: false }, onResponse);
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}
