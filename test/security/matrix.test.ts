import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  AuditPage,
  AuditRetention,
  AuditSummary,
  AuditVerifyResult,
  Bundle,
  buildPath,
  type Capability,
  CheckResponse,
  CreatedDeployment,
  type CreateIdentityResponse,
  CreateIntakeResponse,
  Deployment,
  DeploymentPage,
  DeploymentPlan,
  EnvironmentDiff,
  EnvironmentList,
  ErrorEnvelope,
  IdentityPage,
  IntakeList,
  IntakeView,
  InventoryPage,
  JwkSet,
  Lease,
  LeaseCredentials,
  LeasePage,
  PLATFORM_TENANT_ID,
  PlatformAdminList,
  PostgresBackend,
  PostgresBackendList,
  RevokeLeasesResult,
  RotationDue,
  RotationLog,
  RotationStatus,
  type RouteDef,
  type RouteInput,
  type RouteName,
  type Routes,
  routes,
  SecretConsumers,
  SecretMetadata,
  SecretPage,
  SecretWithValue,
  SessionList,
  Tenant,
  TokenResponse,
  TrustedIssuerList,
  WebhookList,
  WhoAmI,
} from '@coffer/contracts';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bearer, createIdentity, createTenant, rootToken, uniqueSlug } from '../support/factories.ts';
import { craftJwt, decodeJwt, ed25519Signer, nowSeconds } from '../support/jwt.ts';
import { identityIdOf, ownerClient, type Response, spath } from '../support/secrets.ts';
import { JWT_SHAPE, keyMaterialOf, leaksIn, tenantRowsDigest } from '../support/security.ts';
import { openSession, refreshBody, type TestSession } from '../support/sessions.ts';
import { READ_ITEMS, type TargetCorner, targetCorner } from '../support/target-db.ts';
import { createTestApp, type TestApp } from '../support/test-app.ts';

/**
 * The access-control matrix: every route of the contracts' route table × eight kinds of caller. The fixture table
 * is keyed by RouteName, so a route added to the contracts does not compile until it has a fixture and an expected
 * outcome for each caller here.
 *
 * Tenant A holds one of everything (secrets, identities, a webhook). The callers are: nobody, a garbage token, an
 * expired token, tenant B's admin, two services of A (one whose policies cover nothing A has, one with every
 * capability on A's sandbox), A's auditor and the platform admin. After every request: the status and error code,
 * audit rows in the right chain only, A's rows unchanged unless the caller was allowed to change them, and no secret
 * value, ciphertext, wrapped key, client secret or token in the body.
 */

const CALLERS = [
  'no token',
  'garbage token',
  'expired token',
  "other tenant's admin",
  'service without capability',
  'service with capability',
  'auditor',
  'platform admin',
] as const;
type Caller = (typeof CALLERS)[number];
type TokenCaller = 'no token' | 'garbage token' | 'expired token';
type AuthCaller = Exclude<Caller, TokenCaller>;
const TOKEN_CALLERS: readonly TokenCaller[] = ['no token', 'garbage token', 'expired token'];

interface Refused {
  status: 401 | 403 | 404 | 422;
  code: 'unauthorized' | 'forbidden' | 'not_found' | 'unprocessable';
}
interface Allowed {
  status: 200 | 201 | 202 | 204;
  /** The request is allowed to change tenant A's rows (and then must have). */
  changesA?: boolean;
  /** Secret values of A this caller may see in this response. */
  reveals?: (w: World) => string[];
  /** The response is a token (login): the JWT-shape check does not apply. */
  isToken?: boolean;
  check?: (body: unknown, w: World, res: Response) => void;
}
type Outcome = Refused | Allowed;

/** A public key for the trusted issuers the fixtures make (made at test time; nothing is signed with it here). */
const MATRIX_JWK = (() => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    ...(publicKey.export({ format: 'jwk' }) as { kty: 'EC'; crv: string; x: string; y: string }),
    kid: 'matrix',
  };
})();

const FORBIDDEN: Refused = { status: 403, code: 'forbidden' };
const NOT_FOUND: Refused = { status: 404, code: 'not_found' };
const UNAUTHORIZED: Refused = { status: 401, code: 'unauthorized' };
/** Nothing the caller may list is there to deploy: the answer an empty or absent bundle gets. */
const NOTHING_TO_DEPLOY: Refused = { status: 422, code: 'unprocessable' };
const ok = (status: Allowed['status'], more: Omit<Allowed, 'status'> = {}): Allowed => ({ status, ...more });
const isRefused = (o: Outcome): o is Refused => o.status >= 400;

/** Outcomes of an authenticated route for the five callers that hold a valid token (the others always get 401). */
type Expectations = Record<AuthCaller, Outcome>;
/** A route only the platform admin may call (tenants, master keys). */
const platformOnly = (platform: Allowed): Expectations => ({
  "other tenant's admin": FORBIDDEN,
  'service without capability': FORBIDDEN,
  'service with capability': FORBIDDEN,
  auditor: FORBIDDEN,
  'platform admin': platform,
});
/** A tenant-admin route: B's admin acts in B (found nothing of A, or made its own thing); everyone else 403. */
const adminOnly = (otherAdmin: Outcome): Expectations => ({
  "other tenant's admin": otherAdmin,
  'service without capability': FORBIDDEN,
  'service with capability': FORBIDDEN,
  auditor: FORBIDDEN,
  'platform admin': FORBIDDEN,
});
/** A secret route: services by policy; auditors and the platform admin never. */
const secretRoute = (otherAdmin: Outcome, withoutCap: Outcome, withCap: Outcome): Expectations => ({
  "other tenant's admin": otherAdmin,
  'service without capability': withoutCap,
  'service with capability': withCap,
  auditor: FORBIDDEN,
  'platform admin': FORBIDDEN,
});
/** Metadata an auditor may read (rotation schedule and log, data keys), besides admins. */
const auditorReadable = (otherAdmin: Allowed, auditor: Allowed): Expectations => ({
  "other tenant's admin": otherAdmin,
  'service without capability': FORBIDDEN,
  'service with capability': FORBIDDEN,
  auditor,
  'platform admin': FORBIDDEN,
});
/** Dynamic-credential metadata: admins, and auditors, who read the lease inventory; A's is not found in B. */
const dynamicReadable = (otherAdmin: Outcome, auditor: Allowed): Expectations => ({
  "other tenant's admin": otherAdmin,
  'service without capability': FORBIDDEN,
  'service with capability': FORBIDDEN,
  auditor,
  'platform admin': FORBIDDEN,
});
/** One lease of A's, held by the capable service: only it and A's admins reach it; any other caller learns nothing. */
const leaseRoute = (holder: Allowed, auditor: Outcome): Expectations => ({
  "other tenant's admin": NOT_FOUND,
  'service without capability': NOT_FOUND,
  'service with capability': holder,
  auditor,
  'platform admin': FORBIDDEN,
});
/** The audit log: every role but services reads its own chain (the platform admin reads the platform's). */
const auditRoute = (check: (w: World, body: unknown, caller: AuthCaller, res: Response) => void): Expectations => ({
  "other tenant's admin": ok(200, { check: (b, w, res) => check(w, b, "other tenant's admin", res) }),
  'service without capability': FORBIDDEN,
  'service with capability': FORBIDDEN,
  auditor: ok(200, { check: (b, w, res) => check(w, b, 'auditor', res) }),
  'platform admin': ok(200, { check: (b, w, res) => check(w, b, 'platform admin', res) }),
});

type Fixture<N extends RouteName> = {
  /** A request valid for the route (params, query, body), aimed at tenant A's resources where it names one. */
  input: (w: World, caller: Caller) => RouteInput<Routes[N]>;
} & ({ public: Allowed } | { callers: Expectations });

/** What the fixtures aim at: tenant A's things, B's admin, and the values each secret ever held. */
interface World {
  run: string;
  startedAt: string;
  a: { tenantId: string; slug: string; adminId: string };
  b: { tenantId: string; adminId: string };
  rootId: string;
  callerIds: Record<AuthCaller, string>;
  callerTenants: Record<AuthCaller, string>;
  tokens: Record<Caller, string | null>;
  /** A service identity of A that the identity routes aim at. */
  victimId: string;
  /** Credentials of an A identity that logs in on the login route. */
  probe: { id: string; clientId: string; clientSecret: string };
  webhookId: string;
  /** A trusted issuer of tenant A, with inline keys. */
  issuerId: string;
  /** An environment only tenant A has; none of A's services has a policy in it. */
  envSlug: string;
  /** Sessions of A's probe identity: one per caller for the refresh route (each refresh spends its credential). */
  probeSessions: Record<Caller, TestSession>;
  /** A session of A's probe identity that the revoke route aims at. */
  victimSessionId: string;
  /** Intake links A's admin made: one every caller looks at, one each caller uses, one B's admin tries to revoke. */
  intake: { viewToken: string; submitTokens: Record<Caller, string>; revokeId: string; ids: string[] };
  /** A dynamic-credential backend of A, and where its admin URL is kept (B keeps one at the same path). */
  backend: string;
  connectionSecret: string;
  /** A lease of A's backend that the capable service holds. */
  leaseId: string;
  /** A deployment of A's sandbox to the cloud tier, made by A's admin. */
  deploymentId: string;
  /** The sandbox owner all of A's secret fixtures live under. */
  owner: string;
  /** Every value each of A's secret paths held or will hold (including what the capable service writes). */
  aValues: Map<string, string[]>;
  /** Names under A's sandbox that B's admin never creates in B. */
  aOnlyNames: string[];
  /** Client secrets that must never be sent back. */
  clientSecrets: string[];
}

const N = {
  read: 'READ_ME',
  put: 'PUT_ME',
  del: 'DEL_ME',
  restore: 'RESTORE_ME',
  destroy: 'DESTROY_ME',
  patch: 'PATCH_ME',
  rotate: 'ROTATE_ME',
  due: 'DUE_ME',
  bundleNew: 'BUNDLE_NEW',
  intakeView: 'INTAKE_VIEW',
  intakeNew: 'INTAKE_NEW',
  revoke: 'REVOKE_ME',
} as const;

/** The secret each caller's own intake link writes into. */
const intakeName = (c: Caller) => `INTAKE_${c.replace(/[^a-z]+/g, '-')}`;

const callerSlug = (c: Caller) => c.replace(/[^a-z]+/g, '-');
/** The value a caller writes on a route: distinct per caller, so B's own values never pass for A's. */
const written = (w: World, route: RouteName, caller: Caller) => `v-${route}-${callerSlug(caller)}-${w.run}`;
const sandbox = (w: World, name: string) => ({ kind: 'sandbox' as const, owner: w.owner, name });
const valuesUnder = (w: World, prefix: string) =>
  [...w.aValues.entries()].filter(([p]) => p.startsWith(prefix)).flatMap(([, v]) => v);
const aIdentityIds = (w: World) => [
  w.a.adminId,
  w.callerIds.auditor,
  w.callerIds['service with capability'],
  w.callerIds['service without capability'],
  w.probe.id,
];

/** The actor ids an audit response names (a page, an NDJSON export or a summary). */
function auditActorsOf(body: unknown, res: Response): (string | null)[] {
  const ct = String(res.headers['content-type'] ?? '');
  if (ct.startsWith('application/x-ndjson')) {
    return res.body
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { actorId: string | null }).actorId);
  }
  if (ct.startsWith('text/event-stream')) {
    return res.body
      .split('\n\n')
      .filter((frame) => frame.includes('event: audit'))
      .map((frame) => {
        const data = frame.split('\n').find((l) => l.startsWith('data: ')) ?? 'data: {}';
        return (JSON.parse(data.slice('data: '.length)) as { actorId: string | null }).actorId;
      });
  }
  const page = AuditPage.safeParse(body);
  if (page.success) return page.data.items.map((i) => i.actorId);
  const summary = AuditSummary.safeParse(body);
  if (summary.success)
    return [...summary.data.byActor.map((a) => a.actorId), ...summary.data.secretsReadBy.map((a) => a.actorId)];
  return [];
}

function checkAuditActors(w: World, body: unknown, caller: AuthCaller, res: Response): void {
  const actors = auditActorsOf(body, res);
  if (caller === "other tenant's admin") {
    // B's chain: B's admin, and the platform admin who made B's first identity.
    expect(actors.filter((a) => a !== null && a !== w.b.adminId && a !== w.rootId)).toEqual([]);
    expect(actors).toContain(w.b.adminId);
  } else if (caller === 'platform admin') {
    expect(actors.filter((a) => a !== null && aIdentityIds(w).includes(a))).toEqual([]);
  } else {
    // A's own auditor sees A's actors: the admin who set the tenant up is there.
    expect(actors).toContain(w.a.adminId);
  }
}

const fixtures = {
  health: { input: () => ({}), public: ok(200) },
  ready: { input: () => ({}), public: ok(200) },
  jwks: {
    input: () => ({}),
    public: ok(200, {
      check: (b, w) => {
        const kid = decodeJwt(w.tokens.auditor as string).header.kid;
        expect(JwkSet.parse(b).keys.map((k) => k.kid)).toContain(kid);
        expect(JSON.stringify(b)).not.toMatch(/"d"\s*:/);
      },
    }),
  },
  issueToken: {
    input: (w) => ({ body: { clientId: w.probe.clientId, clientSecret: w.probe.clientSecret } }),
    public: ok(200, {
      isToken: true,
      check: (b, w) => {
        expect(decodeJwt(TokenResponse.parse(b).accessToken).payload.sub).toBe(w.probe.id);
      },
    }),
  },
  refreshSession: {
    input: (w, c) => ({ body: refreshBody(w.probeSessions[c]) }),
    public: ok(200, {
      isToken: true,
      changesA: true,
      check: (b, w) => {
        const r = TokenResponse.parse(b);
        expect(decodeJwt(r.accessToken).payload).toMatchObject({ sub: w.probe.id, tid: w.a.tenantId });
        expect(r.session?.refreshToken).toMatch(/^coffer_rt_2_/);
      },
    }),
  },
  listSessions: {
    input: () => ({ query: {} }),
    callers: Object.fromEntries(
      (CALLERS.filter((c) => !TOKEN_CALLERS.includes(c as TokenCaller)) as AuthCaller[]).map((c) => [
        c,
        // Each caller's own sessions: none of these callers opened one, and none sees the probe's.
        ok(200, { check: (b) => expect(SessionList.parse(b).items).toEqual([]) }),
      ]),
    ) as Expectations,
  },
  revokeSession: {
    input: (w) => ({ params: { id: w.victimSessionId } }),
    // Not one of these callers owns it or administers A: as absent as a session that never existed.
    callers: {
      "other tenant's admin": NOT_FOUND,
      'service without capability': NOT_FOUND,
      'service with capability': NOT_FOUND,
      auditor: NOT_FOUND,
      'platform admin': NOT_FOUND,
    },
  },
  whoami: {
    input: () => ({}),
    callers: Object.fromEntries(
      (CALLERS.filter((c) => !TOKEN_CALLERS.includes(c as TokenCaller)) as AuthCaller[]).map((c) => [
        c,
        ok(200, {
          check: (b, w) => {
            const me = WhoAmI.parse(b);
            expect([me.identityId, me.tenantId]).toEqual([w.callerIds[c], w.callerTenants[c]]);
          },
        }),
      ]),
    ) as Expectations,
  },
  createTenant: {
    input: () => ({ body: { slug: uniqueSlug('mx'), name: 'Matrix-made tenant' } }),
    callers: platformOnly(ok(201)),
  },
  listTenants: { input: () => ({ query: { limit: 5 } }), callers: platformOnly(ok(200)) },
  getTenant: {
    input: (w) => ({ params: { id: w.a.tenantId } }),
    callers: platformOnly(ok(200, { check: (b, w) => expect(Tenant.parse(b).id).toBe(w.a.tenantId) })),
  },
  updateTenant: {
    input: (w) => ({ params: { id: w.a.tenantId }, body: { name: `Renamed by the platform ${w.run}` } }),
    callers: platformOnly(ok(200, { changesA: true })),
  },
  setAuditRetention: {
    input: (w) => ({ params: { id: w.a.tenantId }, body: { days: 401 + (Date.now() % 3000) } }),
    callers: platformOnly(
      ok(200, {
        changesA: true,
        check: (b, w) => expect(AuditRetention.parse(b)).toMatchObject({ tenantId: w.a.tenantId }),
      }),
    ),
  },
  createIdentity: {
    input: (_w, c) => ({ body: { name: `matrix-${callerSlug(c)}`, role: 'auditor' as const } }),
    callers: adminOnly(
      ok(201, {
        check: (b, w) => expect((b as CreateIdentityResponse).identity.tenantId).toBe(w.b.tenantId),
      }),
    ),
  },
  listIdentities: {
    input: () => ({ query: { limit: 1000 } }),
    callers: adminOnly(
      ok(200, {
        check: (b, w) => {
          const items = IdentityPage.parse(b).items;
          expect(items.map((i) => i.id)).toContain(w.b.adminId);
          expect(items.filter((i) => i.tenantId !== w.b.tenantId)).toEqual([]);
        },
      }),
    ),
  },
  getIdentity: { input: (w) => ({ params: { id: w.victimId } }), callers: adminOnly(NOT_FOUND) },
  updateIdentity: {
    input: (w) => ({ params: { id: w.victimId }, body: { name: 'taken-over', disabled: true } }),
    callers: adminOnly(NOT_FOUND),
  },
  deleteIdentity: { input: (w) => ({ params: { id: w.victimId } }), callers: adminOnly(NOT_FOUND) },
  rotateIdentitySecret: { input: (w) => ({ params: { id: w.victimId } }), callers: adminOnly(NOT_FOUND) },
  putSecret: {
    input: (w, c) => ({ params: sandbox(w, N.put), body: { value: written(w, 'putSecret', c) } }),
    callers: secretRoute(
      // B's admin writes B's own secret at the same path: version 1, nothing of A's version 1.
      ok(201, { check: (b) => expect(SecretMetadata.parse(b).version).toBe(1) }),
      FORBIDDEN,
      ok(200, { changesA: true, check: (b) => expect(SecretMetadata.parse(b).version).toBe(2) }),
    ),
  },
  getSecret: {
    input: (w) => ({ params: sandbox(w, N.read), query: {} }),
    callers: secretRoute(
      NOT_FOUND,
      FORBIDDEN,
      ok(200, {
        reveals: (w) => valuesUnder(w, spath('sandbox', w.owner, N.read)),
        check: (b, w) =>
          expect(SecretWithValue.parse(b).value).toBe(w.aValues.get(spath('sandbox', w.owner, N.read))?.[0]),
      }),
    ),
  },
  listSecretVersions: {
    input: (w) => ({ params: sandbox(w, N.read) }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(200)),
  },
  listSecrets: {
    input: () => ({ query: { limit: 1000 } }),
    callers: secretRoute(
      ok(200, {
        check: (b, w) => {
          const names = SecretPage.parse(b).items.map((i) => i.name);
          expect(names.filter((n) => w.aOnlyNames.includes(n))).toEqual([]);
        },
      }),
      // Listing filters by policy rather than refusing: nothing of A is listable for this service.
      ok(200, { check: (b) => expect(SecretPage.parse(b).items).toEqual([]) }),
      ok(200, {
        check: (b, w) => {
          const paths = SecretPage.parse(b).items.map((i) => spath(i.kind, i.owner, i.name));
          expect(paths).toContain(spath('sandbox', w.owner, N.read));
          expect(paths.filter((p) => !p.startsWith(`sandbox/${w.owner}/`))).toEqual([]);
        },
      }),
    ),
  },
  deleteSecret: {
    input: (w) => ({ params: sandbox(w, N.del), query: {} }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(204, { changesA: true })),
  },
  restoreSecret: {
    input: (w) => ({ params: sandbox(w, N.restore) }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(200, { changesA: true })),
  },
  destroySecretVersion: {
    input: (w) => ({ params: { ...sandbox(w, N.destroy), version: 1 } }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(204, { changesA: true })),
  },
  patchSecret: {
    input: (w) => ({ params: sandbox(w, N.patch), body: { description: 'changed by the matrix' } }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(200, { changesA: true })),
  },
  rotateSecret: {
    input: (w, c) => ({ params: sandbox(w, N.rotate), body: { value: written(w, 'rotateSecret', c) } }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(200, { changesA: true })),
  },
  rotationDue: {
    input: () => ({ query: { within: '30d', limit: 1000 } }),
    callers: auditorReadable(
      ok(200, {
        check: (b, w) =>
          expect(RotationDue.parse(b).items.filter((i) => i.owner === w.owner && i.name === N.due)).toEqual([]),
      }),
      ok(200, {
        check: (b, w) =>
          expect(RotationDue.parse(b).items.map((i) => i.path)).toContain(spath('sandbox', w.owner, N.due)),
      }),
    ),
  },
  rotationLog: {
    input: () => ({ query: { limit: 1000 } }),
    callers: auditorReadable(
      ok(200, {
        check: (b, w) =>
          expect(
            RotationLog.parse(b).items.filter((i) => i.actorId !== null && aIdentityIds(w).includes(i.actorId)),
          ).toEqual([]),
      }),
      ok(200, {
        check: (b, w) =>
          expect(RotationLog.parse(b).items.map((i) => i.path)).toContain(spath('sandbox', w.owner, N.rotate)),
      }),
    ),
  },
  listDataKeys: { input: () => ({}), callers: auditorReadable(ok(200), ok(200)) },
  // B's admin rotates B's own data key.
  rotateDataKey: { input: () => ({}), callers: adminOnly(ok(202)) },
  systemKeys: { input: () => ({}), callers: platformOnly(ok(200)) },
  // With one master key in the keyring there is nothing to re-wrap: A's wrapped keys stay as they are.
  rewrapMasterKey: { input: () => ({}), callers: platformOnly(ok(200)) },
  createPlatformAdmin: {
    input: (w) => ({ body: { name: `matrix-platform-${w.run}` } }),
    callers: platformOnly(ok(201)),
  },
  listPlatformAdmins: {
    input: () => ({}),
    callers: platformOnly(
      ok(200, {
        check: (b, w) => expect(PlatformAdminList.parse(b).items.map((i) => i.id)).toContain(w.rootId),
      }),
    ),
  },
  // Aimed at one of A's identities: the platform admin finds no platform admin by that id.
  updatePlatformAdmin: {
    input: (w) => ({ params: { id: w.victimId }, body: { disabled: true } }),
    callers: { ...platformOnly(ok(200)), 'platform admin': NOT_FOUND },
  },
  rotatePlatformAdminSecret: {
    input: (w) => ({ params: { id: w.victimId } }),
    callers: { ...platformOnly(ok(200)), 'platform admin': NOT_FOUND },
  },
  createWebhook: {
    input: () => ({ body: { url: 'http://127.0.0.1:9/matrix-hook', events: ['secret.written' as const] } }),
    callers: adminOnly(ok(201)),
  },
  createPostgresBackend: {
    // B's admin configures a backend of B's own, from the connection secret B keeps at the same path.
    input: (w, c) => ({
      body: {
        name: `b-${callerSlug(c).slice(0, 20)}-${w.run}`,
        connectionSecret: w.connectionSecret,
        ...READ_ITEMS,
        defaultTtlSeconds: 60,
        maxTtlSeconds: 600,
      },
    }),
    callers: adminOnly(ok(201, { check: (b, w) => expect(PostgresBackend.parse(b).name).not.toBe(w.backend) })),
  },
  listPostgresBackends: {
    input: () => ({}),
    callers: dynamicReadable(
      ok(200, {
        check: (b, w) => expect(PostgresBackendList.parse(b).items.map((i) => i.name)).not.toContain(w.backend),
      }),
      ok(200, { check: (b, w) => expect(PostgresBackendList.parse(b).items.map((i) => i.name)).toContain(w.backend) }),
    ),
  },
  getPostgresBackend: {
    input: (w) => ({ params: { name: w.backend } }),
    callers: dynamicReadable(
      NOT_FOUND,
      ok(200, { check: (b, w) => expect(PostgresBackend.parse(b).connectionSecret).toBe(w.connectionSecret) }),
    ),
  },
  deletePostgresBackend: { input: (w) => ({ params: { name: w.backend } }), callers: adminOnly(NOT_FOUND) },
  createLease: {
    input: (w) => ({ params: { name: w.backend }, body: { ttlSeconds: 60 } }),
    callers: secretRoute(
      NOT_FOUND,
      FORBIDDEN,
      ok(201, { changesA: true, check: (b) => expect(LeaseCredentials.parse(b).password.length).toBeGreaterThan(30) }),
    ),
  },
  listLeases: {
    input: () => ({ query: { limit: 1000 } }),
    callers: dynamicReadable(
      ok(200, { check: (b, w) => expect(LeasePage.parse(b).items.map((i) => i.id)).not.toContain(w.leaseId) }),
      ok(200, { check: (b, w) => expect(LeasePage.parse(b).items.map((i) => i.id)).toContain(w.leaseId) }),
    ),
  },
  getLease: {
    input: (w) => ({ params: { id: w.leaseId } }),
    callers: leaseRoute(
      ok(200, { check: (b, w) => expect(Lease.parse(b).id).toBe(w.leaseId) }),
      ok(200, { check: (b, w) => expect(Lease.parse(b).id).toBe(w.leaseId) }),
    ),
  },
  renewLease: {
    input: (w) => ({ params: { id: w.leaseId }, body: { ttlSeconds: 1200 } }),
    callers: leaseRoute(ok(200, { changesA: true }), FORBIDDEN),
  },
  revokeLease: {
    input: (w) => ({ params: { id: w.leaseId } }),
    callers: leaseRoute(
      ok(200, { changesA: true, check: (b) => expect(Lease.parse(b).state).toBe('revoked') }),
      FORBIDDEN,
    ),
  },
  revokeLeases: {
    // Aimed at A's capable service; B's admin names its own identity, which holds no lease in B (were it to name
    // A's, B's own chain would record an id of A's that B's admin itself sent).
    input: (w, c) => ({
      query: { identity: c === "other tenant's admin" ? w.b.adminId : w.callerIds['service with capability'] },
    }),
    callers: adminOnly(ok(200, { check: (b) => expect(RevokeLeasesResult.parse(b).requested).toBe(0) })),
  },
  listWebhooks: {
    input: () => ({}),
    callers: adminOnly(
      ok(200, { check: (b, w) => expect(WebhookList.parse(b).items.map((h) => h.id)).not.toContain(w.webhookId) }),
    ),
  },
  deleteWebhook: { input: (w) => ({ params: { id: w.webhookId } }), callers: adminOnly(NOT_FOUND) },
  webhookDeliveries: { input: (w) => ({ params: { id: w.webhookId } }), callers: adminOnly(NOT_FOUND) },
  createIssuer: {
    // B's admin adds an issuer to B.
    input: (w) => ({
      body: { name: `b-issuer-${w.run}`, issuer: `https://b-${w.run}.example`, jwks: { keys: [MATRIX_JWK] } },
    }),
    callers: adminOnly(ok(201)),
  },
  listIssuers: {
    input: () => ({}),
    callers: adminOnly(
      ok(200, {
        check: (b, w) => expect(TrustedIssuerList.parse(b).items.map((i) => i.id)).not.toContain(w.issuerId),
      }),
    ),
  },
  getIssuer: { input: (w) => ({ params: { id: w.issuerId } }), callers: adminOnly(NOT_FOUND) },
  updateIssuer: {
    input: (w) => ({ params: { id: w.issuerId }, body: { clockSkewSeconds: 5 } }),
    callers: adminOnly(NOT_FOUND),
  },
  deleteIssuer: { input: (w) => ({ params: { id: w.issuerId } }), callers: adminOnly(NOT_FOUND) },
  listEnvironments: {
    input: () => ({}),
    callers: {
      "other tenant's admin": ok(200, {
        check: (b, w) => expect(EnvironmentList.parse(b).items.map((e) => e.slug)).not.toContain(w.envSlug),
      }),
      // Services see only environments their policies apply in: A's extra one is not among them.
      'service without capability': ok(200, {
        check: (b, w) => expect(EnvironmentList.parse(b).items.map((e) => e.slug)).not.toContain(w.envSlug),
      }),
      'service with capability': ok(200, {
        check: (b, _w) => expect(EnvironmentList.parse(b).items.map((e) => e.slug)).toEqual(['default']),
      }),
      auditor: ok(200, {
        check: (b, w) => expect(EnvironmentList.parse(b).items.map((e) => e.slug)).toContain(w.envSlug),
      }),
      'platform admin': FORBIDDEN,
    },
  },
  createEnvironment: {
    input: (w, c) => ({ body: { slug: `mx-${callerSlug(c)}-${w.run}`.toLowerCase(), name: 'Matrix-made' } }),
    callers: adminOnly(ok(201)),
  },
  updateEnvironment: {
    input: (w) => ({ params: { slug: w.envSlug }, body: { protected: true } }),
    callers: adminOnly(NOT_FOUND),
  },
  deleteEnvironment: { input: (w) => ({ params: { slug: w.envSlug } }), callers: adminOnly(NOT_FOUND) },
  diffEnvironments: {
    input: (w) => ({ query: { from: 'default', to: w.envSlug, kind: 'sandbox' as const, owner: w.owner } }),
    callers: {
      // B has no such environment; to A's services it does not exist either (no policy applies in it).
      "other tenant's admin": NOT_FOUND,
      'service without capability': NOT_FOUND,
      'service with capability': NOT_FOUND,
      auditor: ok(200, {
        check: (b, _w) => {
          const d = EnvironmentDiff.parse(b);
          expect(d.items.length).toBeGreaterThan(0);
          expect(d.items.filter((i) => i.state !== 'only_in_from')).toEqual([]);
        },
      }),
      'platform admin': FORBIDDEN,
    },
  },
  promoteEnvironment: {
    input: (w) => ({ body: { from: 'default', to: w.envSlug, kind: 'sandbox' as const, owner: w.owner } }),
    callers: {
      "other tenant's admin": NOT_FOUND,
      'service without capability': NOT_FOUND,
      'service with capability': NOT_FOUND,
      auditor: FORBIDDEN,
      'platform admin': FORBIDDEN,
    },
  },
  checkSecrets: {
    input: (w) => ({ body: { secrets: [{ path: spath('sandbox', w.owner, N.read), required: true }] } }),
    callers: secretRoute(
      // B's admin checks B: A's secret is as absent there as one that never existed.
      ok(200, { check: (b) => expect(CheckResponse.parse(b).results.map((r) => r.status)).toEqual(['missing']) }),
      // No list on A's sandbox: denied, with no version that would tell the secret is there.
      ok(200, {
        check: (b) =>
          expect(CheckResponse.parse(b).results.map((r) => [r.status, r.version])).toEqual([['denied', null]]),
      }),
      ok(200, { check: (b) => expect(CheckResponse.parse(b).results.map((r) => r.status)).toEqual(['ok']) }),
    ),
  },
  createIntake: {
    input: (w) => ({
      body: { path: spath('sandbox', w.owner, N.intakeNew), expiresIn: 600, prompt: { label: 'Matrix' } },
    }),
    callers: secretRoute(
      // B's admin makes a link into B's own secret at the same path.
      ok(201, {
        check: (b, w) => expect(CreateIntakeResponse.parse(b).path).toBe(`sandbox/${w.owner}/${N.intakeNew}`),
      }),
      FORBIDDEN,
      ok(201, { changesA: true }),
    ),
  },
  listIntakes: {
    input: () => ({ query: { limit: 1000 } }),
    callers: adminOnly(
      ok(200, {
        check: (b, w) =>
          expect(
            IntakeList.parse(b).items.filter((l) => w.intake.ids.includes(l.id) || l.path.includes('VIEW')),
          ).toEqual([]),
      }),
    ),
  },
  revokeIntake: { input: (w) => ({ params: { id: w.intake.revokeId } }), callers: adminOnly(NOT_FOUND) },
  // Public: the token is the credential, whoever sends it (and whatever bearer token comes with it).
  getIntake: {
    input: (w) => ({ params: { token: w.intake.viewToken } }),
    public: ok(200, { check: (b) => expect(IntakeView.parse(b)).toMatchObject({ name: N.intakeView, label: 'Look' }) }),
  },
  submitIntake: {
    input: (w, c) => ({ params: { token: w.intake.submitTokens[c] }, body: { value: written(w, 'submitIntake', c) } }),
    public: ok(200, { changesA: true }),
  },
  getBundle: {
    input: (w) => ({ params: { kind: 'sandbox' as const, owner: w.owner } }),
    callers: secretRoute(
      // B's admin sees only what it wrote into B itself at the same owner.
      ok(200, {
        check: (b, w) => {
          const values = Object.values(Bundle.parse(b).values);
          const own = (['putSecret', 'writeBundle'] as const).map((r) => written(w, r, "other tenant's admin"));
          expect(values.filter((v) => !own.includes(v))).toEqual([]);
        },
      }),
      ok(200, { check: (b) => expect(Bundle.parse(b)).toEqual({ values: {}, versions: {} }) }),
      ok(200, {
        reveals: (w) => valuesUnder(w, `sandbox/${w.owner}/`),
        check: (b, w) =>
          expect(Bundle.parse(b).values[N.read]).toBe(w.aValues.get(spath('sandbox', w.owner, N.read))?.[0]),
      }),
    ),
  },
  writeBundle: {
    input: (w, c) => ({
      params: { kind: 'sandbox' as const, owner: w.owner },
      body: { set: { [N.bundleNew]: { value: written(w, 'writeBundle', c) } } },
    }),
    callers: secretRoute(ok(200), FORBIDDEN, ok(200, { changesA: true })),
  },
  queryAudit: { input: (w) => ({ query: { from: w.startedAt, limit: 1000 } }), callers: auditRoute(checkAuditActors) },
  exportAudit: { input: (w) => ({ query: { from: w.startedAt } }), callers: auditRoute(checkAuditActors) },
  // From the chain's start, for a second: what the session sends is the caller's own tenant's events.
  followAudit: { input: () => ({ query: { after: 0, maxSeconds: 1 } }), callers: auditRoute(checkAuditActors) },
  verifyAudit: {
    input: (w) => ({ query: { from: w.startedAt } }),
    callers: auditRoute((_w, b, caller) => {
      // Tenant chains here are written by this file alone, so they must verify; the platform's is shared.
      if (caller !== 'platform admin') expect(AuditVerifyResult.parse(b).ok).toBe(true);
    }),
  },
  auditSummary: { input: (w) => ({ query: { from: w.startedAt } }), callers: auditRoute(checkAuditActors) },
  inventory: {
    input: () => ({ query: { limit: 1000 } }),
    callers: auditorReadable(
      ok(200, {
        check: (b, w) => expect(InventoryPage.parse(b).items.filter((i) => w.aOnlyNames.includes(i.name))).toEqual([]),
      }),
      ok(200, {
        check: (b, w) =>
          expect(InventoryPage.parse(b).items.map((i) => i.path)).toContain(spath('sandbox', w.owner, N.read)),
      }),
    ),
  },
  planDeployment: {
    input: (w) => ({ body: { environment: 'default', tier: 'cloud', bundles: [`sandbox/${w.owner}`] } }),
    callers: {
      // B's admin plans B's own secrets at the same owner (written into B by the routes above).
      "other tenant's admin": ok(200, {
        check: (b, w) =>
          expect(
            DeploymentPlan.parse(b).plan.filter((i) => w.aOnlyNames.some((n) => i.path.endsWith(`/${n}`))),
          ).toEqual([]),
      }),
      'service without capability': NOTHING_TO_DEPLOY,
      'service with capability': ok(200, {
        check: (b, w) =>
          expect(DeploymentPlan.parse(b).plan.map((i) => i.path)).toContain(spath('sandbox', w.owner, N.read)),
      }),
      auditor: FORBIDDEN,
      'platform admin': FORBIDDEN,
    },
  },
  createDeployment: {
    input: (w, c) => ({
      body: { name: `matrix-${callerSlug(c)}`, environment: 'default', tier: 'cloud', bundles: [`sandbox/${w.owner}`] },
    }),
    callers: {
      "other tenant's admin": ok(201),
      'service without capability': NOTHING_TO_DEPLOY,
      'service with capability': ok(201, {
        changesA: true,
        check: (b) => expect(CreatedDeployment.parse(b).generated).toEqual({}),
      }),
      auditor: FORBIDDEN,
      'platform admin': FORBIDDEN,
    },
  },
  listDeployments: {
    input: () => ({ query: { limit: 1000 } }),
    callers: auditorReadable(
      ok(200, {
        check: (b, w) => expect(DeploymentPage.parse(b).items.map((d) => d.id)).not.toContain(w.deploymentId),
      }),
      ok(200, {
        check: (b, w) => expect(DeploymentPage.parse(b).items.map((d) => d.id)).toContain(w.deploymentId),
      }),
    ),
  },
  getDeployment: {
    input: (w) => ({ params: { id: w.deploymentId } }),
    callers: {
      "other tenant's admin": NOT_FOUND,
      // Nothing of its plan is the service's to know: for it, the deployment is not there.
      'service without capability': NOT_FOUND,
      'service with capability': ok(200, {
        check: (b, w) => expect(Deployment.parse(b).id).toBe(w.deploymentId),
      }),
      auditor: ok(200, {
        check: (b, w) => {
          const d = Deployment.parse(b);
          expect(d.id).toBe(w.deploymentId);
          expect(d.plan.length).toBeGreaterThan(0);
        },
      }),
      'platform admin': FORBIDDEN,
    },
  },
  revokeDeployment: {
    input: (w) => ({ params: { id: w.deploymentId }, body: { notes: 'matrix' } }),
    callers: adminOnly(NOT_FOUND),
  },
  secretConsumers: {
    input: (w) => ({ params: sandbox(w, N.read), query: {} }),
    callers: {
      ...secretRoute(
        NOT_FOUND,
        FORBIDDEN,
        ok(200, {
          check: (b, w) => expect(SecretConsumers.parse(b).path).toBe(spath('sandbox', w.owner, N.read)),
        }),
      ),
      auditor: ok(200),
    },
  },
  rotationStatus: {
    input: (w) => ({ params: sandbox(w, N.rotate), query: {} }),
    callers: {
      ...secretRoute(
        NOT_FOUND,
        FORBIDDEN,
        ok(200, { check: (b) => expect(RotationStatus.parse(b).previous).not.toBeNull() }),
      ),
      auditor: ok(200),
    },
  },
  revokeSecretVersion: {
    input: (w) => ({ params: { ...sandbox(w, N.revoke), version: 1 }, body: {} }),
    callers: secretRoute(NOT_FOUND, FORBIDDEN, ok(200, { changesA: true })),
  },
} satisfies { [K in RouteName]: Fixture<K> };

/** The loose shape every fixture input has, for building the request. */
interface LooseInput {
  params?: Record<string, string | number>;
  query?: Record<string, unknown>;
  body?: unknown;
}
type LooseFixture = { input: (w: World, c: Caller) => LooseInput } & ({ public: Allowed } | { callers: Expectations });

const routeNames = Object.keys(routes) as RouteName[];
const fixtureOf = (name: RouteName): LooseFixture => fixtures[name] as LooseFixture;

function expected(name: RouteName, caller: Caller): Outcome {
  const f = fixtureOf(name);
  if ('public' in f) return f.public;
  if ((TOKEN_CALLERS as readonly Caller[]).includes(caller)) return UNAUTHORIZED;
  return f.callers[caller as AuthCaller];
}

const cases = routeNames.flatMap((route) => CALLERS.map((caller) => ({ route, caller })));

let t: TestApp;
let owner: pg.Client;
let w: World;
let corner: TargetCorner;

beforeAll(async () => {
  t = await createTestApp({ COFFER_RATE_LIMIT_PER_SECOND: '1000000', COFFER_LOGIN_RATE_LIMIT_PER_MINUTE: '1000000' });
  owner = await ownerClient();
  const startedAt = new Date(Date.now() - 1000).toISOString();
  const run = randomBytes(4).toString('hex');
  const root = await rootToken(t.app);
  const a = await createTenant(t.app, root);
  const b = await createTenant(t.app, root);
  const allCaps: Capability[] = ['read', 'list', 'write', 'delete', 'rotate'];
  const ownerName = `app-${run}`;
  const backend = `mx-${run}`;
  const capable = await createIdentity(t.app, a.adminToken, {
    role: 'service',
    policies: [
      { path: `sandbox/${ownerName}/*`, capabilities: allCaps },
      { path: `dynamic/${backend}`, capabilities: ['read'] },
    ],
  });
  const incapable = await createIdentity(t.app, a.adminToken, {
    role: 'service',
    policies: [{ path: 'shared/elsewhere/*', capabilities: allCaps }],
  });
  const auditor = await createIdentity(t.app, a.adminToken, { role: 'auditor' });
  const victim = await createIdentity(t.app, a.adminToken, { role: 'service', name: `victim-${run}` });
  const probe = await createIdentity(t.app, a.adminToken, { role: 'service', name: `probe-${run}` });

  const aValues = new Map<string, string[]>();
  const admin = async (method: 'PUT' | 'DELETE' | 'POST', url: string, payload?: Record<string, unknown>) => {
    const res = await t.app.inject({ method, url, headers: bearer(a.adminToken), ...(payload ? { payload } : {}) });
    if (res.statusCode >= 300) throw new Error(`setup ${method} ${url}: ${res.statusCode} ${res.body}`);
  };
  const put = async (path: string, extra: Record<string, unknown> = {}) => {
    const value = `${path.split('/').pop()}-value-${randomBytes(6).toString('hex')}`;
    // Newest first, so [0] is the current value.
    aValues.set(path, [value, ...(aValues.get(path) ?? [])]);
    await admin('PUT', `/v1/secrets/${path}`, { value, ...extra });
  };
  const p = (name: string) => spath('sandbox', ownerName, name);
  for (const name of [N.read, N.put, N.del, N.restore, N.destroy, N.patch, N.rotate]) await put(p(name));
  await put(p(N.destroy));
  await put(p(N.due), { rotation: { intervalDays: 1 } });
  await put(p(N.revoke));
  await put(p(N.revoke));
  await put(spath('user', `alice-${run}`, 'PRIVATE'));
  await admin('DELETE', `/v1/secrets/${p(N.restore)}`);
  const rotated = `ROTATE_ME-rotated-${run}`;
  aValues.set(p(N.rotate), [rotated, ...(aValues.get(p(N.rotate)) ?? [])]);
  await admin('POST', `/v1/secrets/${p(N.rotate)}/rotate`, { value: rotated });
  const hook = await t.app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(a.adminToken),
    payload: { url: 'http://127.0.0.1:9/a-hook', events: ['secret.written'] },
  });
  expect(hook.statusCode).toBe(201);
  const webhookId = (hook.json() as { webhook: { id: string } }).webhook.id;
  const issuer = await t.app.inject({
    method: 'POST',
    url: '/v1/trust/issuers',
    headers: bearer(a.adminToken),
    payload: { name: `a-issuer-${run}`, issuer: `https://issuer-${run}.example`, jwks: { keys: [MATRIX_JWK] } },
  });
  expect(issuer.statusCode).toBe(201);
  const issuerId = (issuer.json() as { id: string }).id;
  const envSlug = `a-env-${run}`.toLowerCase();
  await admin('POST', '/v1/environments', { slug: envSlug, name: 'Only in A' });
  const intakeLink = async (name: string, label: string) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/intake',
      headers: bearer(a.adminToken),
      payload: { path: p(name), expiresIn: 3600, prompt: { label } },
    });
    expect(res.statusCode, res.body).toBe(201);
    const link = CreateIntakeResponse.parse(res.json());
    return { id: link.id, token: link.url.split('/').pop() as string };
  };
  const viewLink = await intakeLink(N.intakeView, 'Look');
  const revokeLink = await intakeLink(N.intakeView, 'Revoke me');
  const submitLinks = {} as Record<Caller, { id: string; token: string }>;
  for (const c of CALLERS) submitLinks[c] = await intakeLink(intakeName(c), `Use me (${c})`);

  const probeSessions = Object.fromEntries(
    await Promise.all(
      CALLERS.map(
        async (c) => [c, await openSession(t.app, probe.identity.clientId, probe.clientSecret, callerSlug(c))] as const,
      ),
    ),
  ) as Record<Caller, TestSession>;
  const victimSession = await openSession(t.app, probe.identity.clientId, probe.clientSecret, 'victim');
  const deployment = await t.app.inject({
    method: 'POST',
    url: '/v1/deployments',
    headers: bearer(a.adminToken),
    payload: { name: `a-deployment-${run}`, environment: 'default', tier: 'cloud', bundles: [`sandbox/${ownerName}`] },
  });
  expect(deployment.statusCode, deployment.body).toBe(201);
  const deploymentId = (deployment.json() as { id: string }).id;

  // Dynamic credentials: A's backend (its admin URL is one of A's secret values) and a lease the capable service
  // holds; B keeps a connection secret at the same path, for its own backends.
  corner = await targetCorner();
  const connectionSecret = `shared/dyn-${run}/ADMIN_URL`;
  aValues.set(connectionSecret, [corner.adminUrl]);
  for (const token of [a.adminToken, b.adminToken]) {
    const put = await t.app.inject({
      method: 'PUT',
      url: `/v1/secrets/${connectionSecret}`,
      headers: bearer(token),
      payload: { value: corner.adminUrl },
    });
    expect(put.statusCode).toBe(201);
  }
  const made = await t.app.inject({
    method: 'POST',
    url: '/v1/dynamic/postgres',
    headers: bearer(a.adminToken),
    payload: { name: backend, connectionSecret, ...READ_ITEMS, defaultTtlSeconds: 600, maxTtlSeconds: 3600 },
  });
  expect(made.statusCode, made.body).toBe(201);
  const leased = await t.app.inject({
    method: 'POST',
    url: `/v1/dynamic/${backend}/leases`,
    headers: bearer(capable.token),
  });
  expect(leased.statusCode, leased.body).toBe(201);
  const leaseId = LeaseCredentials.parse(leased.json()).leaseId;

  const kid = decodeJwt(a.adminToken).header.kid;
  const now = nowSeconds();
  const expired = craftJwt(
    { alg: 'EdDSA', typ: 'JWT', kid },
    { ...decodeJwt(capable.token).payload, iat: now - 3600, exp: now - 600 },
    ed25519Signer(inject('jwtPrivateKeyPem')),
  );
  const garbage = `${Buffer.from('{"alg":"EdDSA","typ":"JWT"}').toString('base64url')}.${Buffer.from('garbage').toString('base64url')}.${'A'.repeat(86)}`;

  const callerIds: Record<AuthCaller, string> = {
    "other tenant's admin": await identityIdOf(t.app, b.adminToken),
    'service without capability': incapable.identity.id,
    'service with capability': capable.identity.id,
    auditor: auditor.identity.id,
    'platform admin': await identityIdOf(t.app, root),
  };
  w = {
    run,
    startedAt,
    a: { tenantId: a.tenant.id, slug: a.tenant.slug, adminId: await identityIdOf(t.app, a.adminToken) },
    b: { tenantId: b.tenant.id, adminId: callerIds["other tenant's admin"] },
    rootId: callerIds['platform admin'],
    callerIds,
    callerTenants: {
      "other tenant's admin": b.tenant.id,
      'service without capability': a.tenant.id,
      'service with capability': a.tenant.id,
      auditor: a.tenant.id,
      'platform admin': PLATFORM_TENANT_ID,
    },
    tokens: {
      'no token': null,
      'garbage token': garbage,
      'expired token': expired,
      "other tenant's admin": b.adminToken,
      'service without capability': incapable.token,
      'service with capability': capable.token,
      auditor: auditor.token,
      'platform admin': root,
    },
    victimId: victim.identity.id,
    probe: { id: probe.identity.id, clientId: probe.identity.clientId, clientSecret: probe.clientSecret },
    webhookId,
    issuerId,
    envSlug,
    probeSessions,
    victimSessionId: victimSession.id,
    intake: {
      viewToken: viewLink.token,
      revokeId: revokeLink.id,
      submitTokens: Object.fromEntries(CALLERS.map((c) => [c, submitLinks[c].token])) as Record<Caller, string>,
      ids: [viewLink.id, revokeLink.id, ...CALLERS.map((c) => submitLinks[c].id)],
    },
    backend,
    connectionSecret,
    leaseId,
    deploymentId,
    owner: ownerName,
    aValues,
    aOnlyNames: [N.read, N.del, N.restore, N.destroy, N.patch, N.rotate, N.due, N.revoke, 'PRIVATE'],
    clientSecrets: [
      a.admin.clientSecret,
      b.admin.clientSecret,
      capable.clientSecret,
      incapable.clientSecret,
      auditor.clientSecret,
      victim.clientSecret,
      probe.clientSecret,
    ],
  };
  // What the capable service will write into A, so a response that carries it is caught as well.
  for (const [route, name] of [
    ['putSecret', N.put],
    ['rotateSecret', N.rotate],
    ['writeBundle', N.bundleNew],
  ] as const) {
    const path = p(name);
    aValues.set(path, [...(aValues.get(path) ?? []), written(w, route, 'service with capability')]);
  }
  // What each caller writes through its own intake link.
  for (const c of CALLERS) aValues.set(p(intakeName(c)), [written(w, 'submitIntake', c)]);
  // Sanity: the owner's digest sees A's rows, so "unchanged" below compares something.
  const digest = await tenantRowsDigest(owner, a.tenant.id);
  for (const table of [
    'secrets',
    'secret_versions',
    'identities',
    'webhooks',
    'rotation_schedule',
    'intake_links',
    'leases',
    'deployments',
    'deployment_items',
  ])
    expect(digest[table], table).not.toMatch(/^0:/);
}, 120_000);

afterAll(async () => {
  await owner?.end();
  await t?.close();
  await corner?.drop();
});

function requestOf(
  def: RouteDef,
  input: LooseInput,
): { method: RouteDef['method']; url: string; payload?: Record<string, unknown> } {
  let url = buildPath(def.path, input.params);
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(input.query ?? {})) if (v !== undefined) qs.set(k, String(v));
  if (qs.size > 0) url += `?${qs.toString()}`;
  return {
    method: def.method,
    url,
    ...(def.body && input.body !== undefined ? { payload: input.body as Record<string, unknown> } : {}),
  };
}

interface AuditRowLite {
  tenant_id: string;
  actor_id: string | null;
  outcome: string;
  error_code: string | null;
}

const routeCount = routeNames.length;

/**
 * Cases that fail because of a bug in the server, each with what goes wrong: the case stays red-on-green until the
 * bug is fixed. None today (rotationDue as auditor, an always-empty list, was the last).
 */
const KNOWN_BUGS: Partial<Record<string, string>> = {};

describe(`security matrix: ${routeCount} routes × ${CALLERS.length} callers = ${cases.length} cases`, () => {
  it('covers every route of the contracts, and every fixture is a valid request for its route', () => {
    expect(Object.keys(fixtures).sort()).toEqual([...routeNames].sort());
    expect(routeCount).toBeGreaterThanOrEqual(40);
    for (const name of routeNames) {
      const def: RouteDef = routes[name];
      for (const caller of CALLERS) {
        const input = fixtureOf(name).input(w, caller);
        if (def.params) expect(def.params.safeParse(input.params).success, `${name} params`).toBe(true);
        else expect(input.params, `${name} has no params`).toBeUndefined();
        if (def.query) expect(def.query.safeParse(input.query ?? {}).success, `${name} query`).toBe(true);
        if (def.body) expect(def.body.safeParse(input.body).success, `${name} body`).toBe(true);
        else expect(input.body, `${name} has no body`).toBeUndefined();
      }
    }
  });

  it('the leak scanner finds what it looks for (so a clean scan means something)', async () => {
    const material = await keyMaterialOf(owner, w.a.tenantId);
    const { rows } = await owner.query<{ c: Buffer }>(
      'select ciphertext as c from coffer.secret_versions where tenant_id = $1 and ciphertext is not null limit 1',
      [w.a.tenantId],
    );
    const ciphertext = rows[0]?.c;
    if (!ciphertext) throw new Error('tenant A has no ciphertext');
    // However a response might carry a whole ciphertext, the scan sees it.
    for (const encoded of [
      ciphertext.toString('hex'),
      `\\x${ciphertext.toString('hex')}`,
      ciphertext.toString('base64'),
      ciphertext.toString('base64url'),
    ]) {
      expect(leaksIn(JSON.stringify({ data: encoded }), material), encoded.slice(0, 12)).not.toEqual([]);
    }
    expect(JWT_SHAPE.test(JSON.stringify({ t: w.tokens.auditor }))).toBe(true);
    const value = w.aValues.get(spath('sandbox', w.owner, N.read))?.[0];
    expect(leaksIn(JSON.stringify({ v: value }), allValues())).toEqual([value]);
  });

  const allValues = () => [...w.aValues.values()].flat();

  const verify = async ({ route, caller }: { route: RouteName; caller: Caller }): Promise<void> => {
    const def: RouteDef = routes[route];
    const f = fixtureOf(route);
    const want = expected(route, caller);
    const token = w.tokens[caller];
    const before = await tenantRowsDigest(owner, w.a.tenantId);
    const materialBefore = await keyMaterialOf(owner, w.a.tenantId);

    const res = await t.app.inject({
      ...requestOf(def, f.input(w, caller)),
      headers: token ? bearer(token) : {},
    });
    const label = `${def.method} ${def.path} as ${caller}: ${res.statusCode} ${res.body.slice(0, 300)}`;
    expect(res.statusCode, label).toBe(want.status);

    const requestId = String(res.headers['x-request-id']);
    const after = await tenantRowsDigest(owner, w.a.tenantId);
    const { rows: audit } = await owner.query<AuditRowLite>(
      'select tenant_id, actor_id, outcome, error_code from coffer.audit_events where request_id = $1',
      [requestId],
    );

    // Nothing leaked: no value of A (beyond what this caller may read), no ciphertext or wrapped key, no client
    // secret, no token.
    const reveals = !isRefused(want) && want.reveals ? want.reveals(w) : [];
    const forbiddenValues = allValues().filter((v) => !reveals.includes(v));
    const material = [...materialBefore, ...(await keyMaterialOf(owner, w.a.tenantId))];
    expect(leaksIn(res.body, forbiddenValues), `${label}: secret values`).toEqual([]);
    expect(leaksIn(res.body, material), `${label}: ciphertext or wrapped key`).toEqual([]);
    expect(leaksIn(res.body, w.clientSecrets), `${label}: client secrets`).toEqual([]);
    expect(
      leaksIn(
        res.body,
        Object.values(w.tokens).filter((x) => x !== null),
      ),
      `${label}: tokens`,
    ).toEqual([]);
    if (isRefused(want) || !want.isToken) expect(JWT_SHAPE.test(res.body), `${label}: a JWT`).toBe(false);
    if (!('public' in f) && (caller === "other tenant's admin" || caller === 'platform admin')) {
      // Nobody outside A learns who A's identities are.
      const foreign = [...aIdentityIds(w), w.probe.clientId];
      expect(leaksIn(res.body, foreign), `${label}: A's identities`).toEqual([]);
    }

    const inA = (r: AuditRowLite) => r.tenant_id === w.a.tenantId;
    if (isRefused(want)) {
      const err = ErrorEnvelope.parse(res.json()).error;
      expect(err.code, label).toBe(want.code);
      expect(err.requestId).toBe(requestId);
      expect(after, `${label}: A's rows changed`).toEqual(before);
      // The refusal is audited once, in the caller's own chain (the platform's for an unauthenticated caller).
      const chain = (TOKEN_CALLERS as readonly Caller[]).includes(caller)
        ? PLATFORM_TENANT_ID
        : w.callerTenants[caller as AuthCaller];
      const actor = (TOKEN_CALLERS as readonly Caller[]).includes(caller) ? null : w.callerIds[caller as AuthCaller];
      expect(audit, label).toHaveLength(1);
      expect(audit[0], label).toMatchObject({ tenant_id: chain, actor_id: actor, error_code: want.code });
      expect(audit[0]?.outcome, label).toBe(want.status === 401 || want.status === 403 ? 'denied' : 'error');
    } else {
      if (want.changesA) expect(after, `${label}: should have changed A`).not.toEqual(before);
      else expect(after, `${label}: A's rows changed`).toEqual(before);
      const schema = def.success[want.status];
      const isJson = String(res.headers['content-type'] ?? '').startsWith('application/json');
      const body: unknown = want.status === 204 ? null : isJson ? res.json() : res.body;
      if (schema && isJson) expect(schema.safeParse(body).success, `${label}: response schema`).toBe(true);
      if (want.status === 204) expect(res.body).toBe('');
      want.check?.(body, w, res);
      // Callers outside A never write into A's audit chain.
      if (!('public' in f) && caller !== 'auditor' && !caller.startsWith('service')) {
        expect(audit.filter(inA), label).toEqual([]);
      }
    }
  };

  for (const c of cases) {
    const bug = KNOWN_BUGS[`${c.route} as ${c.caller}`];
    // A case that shows a bug in the server stays red-on-green: it.fails passes while the bug is there and fails
    // (asking for this entry to go) once it is fixed.
    if (bug) it.fails(`${c.route} as ${c.caller} (known bug: ${bug})`, () => verify(c));
    else it(`${c.route} as ${c.caller}`, () => verify(c));
  }
});
