import type { Policy } from '@coffer/contracts';

/**
 * A claim by dotted path. Claim names may hold dots themselves (Kubernetes' `kubernetes.io`), so at each level the
 * longest name that exists wins: `kubernetes.io.namespace` is `claims["kubernetes.io"]["namespace"]`.
 */
export function claimAt(claims: unknown, path: string): unknown {
  const parts = path.split('.');
  let node: unknown = claims;
  let i = 0;
  while (i < parts.length) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    const obj = node as Record<string, unknown>;
    let found = false;
    for (let j = parts.length; j > i; j--) {
      const key = parts.slice(i, j).join('.');
      if (Object.hasOwn(obj, key)) {
        node = obj[key];
        i = j;
        found = true;
        break;
      }
    }
    if (!found) return undefined;
  }
  return node;
}

/** A claim's value as the text bindings and templates compare: strings and numbers; anything else has none. */
export function claimText(claims: unknown, path: string): string | undefined {
  const v = claimAt(claims, path);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

/**
 * A glob over one claim value: `*` any run of characters, `?` one, everything else literal. Iterative with one
 * backtrack point (the classic wildcard match), so its cost is linear in practice and bounded by
 * pattern × value, whatever the pattern: a hostile binding cannot stall the login path.
 */
export function globMatches(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === value[v])) {
      p++;
      v++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = v;
    } else if (star >= 0) {
      p = star + 1;
      v = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

const TEMPLATE = /\{\{claims\.([A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*)\}\}/g;
/** What a substituted claim may be: the characters of a path segment, so it can never act as a glob or a separator. */
const SAFE_VALUE = /^[A-Za-z0-9_.-]{1,128}$/;

/** The claim paths a set of policies is templated on (what a federated token must carry into its Coffer token). */
export function templatedClaims(policies: readonly Policy[]): string[] {
  const names = new Set<string>();
  for (const p of policies) {
    for (const m of p.path.matchAll(TEMPLATE)) names.add(m[1] as string);
    for (const e of p.environments ?? []) for (const m of e.matchAll(TEMPLATE)) names.add(m[1] as string);
  }
  return [...names];
}

/**
 * Policies with `{{claims.x}}` filled from the caller's verified claims. A claim value can never widen a match: a
 * value holding anything but the characters of a path segment (`/`, `*`, `?`, `**`, `..` on its own as a segment
 * cannot name an owner) makes the policy match nothing, as does a missing claim.
 */
export function expandPolicies(policies: readonly Policy[], claims: Readonly<Record<string, string>> | undefined) {
  const out: Policy[] = [];
  for (const policy of policies) {
    const envs = policy.environments;
    if (!policy.path.includes('{{') && !envs?.some((e) => e.includes('{{'))) {
      out.push(policy);
      continue;
    }
    let usable = true;
    const fill = (text: string) =>
      text.replace(TEMPLATE, (_m, name: string) => {
        const value = claims && Object.hasOwn(claims, name) ? claims[name] : undefined;
        if (value === undefined || !SAFE_VALUE.test(value) || value === '.' || value === '..') {
          usable = false;
          return '';
        }
        return value;
      });
    const path = fill(policy.path);
    if (!usable) continue;
    if (envs === undefined) {
      out.push({ ...policy, path });
      continue;
    }
    // An environment whose claim is missing or unsafe drops out alone: the policy still applies in the others.
    const environments: string[] = [];
    for (const e of envs) {
      usable = true;
      const filled = fill(e);
      if (usable) environments.push(filled);
    }
    if (environments.length > 0) out.push({ ...policy, path, environments });
  }
  return out;
}
