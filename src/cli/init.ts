import { parseArgs } from 'node:util';
import { profileYaml } from '../providers/manifests.ts';
import { findProfile, PROVIDER_PROFILES } from '../providers/profiles.ts';

export const INIT_USAGE = `Usage: plugboard init <provider> [--name N] [--namespace NS]
       plugboard init --list

Prints a ready-to-edit manifest set for a provider: the ProviderConnection, a Secret template when the provider
takes a key, and a ModelAllowlist when its models are not discovered.

  --name N         The connection's name (default: the provider's id)
  --namespace NS   The manifests' namespace (default: none, so kubectl's current one)
  --list           List the providers init knows, with their base URLs`;

export function runInit(args: string[]): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      list: { type: 'boolean' },
      name: { type: 'string' },
      namespace: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(INIT_USAGE);
    return 0;
  }
  if (values.list) {
    const width = Math.max(...PROVIDER_PROFILES.map((p) => p.id.length));
    for (const p of PROVIDER_PROFILES) console.log(`${p.id.padEnd(width)}  ${p.displayName}  ${p.url}`);
    return 0;
  }
  const id = positionals[0];
  const profile = id ? findProfile(id) : undefined;
  if (!profile) {
    console.error(
      `${id ? `unknown provider ${JSON.stringify(id)}` : 'name a provider'}; one of: ${PROVIDER_PROFILES.map((p) => p.id).join(', ')}`,
    );
    return 2;
  }
  process.stdout.write(profileYaml(profile, { name: values.name, namespace: values.namespace }));
  return 0;
}
