import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JwksSource } from '@coffer/contracts';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import {
  checkedLookup,
  checkWebhookUrl,
  RefusedTarget,
  type Resolve,
  systemResolve,
  type UrlPolicy,
} from '../webhooks/url-policy.ts';

export class JwksUnavailable extends Error {}

export interface JwksFetchOptions {
  urlPolicy: UrlPolicy;
  /** Largest discovery or JWKS document accepted. */
  maxBytes?: number;
  timeoutMs?: number;
  /** How long fetched keys are used before they are fetched again. */
  ttlMs?: number;
  /** A token naming an unknown `kid` refetches at most this often per issuer (rotation at the issuer just works). */
  refetchAfterMs?: number;
  /** Name resolution (tests play a DNS server with it). */
  resolve?: Resolve;
  now?: () => number;
}

type ResolvedOptions = Required<Omit<JwksFetchOptions, 'now'>>;

interface Entry {
  version: string;
  keys: JWTVerifyGetKey;
  fetchedAt: number;
}

/**
 * Reads a JSON document within a size and time bound. The connection resolves the host through the outbound address
 * policy itself (as webhook deliveries do), so the address that is checked is the address connected to: a name
 * that answers a public address to a check and loopback to the connection (DNS rebinding) is refused.
 */
async function fetchJson(url: string, o: ResolvedOptions, bearer?: string): Promise<unknown> {
  const origin = new URL(url).origin;
  const problem = await checkWebhookUrl(url, o.urlPolicy, o.resolve);
  if (problem) throw new JwksUnavailable(`${origin}: ${problem}`);
  const target = new URL(url);
  const request = target.protocol === 'https:' ? https.request : http.request;
  const body = await new Promise<Buffer>((resolve, reject) => {
    const req = request(target, {
      method: 'GET',
      headers: { accept: 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      lookup: checkedLookup(o.urlPolicy, o.resolve),
      agent: false,
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    req.on('error', (err) =>
      reject(new JwksUnavailable(`${origin}: ${err instanceof RefusedTarget ? err.problem : err.name}`)),
    );
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new JwksUnavailable(`${origin}: HTTP ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.byteLength;
        if (size > o.maxBytes) {
          res.destroy();
          reject(new JwksUnavailable(`${origin}: document larger than ${o.maxBytes} bytes`));
        } else chunks.push(chunk);
      });
      res.on('error', (err) => reject(new JwksUnavailable(`${origin}: ${err.name}`)));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    });
    req.end();
  });
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new JwksUnavailable(`${origin}: not JSON`);
  }
}

function asKeySet(doc: unknown, where: string): JSONWebKeySet {
  const keys = (doc as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new JwksUnavailable(`${where}: not a JWK set`);
  return { keys: keys.filter((k) => k && typeof k === 'object') as JSONWebKeySet['keys'] };
}

/**
 * The signing keys of each trusted issuer: inline keys as they are, fetched ones (discovery or a JWKS URI) cached
 * for `ttlMs` and fetched again early, at most once per `refetchAfterMs`, when a token names a key id the cache
 * does not hold. A failed fetch never lets a token through: the verification that needs the keys fails.
 */
export class JwksResolver {
  private readonly entries = new Map<string, Entry>();
  private readonly refetches = new Map<string, Promise<JWTVerifyGetKey>>();
  private readonly o: ResolvedOptions;
  private readonly now: () => number;

  constructor(options: JwksFetchOptions) {
    this.o = {
      urlPolicy: options.urlPolicy,
      maxBytes: options.maxBytes ?? 256 * 1024,
      timeoutMs: options.timeoutMs ?? 5_000,
      ttlMs: options.ttlMs ?? 10 * 60_000,
      refetchAfterMs: options.refetchAfterMs ?? 1_000,
      resolve: options.resolve ?? systemResolve,
    };
    this.now = options.now ?? Date.now;
  }

  /** Keys for an issuer row; `version` changes whenever the row does, so an edit is picked up at once. */
  async keys(issuer: { id: string; issuer: string; jwks: JwksSource; version: string }): Promise<JWTVerifyGetKey> {
    const cached = this.entries.get(issuer.id);
    if (cached && cached.version === issuer.version && this.now() - cached.fetchedAt < this.o.ttlMs) return cached.keys;
    return this.load(issuer);
  }

  /**
   * After an unknown `kid`: the keys fetched again (null for inline keys, which only an admin changes). Fetches of
   * one issuer are at least `refetchAfterMs` apart and shared by concurrent callers, so tokens naming made-up key
   * ids cannot turn Coffer into a fetch storm against the issuer; a caller waits at most that long.
   */
  async refetch(issuer: { id: string; issuer: string; jwks: JwksSource; version: string }) {
    if ('keys' in issuer.jwks) return null;
    const pending = this.refetches.get(issuer.id);
    if (pending) return pending;
    const cached = this.entries.get(issuer.id);
    const wait = cached ? cached.fetchedAt + this.o.refetchAfterMs - this.now() : 0;
    const next = (async () => {
      if (wait > 0) await sleep(wait);
      return this.load(issuer);
    })().finally(() => this.refetches.delete(issuer.id));
    this.refetches.set(issuer.id, next);
    return next;
  }

  forget(issuerId: string): void {
    this.entries.delete(issuerId);
  }

  private async load(issuer: { id: string; issuer: string; jwks: JwksSource; version: string }) {
    const set = await this.keySet(issuer);
    const entry = { version: issuer.version, keys: createLocalJWKSet(set), fetchedAt: this.now() };
    this.entries.set(issuer.id, entry);
    return entry.keys;
  }

  private async keySet(issuer: { issuer: string; jwks: JwksSource }): Promise<JSONWebKeySet> {
    const source = issuer.jwks;
    if ('keys' in source) return { keys: source.keys as JSONWebKeySet['keys'] };
    if ('uri' in source) {
      const bearer = source.bearerTokenFile
        ? (
            await readFile(source.bearerTokenFile, 'utf8').catch(() => {
              throw new JwksUnavailable('the JWKS bearer-token file cannot be read');
            })
          ).trim()
        : undefined;
      return asKeySet(await fetchJson(source.uri, this.o, bearer), new URL(source.uri).origin);
    }
    const discovery = `${issuer.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const doc = (await fetchJson(discovery, this.o)) as { issuer?: unknown; jwks_uri?: unknown };
    // OIDC discovery: the document must name the issuer it was fetched for.
    if (doc?.issuer !== issuer.issuer || typeof doc.jwks_uri !== 'string') {
      throw new JwksUnavailable(`${new URL(discovery).origin}: discovery document does not match the issuer`);
    }
    return asKeySet(await fetchJson(doc.jwks_uri, this.o), new URL(doc.jwks_uri).origin);
  }
}
