import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import type { IContainer as Container, IPodSpec as PodSpec, IVolume as Volume } from 'kubernetes-models/v1';
import { ConfigMap, Namespace, Service } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { repoRoot } from '../support/build.ts';

const dir = path.join(repoRoot, 'apps/api/deploy');
type Doc = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };
const docs: Doc[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((f) =>
    // kubectl reads YAML 1.1, where `defaultMode: 0400` is octal (in YAML 1.2 it would be decimal 400).
    parseAllDocuments(readFileSync(path.join(dir, f), 'utf8'), { version: '1.1' }).map((d) => d.toJSON() as Doc),
  );
const byKind = (kind: string) => docs.filter((d) => d.kind === kind);

/** Every variable Coffer reads, as listed in .env.example (a config test keeps that file complete). */
const knownVariables = new Set(
  readFileSync(path.join(repoRoot, '.env.example'), 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split('=')[0]),
);

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'batch/v1/Job': Job,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'v1/Namespace': Namespace,
};

const named = <T>(kind: string, name: string): T => {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
  if (!doc) throw new Error(`no ${kind} ${name}`);
  return doc as unknown as T;
};
const apiDeployment = () => named<Deployment>('Deployment', 'coffer-api');
const apiConfig = () => named<ConfigMap>('ConfigMap', 'coffer-config');
/** The pods that run Coffer's own image (PgBouncer's settings are not Coffer's variables). */
const cofferContainers = (): Container[] =>
  [...byKind('Deployment'), ...byKind('Job')]
    .flatMap((d) => (d as unknown as Deployment).spec?.template.spec?.containers ?? [])
    .filter((c) => c.image?.includes('coffer-api'));

describe(`Kubernetes manifests (${docs.length} objects)`, () => {
  it.each(docs.map((d) => [`${d.kind}/${d.metadata.name}`, d] as const))(
    '%s is valid against the Kubernetes schema',
    (_, doc) => {
      const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
      expect(Model, `no schema for ${doc.apiVersion} ${doc.kind}`).toBeDefined();
      expect(() => new (Model as NonNullable<typeof Model>)(doc as never).validate()).not.toThrow();
    },
  );

  it('the kustomization lists every manifest', () => {
    const k = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect(new Set(k.resources)).toEqual(new Set(files));
  });

  it('probes readiness on /readyz and liveness on /healthz, over HTTPS', () => {
    const c = apiDeployment().spec?.template.spec?.containers[0];
    expect(c?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', scheme: 'HTTPS' });
    expect(c?.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', scheme: 'HTTPS' });
  });

  it('mounts the keyring from a Secret file and never carries a key or the owner URL in a replica', () => {
    const spec = apiDeployment().spec?.template.spec;
    const keys = spec?.volumes?.find((v) => v.name === 'keys');
    expect(keys?.secret?.secretName).toBe('coffer-keys');
    const env = spec?.containers[0]?.env ?? [];
    expect(env.map((e) => e.name)).not.toContain('DATABASE_URL');
    expect(env.every((e) => e.value === undefined)).toBe(true);
    const config = apiConfig();
    expect(config?.data?.COFFER_MASTER_KEYS_FILE).toMatch(/^\/etc\/coffer\/keys\//);
    expect(
      Object.keys(config?.data ?? {}).some((k) => /^COFFER_(MASTER_KEYS|JWT_PRIVATE_KEY|BOOTSTRAP_SECRET)$/.test(k)),
    ).toBe(false);
  });

  it('configures only variables Coffer knows', () => {
    const names = [
      ...Object.keys(apiConfig().data ?? {}),
      ...cofferContainers().flatMap((c) => (c.env ?? []).map((e) => e.name)),
    ];
    expect(names.filter((n) => !knownVariables.has(n))).toEqual([]);
  });

  it('points the Service, the PodDisruptionBudget and the autoscaler at the Deployment', () => {
    const deployment = apiDeployment();
    const labels = deployment?.spec?.template.metadata?.labels ?? {};
    const matches = (selector: Record<string, string> | undefined) =>
      Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v) && Object.keys(selector ?? {}).length > 0;
    expect(matches(named<Service>('Service', 'coffer-api').spec?.selector)).toBe(true);
    expect(
      matches((byKind('PodDisruptionBudget')[0] as unknown as PodDisruptionBudget).spec?.selector?.matchLabels),
    ).toBe(true);
    expect(matches(deployment?.spec?.selector.matchLabels)).toBe(true);
    expect((byKind('HorizontalPodAutoscaler')[0] as unknown as HorizontalPodAutoscaler).spec?.scaleTargetRef.name).toBe(
      deployment?.metadata?.name,
    );
  });

  it('runs as a non-root user with a read-only root file system and no capabilities', () => {
    for (const d of [...byKind('Deployment'), ...byKind('Job')]) {
      const spec = (d as unknown as Deployment).spec?.template.spec;
      expect(spec?.securityContext?.runAsNonRoot).toBe(true);
      for (const c of spec?.containers ?? []) {
        expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(c.securityContext?.capabilities?.drop).toContain('ALL');
      }
    }
  });
});

// --- who can read what, and whether everything a pod needs exists -------------------------------------------

const kustomization = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
  namespace: string;
  resources: string[];
};
const guide = readFileSync(path.join(repoRoot, 'docs/kubernetes.md'), 'utf8');
/** The guide's shell commands, continuation lines joined. */
const commands = guide
  .replace(/\\\n\s*/g, ' ')
  .split('\n')
  .map((l) => l.trim());
/** `kubectl create secret` lines of the guide: name, keys, namespace and the literal values given. */
const createdSecrets = commands
  .filter((l) => /^kubectl .*create secret /.test(l))
  .map((line) => {
    const [, type, name] = /create secret (\S+) (\S+)/.exec(line) ?? [];
    const keys = [...line.matchAll(/--from-(?:file|literal)=([\w.-]+)=/g)].map((m) => m[1] as string);
    if (type === 'tls') keys.push('tls.crt', 'tls.key');
    const literals = Object.fromEntries(
      [...line.matchAll(/--from-literal=([\w.-]+)=(['"])(.*?)\2/g)].map((m) => [m[1] as string, m[3] as string]),
    );
    const namespace = /(?:-n|--namespace)[ =](\S+)/.exec(line)?.[1];
    return { line, type, name: name as string, keys, literals, namespace };
  });

interface Pod {
  owner: string;
  spec: PodSpec;
}
const pods: Pod[] = [...byKind('Deployment'), ...byKind('Job')].map((d) => ({
  owner: `${d.kind}/${d.metadata.name}`,
  spec: (d as unknown as Deployment).spec?.template.spec as PodSpec,
}));

/** Variables a container gets: its ConfigMaps' data and its literal env values. */
function literalEnv(c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, named<ConfigMap>('ConfigMap', from.configMapRef.name ?? '').data ?? {});
  }
  for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
  return env;
}

/** Every file a container opens: `*_FILE` settings and the CA files its database URL (from a Secret) names. */
function filesRead(c: Container): string[] {
  const files = Object.entries(literalEnv(c))
    .filter(([name, value]) => name.endsWith('_FILE') && value.startsWith('/'))
    .map(([, value]) => value);
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    const url = ref && createdSecrets.find((s) => s.name === ref.name)?.literals[ref.key];
    const ca = url && /[?&]sslrootcert=([^&'"\s]+)/.exec(url)?.[1];
    if (ca) files.push(ca);
  }
  return files;
}

interface Mounted {
  volume: Volume;
  secretName: string | undefined;
  key: string;
  /** As the kubelet leaves it: owner root, group fsGroup (when set), mode. */
  gid: number;
  mode: number;
}

function mountedFile(pod: PodSpec, c: Container, file: string): Mounted | null {
  const mount = (c.volumeMounts ?? [])
    .filter((m) => file.startsWith(`${m.mountPath.replace(/\/$/, '')}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const volume = mount && pod.volumes?.find((v) => v.name === mount.name);
  const source = volume?.secret ?? volume?.configMap;
  if (!mount || !volume || !source) return null;
  const relative = file.slice(mount.mountPath.replace(/\/$/, '').length + 1);
  const item = source.items?.find((i) => i.path === relative);
  if (source.items && !item) return null;
  const fsGroup = pod.securityContext?.fsGroup;
  let mode = item?.mode ?? source.defaultMode ?? 0o644;
  // The kubelet's SetVolumeOwnership on a read-only (Secret, ConfigMap) volume: chgrp fsGroup, chmod +0440.
  if (fsGroup !== undefined) mode |= 0o440;
  return { volume, secretName: volume.secret?.secretName, key: item?.key ?? relative, gid: fsGroup ?? 0, mode };
}

function canRead(pod: PodSpec, c: Container, f: Mounted): boolean {
  const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  const gid = c.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup;
  if (uid === undefined) return false; // the image's user: not something a manifest can be checked against
  const groups = [gid, pod.securityContext?.fsGroup, ...(pod.securityContext?.supplementalGroups ?? [])];
  if (uid === 0) return true;
  if (groups.includes(f.gid) && (f.mode & 0o040) !== 0) return true;
  return (f.mode & 0o004) !== 0; // the owner is root, never a pod's non-root user
}

describe('what each pod reads', () => {
  const cases = pods.flatMap((p) =>
    p.spec.containers.flatMap((c) =>
      filesRead(c).map((file) => [`${p.owner} ${c.name}: ${file}`, p, c, file] as const),
    ),
  );

  it('finds the key files (a check that reads nothing proves nothing)', () => {
    expect(cases.map(([, p]) => p.owner)).toEqual(
      expect.arrayContaining(['Job/coffer-migrate', 'Deployment/coffer-api', 'Deployment/coffer-pgbouncer']),
    );
    expect(cases.length).toBeGreaterThanOrEqual(10);
  });

  it.each(cases)('%s is mounted and readable by the user the pod runs as', (_, pod, c, file) => {
    const mounted = mountedFile(pod.spec, c, file);
    expect(mounted, `${file} is on no Secret or ConfigMap volume`).not.toBeNull();
    const m = mounted as Mounted;
    const who = `uid ${c.securityContext?.runAsUser ?? pod.spec.securityContext?.runAsUser}, fsGroup ${pod.spec.securityContext?.fsGroup}`;
    expect(canRead(pod.spec, c, m), `${file}: root:${m.gid} ${m.mode.toString(8)} is unreadable for ${who}`).toBe(true);
  });

  it('every Secret and key a pod uses is created by the guide, in the namespace the kustomization sets', () => {
    const used = new Set<string>();
    for (const p of pods) {
      for (const c of p.spec.containers) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) used.add(`${ref.name}/${ref.key}`);
        }
        for (const file of filesRead(c)) {
          const m = mountedFile(p.spec, c, file);
          if (m?.secretName) used.add(`${m.secretName}/${m.key}`);
        }
      }
      for (const v of p.spec.volumes ?? []) {
        for (const i of v.secret?.items ?? []) used.add(`${v.secret?.secretName}/${i.key}`);
      }
    }
    const created = new Set(createdSecrets.flatMap((s) => s.keys.map((k) => `${s.name}/${k}`)));
    expect([...used].filter((u) => !created.has(u))).toEqual([]);
    for (const s of createdSecrets) expect(s.namespace, s.line).toBe(kustomization.namespace);
  });

  it('defines the namespace it deploys into', () => {
    expect(byKind('Namespace').map((n) => n.metadata.name)).toEqual([kustomization.namespace]);
    expect(commands).toContain('kubectl apply -f apps/api/deploy/namespace.yaml');
  });

  it('the migration Job gives coffer_app the login PgBouncer and the replicas use', () => {
    const job = named<Job>('Job', 'coffer-migrate').spec?.template.spec?.containers[0];
    const jobRef = job?.env?.find((e) => e.name === 'COFFER_APP_ROLE_PASSWORD')?.valueFrom?.secretKeyRef;
    const bouncer = named<Deployment>('Deployment', 'coffer-pgbouncer').spec?.template.spec?.containers[0];
    const bouncerRef = bouncer?.env?.find((e) => e.name === 'DB_PASSWORD')?.valueFrom?.secretKeyRef;
    expect(jobRef).toBeDefined();
    expect(bouncerRef).toEqual(jobRef);
    const appUrl = createdSecrets.find((s) => s.name === 'coffer-database')?.literals['app-url'] ?? '';
    expect(appUrl).toMatch(/^postgres:\/\/coffer_app:/);
  });

  it("root's bootstrap secret comes from a Kubernetes Secret, so no replica writes it to its /tmp", () => {
    const env = apiDeployment().spec?.template.spec?.containers[0]?.env ?? [];
    const ref = env.find((e) => e.name === 'COFFER_BOOTSTRAP_SECRET')?.valueFrom?.secretKeyRef;
    expect(ref?.name).toBeDefined();
    expect(ref?.optional ?? false).toBe(false);
  });

  it('provides the PgBouncer the NetworkPolicy lets replicas reach, where their URL points', () => {
    const policy = named<NetworkPolicy>('NetworkPolicy', 'coffer-api');
    const rule = policy.spec?.egress?.find((r) =>
      r.to?.some((t) => t.podSelector?.matchLabels && !t.namespaceSelector),
    );
    const selector = rule?.to?.[0]?.podSelector?.matchLabels ?? {};
    const port = rule?.ports?.[0]?.port;
    const target = byKind('Deployment')
      .map((d) => d as unknown as Deployment)
      .find((d) => Object.entries(selector).every(([k, v]) => d.spec?.template.metadata?.labels?.[k] === v));
    expect(target?.metadata?.name).toBe('coffer-pgbouncer');
    expect(target?.spec?.template.spec?.containers[0]?.ports?.map((p) => p.containerPort)).toContain(port);
    const appUrl = new URL(createdSecrets.find((s) => s.name === 'coffer-database')?.literals['app-url'] ?? '');
    const service = named<Service>('Service', appUrl.hostname);
    expect(service.spec?.ports?.map((p) => p.port)).toContain(Number(appUrl.port));
    expect(
      Object.entries(service.spec?.selector ?? {}).every(
        ([k, v]) => target?.spec?.template.metadata?.labels?.[k] === v,
      ),
    ).toBe(true);
  });

  it('every database connection uses verified TLS', () => {
    const database = createdSecrets.find((s) => s.name === 'coffer-database');
    for (const key of ['owner-url', 'app-url']) {
      expect(database?.literals[key], key).toMatch(/[?&]sslmode=verify-full(&|$)/);
      expect(database?.literals[key], key).toMatch(/[?&]sslrootcert=\//);
    }
    const bouncer = named<ConfigMap>('ConfigMap', 'coffer-pgbouncer').data ?? {};
    expect(bouncer.SERVER_TLS_SSLMODE).toBe('verify-full');
    expect(bouncer.CLIENT_TLS_SSLMODE).toBe('require');
  });

  it('says how to build and push the image the manifests run', () => {
    expect(commands.some((l) => l.startsWith('docker build -f apps/api/Dockerfile'))).toBe(true);
    expect(commands.some((l) => l.startsWith('docker push '))).toBe(true);
  });
});

describe('overlays', () => {
  const overlays = readdirSync(path.join(dir, 'overlays'));
  it.each(overlays)('%s points at the base and at names that exist in it', (overlay) => {
    const k = parse(readFileSync(path.join(dir, 'overlays', overlay, 'kustomization.yaml'), 'utf8')) as {
      resources: string[];
      images?: { name: string }[];
      replicas?: { name: string }[];
      patches?: { target: { kind: string; name: string } }[];
    };
    expect(k.resources.map((r) => path.resolve(dir, 'overlays', overlay, r))).toContain(dir);
    const images = pods.flatMap((p) => p.spec.containers.map((c) => (c.image ?? '').split(':')[0]));
    for (const i of k.images ?? []) expect(images).toContain(i.name);
    for (const r of k.replicas ?? []) expect(docs.map((d) => d.metadata.name)).toContain(r.name);
    for (const p of k.patches ?? []) expect(() => named(p.target.kind, p.target.name)).not.toThrow();
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { environment?: Record<string, string>; secrets?: string[] }>;
  };
  const urls = Object.entries(compose.services).flatMap(([service, s]) =>
    Object.entries(s.environment ?? {})
      .filter(([, v]) => typeof v === 'string' && v.startsWith('postgres://'))
      .map(([name, url]) => [`${service} ${name}`, s, url] as const),
  );

  it('has database URLs to check', () => expect(urls.length).toBeGreaterThanOrEqual(3));

  it.each(urls)('%s verifies the server over TLS, with a CA the service mounts', (_, service, url) => {
    expect(url).toMatch(/[?&]sslmode=verify-full(&|$)/);
    const ca = /[?&]sslrootcert=\/run\/secrets\/([\w-]+)/.exec(url)?.[1];
    expect(service.secrets ?? []).toContain(ca);
  });
});
