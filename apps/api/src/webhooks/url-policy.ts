import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/**
 * Webhook targets are URLs a tenant admin chooses, fetched by the server: without a policy that is a way to make
 * Coffer call its own network (SSRF). Unless private targets are allowed (development, tests), a target must not be
 * or resolve to a loopback, private, link-local, CGNAT or unspecified address. Checked when a webhook is created
 * and again, on the resolved addresses, before each delivery.
 */
export function isPrivateAddress(ip: string): boolean {
  const v = isIP(ip);
  if (v === 4) {
    const [a = 0, b = 0] = ip.split('.').map(Number);
    return (
      a === 10 ||
      a === 127 ||
      a === 0 ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b <= 127) ||
      a >= 224
    );
  }
  if (v === 6) {
    const x = ip.toLowerCase();
    if (x === '::1' || x === '::') return true;
    if (x.startsWith('::ffff:')) return isPrivateAddress(x.slice(7));
    return /^(fc|fd|fe8|fe9|fea|feb|ff)/.test(x);
  }
  return false;
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
  const addresses = isIP(host) ? [host] : (await lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
  if (addresses.length === 0) return 'the host does not resolve';
  if (addresses.some(isPrivateAddress)) return 'must not point at a private, loopback or link-local address';
  return null;
}
