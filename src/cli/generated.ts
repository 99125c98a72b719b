import { crdFiles } from '../api/crds.ts';
import { referenceMarkdown } from '../api/reference.ts';
import { profileYaml } from '../providers/manifests.ts';
import { PROVIDER_PROFILES } from '../providers/profiles.ts';

/**
 * Files derived from the source, keyed by repository path: the CRDs (also in the Helm chart), one example per
 * provider and the API reference.
 */
export function generatedFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, content] of crdFiles()) {
    files.set(`crds/${name}`, content);
    files.set(`charts/plugboard/crds/${name}`, content);
  }
  for (const p of PROVIDER_PROFILES) files.set(`examples/providers/${p.id}.yaml`, profileYaml(p));
  files.set('docs/reference.md', referenceMarkdown());
  return files;
}
