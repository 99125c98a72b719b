import { stringify } from 'yaml';
import { API_VERSION } from '../api/common.ts';
import type { ProviderProfile } from './profiles.ts';

export interface ManifestOptions {
  name?: string;
  namespace?: string;
}

type Manifest = Record<string, unknown>;

/** The manifest set an admin starts from for one provider: Secret template, connection, allowlist if needed. */
export function profileManifests(p: ProviderProfile, opts: ManifestOptions = {}): Manifest[] {
  const name = opts.name ?? p.id;
  const meta = (n: string) => ({ name: n, ...(opts.namespace ? { namespace: opts.namespace } : {}) });
  const secretName = `${name}-api-key`;
  const out: Manifest[] = [];
  if (p.apiKey !== 'none') {
    out.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(secretName),
      type: 'Opaque',
      stringData: { apiKey: 'REPLACE_ME' },
    });
  }
  out.push({
    apiVersion: API_VERSION,
    kind: 'ProviderConnection',
    metadata: meta(name),
    spec: {
      ...(p.provider !== 'OpenAI' ? { provider: p.provider } : {}),
      url: p.url,
      ...(p.apiKey !== 'none' ? { apiKeySecretRef: { name: secretName } } : {}),
      ...(p.keyless?.spec ?? {}),
      ...(p.azureApiVersion ? { azure: { apiVersion: p.azureApiVersion } } : {}),
      ...(p.headers ? { headers: p.headers } : {}),
      ...(p.dropParams ? { dropParams: p.dropParams } : {}),
      tags: [p.kind],
    },
  });
  if (p.allowlist !== 'discovered') {
    out.push({
      apiVersion: API_VERSION,
      kind: 'ModelAllowlist',
      metadata: meta(name),
      spec: { connectionRef: { name }, models: p.models },
    });
  }
  return out;
}

/** Multi-document YAML with a comment that says what to edit. */
export function profileYaml(p: ProviderProfile, opts: ManifestOptions = {}): string {
  const lines = [
    `# ${p.displayName}: ${p.notes}`,
    p.keyless
      ? `# ${p.keyless.hint}`
      : p.apiKey === 'none'
        ? '# No API key needed.'
        : `# Put ${p.keyHint} in the Secret (API key ${p.apiKey}); never commit a real key.`,
    p.allowlist === 'required'
      ? `# The ModelAllowlist is required: this provider cannot list its models. Edit it to the models you use.`
      : p.allowlist === 'recommended'
        ? '# The ModelAllowlist is recommended: this provider lists thousands of models.'
        : `# Models are discovered; add a ModelAllowlist to expose only some (e.g. ${p.models.join(', ')}).`,
  ];
  const docs = profileManifests(p, opts).map((m) => stringify(m, { lineWidth: 0 }));
  return `${lines.join('\n')}\n${docs.join('---\n')}`;
}
