import { type Capability, DEFAULT_ENVIRONMENT, type Policy } from '@coffer/contracts';

/**
 * Path policies for service identities. A policy path is a glob over `kind/owner/name`:
 *   `*` matches any characters within one segment (never `/`), `?` one character within a segment,
 *   `**` as a whole segment matches any number of segments (including none).
 * The most specific matching policy decides: segment by segment from the left, a literal beats a partial glob
 * (`STRIPE_*`), which beats `*`, which beats `**`; ties go to the policy with more literal characters. Policies
 * equally specific for a path grant the union of their capabilities. No matching policy: no access.
 *
 * Globs are written by tenant admins and matched on every request of every tenant, so matching must never
 * backtrack: a RegExp built from `*` backtracks exponentially on adversarial patterns and stalls the event loop
 * for everyone. The matcher below is a two-pointer wildcard match per segment (at most pattern × name steps)
 * inside a table over segments, so its cost is bounded by the sizes of its inputs whatever the pattern says.
 */

/** Counts the matcher's inner steps, so tests can bound its work without measuring time. */
export interface StepMeter {
  steps: number;
}

interface Compiled {
  segments: readonly string[];
  /** Compared lexicographically; larger is more specific. */
  rank: number[];
}

const cache = new Map<string, Compiled>();

function segmentRank(segment: string): number {
  if (segment === '**') return 0;
  if (segment === '*') return 1;
  if (segment.includes('*') || segment.includes('?')) return 2;
  return 3;
}

function compile(path: string): Compiled {
  const hit = cache.get(path);
  if (hit) return hit;
  const segments = path.split('/');
  const compiled: Compiled = {
    segments,
    rank: [...segments.map(segmentRank), ...[0, 0, 0].slice(segments.length), path.replace(/[*?]/g, '').length],
  };
  if (cache.size > 10_000) cache.clear();
  cache.set(path, compiled);
  return compiled;
}

/**
 * One segment against one glob segment (`*` any run, `?` one character). On a mismatch after a star, only the
 * latest star is retried one character further on: earlier stars never need revisiting, which is what keeps this
 * at most |glob| × |text| steps instead of exponential.
 */
export function matchSegment(glob: string, text: string, meter?: StepMeter): boolean {
  let g = 0;
  let t = 0;
  let star = -1;
  let resume = 0;
  while (t < text.length) {
    if (meter) meter.steps++;
    const gc = glob[g];
    if (gc === '*') {
      star = g++;
      resume = t;
    } else if (gc !== undefined && (gc === '?' || gc === text[t])) {
      g++;
      t++;
    } else if (star >= 0) {
      g = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (glob[g] === '*') {
    if (meter) meter.steps++;
    g++;
  }
  return g === glob.length;
}

/**
 * A whole glob against a `kind/owner/name` path. `**` spans whole segments; each (glob segment, path segment)
 * pair is decided at most once, so the segment table adds no more than a factor of the segment counts.
 */
export function matchGlob(glob: string, path: string, meter?: StepMeter): boolean {
  return matchSegments(compile(glob).segments, path.split('/'), meter);
}

function matchSegments(globs: readonly string[], parts: readonly string[], meter?: StepMeter): boolean {
  // reach[j]: the globs consumed so far can match exactly the first j path segments.
  let reach: boolean[] = parts.map(() => false);
  reach.push(false);
  reach[0] = true;
  for (const g of globs) {
    const next: boolean[] = reach.map(() => false);
    if (g === '**') {
      let any = false;
      for (let j = 0; j < reach.length; j++) {
        if (meter) meter.steps++;
        any = any || reach[j] === true;
        next[j] = any;
      }
    } else {
      for (let j = 0; j < parts.length; j++) {
        if (reach[j] && matchSegment(g, parts[j] ?? '', meter)) next[j + 1] = true;
      }
    }
    reach = next;
  }
  return reach[parts.length] === true;
}

function compareRank(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Whether a policy applies in an environment: its `environments` globs (one segment each), or only `default` when
 * it names none, so a policy written before environments existed keeps exactly the access it had.
 */
export function appliesIn(policy: Pick<Policy, 'environments'>, environment: string): boolean {
  const envs = policy.environments;
  if (envs === undefined) return environment === DEFAULT_ENVIRONMENT;
  return envs.some((g) => matchSegment(g, environment));
}

/** Whether any policy applies in the environment at all: if none does, the environment does not exist for it. */
export function seesEnvironment(policies: readonly Policy[], environment: string): boolean {
  return policies.some((p) => appliesIn(p, environment));
}

/**
 * The capabilities the policies grant on one `kind/owner/name` path in one environment. The environment filters
 * (a policy that does not apply there grants nothing); among those that apply, the most specific path decides.
 */
export function capabilitiesFor(
  policies: readonly Policy[],
  resourcePath: string,
  environment: string = DEFAULT_ENVIRONMENT,
): ReadonlySet<Capability> {
  // A request authorizes the same path two or three times, and a service reads the same few paths all day: the
  // answer is kept per policy set (the resolver hands out one frozen array per identity revision and claims).
  let memo = decided.get(policies);
  if (!memo) {
    memo = new Map();
    decided.set(policies, memo);
  }
  const key = `${environment}\n${resourcePath}`;
  const hit = memo.get(key);
  if (hit) return hit;
  const caps = computeCapabilities(policies, resourcePath, environment);
  if (memo.size >= DECISIONS_PER_POLICY_SET) memo.clear();
  memo.set(key, caps);
  return caps;
}

/** Decisions kept per policy set before it starts over: a bound on what a service scanning many paths can hold. */
const DECISIONS_PER_POLICY_SET = 1_000;
const decided = new WeakMap<readonly Policy[], Map<string, ReadonlySet<Capability>>>();

function computeCapabilities(
  policies: readonly Policy[],
  resourcePath: string,
  environment: string,
): ReadonlySet<Capability> {
  const parts = resourcePath.split('/');
  let best: { rank: number[]; capabilities: readonly Capability[] }[] = [];
  for (const p of policies) {
    if (!appliesIn(p, environment)) continue;
    const { segments, rank } = compile(p.path);
    if (!matchSegments(segments, parts)) continue;
    const c = { rank, capabilities: p.capabilities };
    const cmp = best[0] ? compareRank(rank, best[0].rank) : 1;
    if (cmp > 0) best = [c];
    else if (cmp === 0) best.push(c);
  }
  const caps = new Set<Capability>();
  for (const b of best) for (const cap of b.capabilities) caps.add(cap);
  return caps;
}

/**
 * Whether the policies grant `capability` on every `kind/owner/<name>` path in the environment, whatever the name:
 * some policy that applies there matches every such path, and every policy that applies there and could match one
 * grants the capability, so the most specific match for any name grants it too. A bundle read then needs no list
 * of names to filter. Conservative: false whenever that cannot be shown this simply (the caller filters by name).
 */
export function grantsOnEveryName(
  policies: readonly Policy[],
  capability: Capability,
  kind: string,
  owner: string,
  environment: string = DEFAULT_ENVIRONMENT,
): boolean {
  let universal = false;
  for (const p of policies) {
    if (!appliesIn(p, environment)) continue;
    const s = compile(p.path).segments;
    const couldMatch =
      s.includes('**') || (s.length === 3 && matchSegment(s[0] ?? '', kind) && matchSegment(s[1] ?? '', owner));
    if (!couldMatch) continue;
    if (!p.capabilities.includes(capability)) return false;
    if (matchesEveryName(s, kind, owner)) universal = true;
  }
  return universal;
}

/** `**`, `kind/**`, `kind/owner/*` and `kind/owner/**`, kind and owner as literals or single-segment globs. */
function matchesEveryName(s: readonly string[], kind: string, owner: string): boolean {
  const [a = '', b = '', c = ''] = s;
  if (s.length === 1) return a === '**';
  if (s.length === 2) return a !== '**' && matchSegment(a, kind) && b === '**';
  if (s.length === 3) {
    return a !== '**' && b !== '**' && matchSegment(a, kind) && matchSegment(b, owner) && (c === '*' || c === '**');
  }
  return false;
}

export function policyAllows(
  policies: readonly Policy[],
  capability: Capability,
  resourcePath: string,
  environment: string = DEFAULT_ENVIRONMENT,
): boolean {
  return capabilitiesFor(policies, resourcePath, environment).has(capability);
}
