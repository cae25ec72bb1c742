import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

/**
 * Webhook targets are URLs a tenant admin chooses, fetched by the server: without a policy that is a way to make
 * Coffer call its own network (SSRF). Unless private targets are allowed (development, tests), a target must be
 * or resolve only to global unicast addresses: not loopback, private, link-local, CGNAT, multicast, reserved or
 * unspecified. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d` in any spelling, the deprecated
 * IPv4-compatible `::a.b.c.d`, NAT64, 6to4, Teredo) are judged by the address they lead to, or refused. Checked
 * when a webhook is created and again, on the resolved addresses, before each delivery.
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

export async function checkWebhookUrl(raw: string, policy: UrlPolicy): Promise<string | null> {
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
  const addresses = ipaddr.isValid(host)
    ? [host]
    : (await lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
  if (addresses.length === 0) return 'the host does not resolve';
  if (addresses.some(isPrivateAddress)) return 'must not point at a private, loopback or link-local address';
  return null;
}
