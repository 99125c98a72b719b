import { parseArgs } from 'node:util';
import { crdsYaml } from '../api/crds.ts';

export const CRDS_USAGE = `Usage: plugboard crds

Prints the CustomResourceDefinitions of ProviderConnection and ModelAllowlist as one multi-document YAML
stream, for 'plugboard crds | kubectl apply -f -'.`;

export function runCrds(args: string[]): number {
  const { values } = parseArgs({ args, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(CRDS_USAGE);
    return 0;
  }
  process.stdout.write(crdsYaml());
  return 0;
}
