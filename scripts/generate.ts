// Regenerates every file derived from src/: the CRDs (also the chart's), the per-provider examples, docs/reference.md.
// `npm run generate` writes them; the test suite fails when the committed copies drift.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatedFiles } from '../src/cli/generated.ts';

const root = join(import.meta.dirname, '..');
for (const dir of ['crds', 'charts/plugboard/crds', 'examples/providers']) {
  mkdirSync(join(root, dir), { recursive: true });
  for (const f of readdirSync(join(root, dir))) rmSync(join(root, dir, f));
}
for (const [path, content] of generatedFiles()) writeFileSync(join(root, path), content);
console.log(`wrote ${generatedFiles().size} files`);
