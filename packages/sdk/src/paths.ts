import { SecretKind, SecretName, SecretOwner } from '@coffer/contracts';
import { CofferError } from './errors.ts';

export type SecretPath = {
  kind: SecretKind;
  owner: string;
  name: string;
};

export type OwnerPath = {
  kind: SecretKind;
  owner: string;
};

const invalid = (message: string) => new CofferError('validation_failed', message, 0, null);

/** `sandbox/sbx-42/DB_URL` → `{kind, owner, name}`; throws CofferError(validation_failed) naming what is wrong. */
export function parseSecretPath(path: string | SecretPath): SecretPath {
  if (typeof path !== 'string') return path;
  const parts = path.split('/');
  if (parts.length !== 3)
    throw invalid(`"${path}" is not a secret path: expected kind/owner/name, e.g. sandbox/sbx-42/DB_URL`);
  const [kind, owner, name] = parts as [string, string, string];
  checkKind(kind, path);
  if (!SecretOwner.safeParse(owner).success)
    throw invalid(`"${path}": the owner "${owner}" is not valid (1-128 letters, digits, _ . -)`);
  if (!SecretName.safeParse(name).success)
    throw invalid(
      `"${path}": the name "${name}" is not valid (1-128 letters, digits, _ . - starting with a letter or _)`,
    );
  return { kind: kind as SecretKind, owner, name };
}

/** `sandbox/sbx-42` → `{kind, owner}`. */
export function parseOwnerPath(path: string | OwnerPath): OwnerPath {
  if (typeof path !== 'string') return path;
  const parts = path.split('/');
  if (parts.length !== 2) throw invalid(`"${path}" is not a bundle: expected kind/owner, e.g. sandbox/sbx-42`);
  const [kind, owner] = parts as [string, string];
  checkKind(kind, path);
  if (!SecretOwner.safeParse(owner).success)
    throw invalid(`"${path}": the owner "${owner}" is not valid (1-128 letters, digits, _ . -)`);
  return { kind: kind as SecretKind, owner };
}

export const formatSecretPath = (p: SecretPath): string => `${p.kind}/${p.owner}/${p.name}`;

function checkKind(kind: string, path: string): void {
  if (!SecretKind.safeParse(kind).success)
    throw invalid(`"${path}": the kind must be one of ${SecretKind.options.join(', ')}, not "${kind}"`);
}
