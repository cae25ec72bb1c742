/**
 * Keys and secret values travel to PostgreSQL as bind parameters, so in production a plaintext connection to a
 * database across a network hands them to anyone on the path. A connection counts as protected when its URL asks
 * for TLS (`sslmode=require|verify-ca|verify-full`, node-postgres' `no-verify`, or `ssl=true`), or never leaves the
 * machine (loopback, a unix socket). Anything else is refused unless the operator says, with
 * `COFFER_DATABASE_ALLOW_PLAINTEXT=true`, that the network is trusted.
 */
const TLS_MODES = new Set(['require', 'verify-ca', 'verify-full', 'no-verify']);

function isLocal(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  // An empty host, or one that is a path, is a unix socket.
  if (h === '' || h.startsWith('/')) return true;
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function plaintextRemote(raw: string): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null; // malformed URLs are reported by the schema
  }
  const sslmode = url.searchParams.get('sslmode');
  const ssl = url.searchParams.get('ssl');
  if ((sslmode && TLS_MODES.has(sslmode)) || ssl === 'true' || ssl === '1') return null;
  const socketHost = url.searchParams.get('host');
  const host = socketHost ?? decodeURIComponent(url.hostname);
  return isLocal(host) ? null : host;
}

export function plaintextDatabaseProblems(o: {
  production: boolean;
  allowPlaintext: boolean;
  urls: Record<string, string | undefined>;
}): string[] {
  if (!o.production || o.allowPlaintext) return [];
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(o.urls)) {
    const host = raw ? plaintextRemote(raw) : null;
    if (host) {
      problems.push(
        `${name} connects to ${host} without TLS in production: add ?sslmode=verify-full (or require) to the URL, or set COFFER_DATABASE_ALLOW_PLAINTEXT=true if the network to the database is trusted`,
      );
    }
  }
  return problems;
}
