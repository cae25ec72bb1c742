import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Webhook targets are URLs a tenant admin chooses, fetched by the server: without a policy that is a way to make
 * Coffer call its own network (SSRF). Unless private targets are allowed (development, tests), a target must be
 * or resolve only to global unicast addresses: not loopback, private, link-local, CGNAT, multicast, reserved or
 * unspecified. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d` in any spelling, the deprecated
 * IPv4-compatible `::a.b.c.d`, NAT64, 6to4, Teredo) are judged by the address they lead to, or refused. Checked
 * when a webhook is created, again before each delivery, and on the very address each delivery connects to.
 */
export function isPrivateAddress(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return true;
  // IPv4-mapped IPv6 becomes the IPv4 address it names.
  const addr = ipaddr.process(ip);
  if (addr.kind() === 'ipv6') {
    const parts = (addr as ipaddr.IPv6).parts;
    // ::/96, IPv4-compatible (deprecated): whatever it embeds, nothing public needs it.
    if (parts.slice(0, 6).every((p) => p === 0)) return true;
  }
  // 'unicast' is what remains once every special range (private, loopback, linkLocal, uniqueLocal, carrierGradeNat,
  // multicast, reserved, rfc6052 (NAT64), 6to4, teredo, ...) has been ruled out.
  return addr.range() !== 'unicast';
}

export interface UrlPolicy {
  allowPrivate: boolean;
  allowHttp: boolean;
}

/** Name resolution, injectable so tests can play a DNS server that answers differently on each query. */
export type Resolve = (host: string) => Promise<readonly LookupAddress[]>;
export const systemResolve: Resolve = (host) => lookup(host, { all: true });

const PRIVATE_TARGET = 'must not point at a private, loopback or link-local address';

export async function checkWebhookUrl(
  raw: string,
  policy: UrlPolicy,
  resolve: Resolve = systemResolve,
): Promise<string | null> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.username || url.password) return 'must not carry credentials';
  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) return 'must use https';
  if (policy.allowPrivate) return null;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return 'must not point at this machine';
  const addresses = ipaddr.isValid(host) ? [host] : (await resolve(host).catch(() => [])).map((a) => a.address);
  if (addresses.length === 0) return 'the host does not resolve';
  if (addresses.some(isPrivateAddress)) return PRIVATE_TARGET;
  return null;
}

/** Raised by {@link checkedLookup} when the name's answer is one the policy forbids. */
export class RefusedTarget extends Error {
  readonly problem = PRIVATE_TARGET;
  constructor(host: string) {
    super(`refused: ${host} ${PRIVATE_TARGET}`);
  }
}

/**
 * The lookup of every delivery connection, retries included. Checking a URL and then letting the HTTP client
 * resolve the name again is a DNS-rebinding hole: the name may answer a public address to the check and loopback
 * to the connection. Here the answer that is checked is the answer the socket connects to, each time it connects.
 */
export function checkedLookup(policy: UrlPolicy, resolve: Resolve): LookupFunction {
  return (host, options, callback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : (options.family ?? 0);
    resolve(host).then(
      (all) => {
        const answers = family === 0 ? [...all] : all.filter((a) => a.family === family);
        const first = answers[0];
        if (!first) {
          callback(Object.assign(new Error(`${host} does not resolve`), { code: 'ENOTFOUND' }), '', 4);
        } else if (!policy.allowPrivate && answers.some((a) => isPrivateAddress(a.address))) {
          callback(new RefusedTarget(host), '', 4);
        } else if (options.all) {
          callback(null, answers);
        } else {
          callback(null, first.address, first.family);
        }
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 4),
    );
  };
}
