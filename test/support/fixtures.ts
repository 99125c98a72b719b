import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');

export interface InvalidFixture {
  name: string;
  object: Record<string, unknown>;
  /** Substring of the API server's error. */
  expectApi: string;
  /** Substring of the offline (zod) error. */
  expectZod: string;
}

/** One YAML file per validation rule, with the errors expected from the API server and from zod. */
export function invalidFixtures(): InvalidFixture[] {
  const dir = join(ROOT, 'test', 'fixtures', 'invalid');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => {
      const text = readFileSync(join(dir, f), 'utf8');
      const header = (key: string) => text.match(new RegExp(`^# ${key}: (.*)$`, 'm'))?.[1];
      const both = header('expect');
      const expectApi = header('expect-api') ?? both;
      const expectZod = header('expect-zod') ?? both;
      if (!expectApi || !expectZod)
        throw new Error(`${f}: needs '# expect:' or '# expect-api:' and '# expect-zod:'`);
      return {
        name: f.replace(/\.yaml$/, ''),
        object: loadYaml(text)[0] as Record<string, unknown>,
        expectApi,
        expectZod,
      };
    });
}

export function loadYaml(text: string): Record<string, unknown>[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as Record<string, unknown> | null)
    .filter((d): d is Record<string, unknown> => d !== null);
}

export function exampleFiles(): { name: string; docs: Record<string, unknown>[] }[] {
  const dir = join(ROOT, 'examples', 'providers');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ name: f.replace(/\.yaml$/, ''), docs: loadYaml(readFileSync(join(dir, f), 'utf8')) }));
}
