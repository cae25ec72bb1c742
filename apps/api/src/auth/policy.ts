import type { Capability, Policy } from '@coffer/contracts';

/**
 * Path policies for service identities. A policy path is a glob over `kind/owner/name`:
 *   `*` matches any characters within one segment (never `/`), `?` one character within a segment,
 *   `**` as a whole segment matches any number of segments (including none).
 * The most specific matching policy decides: segment by segment from the left, a literal beats a partial glob
 * (`STRIPE_*`), which beats `*`, which beats `**`; ties go to the policy with more literal characters. Policies
 * equally specific for a path grant the union of their capabilities. No matching policy: no access.
 */

interface Compiled {
  regex: RegExp;
  /** Compared lexicographically; larger is more specific. */
  rank: number[];
  capabilities: ReadonlySet<Capability>;
}

const cache = new Map<string, { regex: RegExp; rank: number[] }>();

function segmentRank(segment: string): number {
  if (segment === '**') return 0;
  if (segment === '*') return 1;
  if (/[*?]/.test(segment)) return 2;
  return 3;
}

function segmentRegex(segment: string): string {
  return segment
    .split('')
    .map((ch) => (ch === '*' ? '[^/]*' : ch === '?' ? '[^/]' : ch.replace(/[.+^${}()|[\]\\-]/g, '\\$&')))
    .join('');
}

function compileGlob(path: string): { regex: RegExp; rank: number[] } {
  const hit = cache.get(path);
  if (hit) return hit;
  const segments = path.split('/');
  let source = '';
  segments.forEach((segment, i) => {
    if (segment === '**') {
      if (segments.length === 1) source += '.*';
      else if (i === 0)
        source += '(?:[^/]+/)*'; // the next segment follows without a slash of its own
      else source += '(?:/[^/]+)*';
      return;
    }
    const slash = i > 0 && !(i === 1 && segments[0] === '**');
    source += (slash ? '/' : '') + segmentRegex(segment);
  });
  const compiled = {
    regex: new RegExp(`^${source}$`),
    rank: [...segments.map(segmentRank), ...[0, 0, 0].slice(segments.length), path.replace(/[*?]/g, '').length],
  };
  if (cache.size > 10_000) cache.clear();
  cache.set(path, compiled);
  return compiled;
}

function compareRank(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The capabilities the policies grant on one `kind/owner/name` path. */
export function capabilitiesFor(policies: readonly Policy[], resourcePath: string): ReadonlySet<Capability> {
  let best: Compiled[] = [];
  for (const p of policies) {
    const { regex, rank } = compileGlob(p.path);
    if (!regex.test(resourcePath)) continue;
    const c: Compiled = { regex, rank, capabilities: new Set(p.capabilities) };
    const cmp = best[0] ? compareRank(rank, best[0].rank) : 1;
    if (cmp > 0) best = [c];
    else if (cmp === 0) best.push(c);
  }
  const caps = new Set<Capability>();
  for (const b of best) for (const cap of b.capabilities) caps.add(cap);
  return caps;
}

export function policyAllows(policies: readonly Policy[], capability: Capability, resourcePath: string): boolean {
  return capabilitiesFor(policies, resourcePath).has(capability);
}
