import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { customResourceDefinitions } from '../../src/api/crds.ts';
import { generatedFiles } from '../../src/cli/generated.ts';

const ROOT = join(import.meta.dirname, '..', '..');

describe('generated files', () => {
  it('crds/ and examples/providers/ match the source (run `npm run generate` after changing src/api or src/providers)', () => {
    const files = generatedFiles();
    for (const dir of ['crds', 'examples/providers']) {
      const onDisk = readdirSync(join(ROOT, dir)).map((f) => `${dir}/${f}`);
      const expected = [...files.keys()].filter((k) => k.startsWith(`${dir}/`));
      expect(onDisk.sort(), `${dir}: stale or extra files`).toEqual(expected.sort());
    }
    for (const [path, content] of files) {
      expect(readFileSync(join(ROOT, path), 'utf8'), `${path} is stale`).toBe(content);
    }
  });
});

type Node = Record<string, unknown>;

function walk(node: Node, path: string, visit: (n: Node, path: string) => void) {
  visit(node, path);
  for (const [k, v] of Object.entries((node.properties as Record<string, Node>) ?? {}))
    walk(v, `${path}.${k}`, visit);
  if (node.items) walk(node.items as Node, `${path}[]`, visit);
  if (node.additionalProperties && typeof node.additionalProperties === 'object') {
    walk(node.additionalProperties as Node, `${path}{}`, visit);
  }
}

describe('CRD schemas are structural', () => {
  for (const crd of customResourceDefinitions()) {
    const version = (crd.spec as { versions: Node[] }).versions[0] as Node;
    const root = (version.schema as Node).openAPIV3Schema as Node;
    const name = (crd.metadata as { name: string }).name;

    it(`${name}: every node has a type and uses only what Kubernetes allows`, () => {
      const problems: string[] = [];
      walk(root, '', (n, path) => {
        if (!n.type) problems.push(`${path}: no type`);
        for (const bad of ['$ref', '$schema', 'anyOf', 'oneOf', 'allOf', 'propertyNames', 'const']) {
          if (bad in n) problems.push(`${path}: ${bad}`);
        }
        if (n.additionalProperties === false) problems.push(`${path}: additionalProperties false`);
      });
      expect(problems).toEqual([]);
    });

    it(`${name}: has a status subresource, short name and the plugboard category`, () => {
      expect(version.subresources).toEqual({ status: {} });
      const names = (crd.spec as { names: Node }).names;
      expect(names.categories).toEqual(['plugboard']);
      expect((names.shortNames as string[]).length).toBe(1);
    });
  }
});
