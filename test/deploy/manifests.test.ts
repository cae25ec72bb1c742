import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { repoRoot } from '../support/build.ts';

const dir = path.join(repoRoot, 'apps/api/deploy');
type Doc = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };
const docs: Doc[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((f) => parseAllDocuments(readFileSync(path.join(dir, f), 'utf8')).map((d) => d.toJSON() as Doc));
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
};

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
    const [deployment] = byKind('Deployment') as unknown as Deployment[];
    const c = deployment?.spec?.template.spec?.containers[0];
    expect(c?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', scheme: 'HTTPS' });
    expect(c?.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', scheme: 'HTTPS' });
  });

  it('mounts the keyring from a Secret file and never carries a key or the owner URL in a replica', () => {
    const [deployment] = byKind('Deployment') as unknown as Deployment[];
    const spec = deployment?.spec?.template.spec;
    const keys = spec?.volumes?.find((v) => v.name === 'keys');
    expect(keys?.secret?.secretName).toBe('coffer-keys');
    const env = spec?.containers[0]?.env ?? [];
    expect(env.map((e) => e.name)).not.toContain('DATABASE_URL');
    expect(env.every((e) => e.value === undefined)).toBe(true);
    const [config] = byKind('ConfigMap') as unknown as ConfigMap[];
    expect(config?.data?.COFFER_MASTER_KEYS_FILE).toMatch(/^\/etc\/coffer\/keys\//);
    expect(
      Object.keys(config?.data ?? {}).some((k) => /^COFFER_(MASTER_KEYS|JWT_PRIVATE_KEY|BOOTSTRAP_SECRET)$/.test(k)),
    ).toBe(false);
  });

  it('configures only variables Coffer knows', () => {
    const names = [
      ...Object.keys((byKind('ConfigMap')[0] as unknown as ConfigMap).data ?? {}),
      ...byKind('Deployment').flatMap((d) =>
        ((d as unknown as Deployment).spec?.template.spec?.containers[0]?.env ?? []).map((e) => e.name),
      ),
      ...byKind('Job').flatMap((d) =>
        ((d as unknown as Job).spec?.template.spec?.containers[0]?.env ?? []).map((e) => e.name),
      ),
    ];
    expect(names.filter((n) => !knownVariables.has(n))).toEqual([]);
  });

  it('points the Service, the PodDisruptionBudget and the autoscaler at the Deployment', () => {
    const [deployment] = byKind('Deployment') as unknown as Deployment[];
    const labels = deployment?.spec?.template.metadata?.labels ?? {};
    const matches = (selector: Record<string, string> | undefined) =>
      Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v) && Object.keys(selector ?? {}).length > 0;
    expect(matches((byKind('Service')[0] as unknown as Service).spec?.selector)).toBe(true);
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
