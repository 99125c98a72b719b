import { credentialSecretRef } from '../api/credentials.ts';
import type { ProviderConnectionSpec } from '../api/provider-connection.ts';
import type { SecretState } from '../operator/logic/connection-status.ts';
import type { Loaded, SecretManifest } from './manifests.ts';

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Names of the environment variables a Secret value refers to as `${NAME}`. */
export function envReferences(value: string): string[] {
  return [...value.matchAll(ENV_REF)].map((m) => m[1] as string);
}

/**
 * The Secret value a connection's credential names (its API key, an Entra ID client secret or a Google service
 * account key JSON) from Secret manifests, the way the operator reads it from the cluster: the Secret named by
 * credentialSecretRef in the connection's own namespace, `stringData` over `data` (base64), trimmed. A
 * value may refer to environment variables (`apiKey: ${OPENAI_API_KEY}`) so keys stay out of files; an unset
 * or empty variable reports the key as missing, naming the variable (never a value).
 */
export function resolveSecretFromManifests(
  namespace: string,
  spec: ProviderConnectionSpec,
  secrets: Loaded<SecretManifest>[],
  env: NodeJS.ProcessEnv = process.env,
): SecretState {
  const ref = credentialSecretRef(spec);
  if (!ref) return { kind: 'none' };
  const secret = secrets.find((s) => s.namespace === namespace && s.name === ref.name)?.value;
  if (!secret) return { kind: 'notFound', secretName: ref.name };
  const plain = secret.stringData?.[ref.key];
  const encoded = secret.data?.[ref.key];
  const raw = plain ?? (encoded !== undefined ? Buffer.from(encoded, 'base64').toString('utf8') : undefined);
  if (raw === undefined) return { kind: 'keyMissing', secretName: ref.name, key: ref.key };
  const unset = envReferences(raw).filter((name) => !env[name]);
  if (unset.length > 0) {
    const names = [...new Set(unset)].join(', ');
    return {
      kind: 'keyMissing',
      secretName: ref.name,
      key: ref.key,
      message: `Secret "${ref.name}" key "${ref.key}" refers to the environment variable ${names}, which is not set; export it before starting plugboard (e.g. export ${unset[0]}=...)`,
    };
  }
  const value = raw.replace(ENV_REF, (_m, name: string) => env[name] ?? '').trim();
  return { kind: 'resolved', value, version: '' };
}
