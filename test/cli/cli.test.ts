import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crdsYaml } from '../../src/api/crds.ts';
import { parseResource } from '../../src/api/validate.ts';
import { loadYaml } from '../support/fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'plugboard.js');

function plugboard(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
}

describe('plugboard CLI', () => {
  it('`crds` prints the CRDs as a multi-document YAML stream', () => {
    const res = plugboard('crds');
    expect(res.status).toBe(0);
    expect(res.stdout).toBe(crdsYaml());
    expect(loadYaml(res.stdout).map((d) => (d.metadata as { name: string }).name)).toEqual([
      'providerconnections.plugboard.dev',
      'modelallowlists.plugboard.dev',
    ]);
  });

  it('`init --list` names every provider', () => {
    const res = plugboard('init', '--list');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^perplexity\s+Perplexity\s+https:\/\/api\.perplexity\.ai$/m);
  });

  it('`init` prints a valid manifest set with the requested name and namespace', () => {
    const res = plugboard('init', 'azure-openai', '--name', 'azure-prod', '--namespace', 'ai');
    expect(res.status).toBe(0);
    const docs = loadYaml(res.stdout);
    expect(docs.map((d) => d.kind)).toEqual(['Secret', 'ProviderConnection', 'ModelAllowlist']);
    for (const d of docs) expect((d.metadata as { namespace: string }).namespace).toBe('ai');
    const conn = parseResource(docs[1]);
    expect(conn.ok && conn.kind === 'ProviderConnection' && conn.value.spec.azure?.apiVersion).toBe(
      '2024-10-21',
    );
  });

  it('`init vertex-ai` prints a keyless connection: workload identity federation, no Secret', () => {
    const res = plugboard('init', 'vertex-ai', '--namespace', 'ai');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain('docs/credentials.md');
    const docs = loadYaml(res.stdout);
    expect(docs.map((d) => d.kind)).toEqual(['ProviderConnection', 'ModelAllowlist']);
    const conn = parseResource(docs[0]);
    expect(conn.ok ? [] : conn.errors).toEqual([]);
    if (!conn.ok || conn.kind !== 'ProviderConnection') throw new Error('not a ProviderConnection');
    expect(conn.value.spec.apiKeySecretRef).toBeUndefined();
    expect(conn.value.spec.googleCloud?.workloadIdentityFederation?.serviceAccountName).toBe(
      'plugboard-vertex',
    );
    expect(conn.value.spec.url).toMatch(
      /^https:\/\/us-central1-aiplatform\.googleapis\.com\/v1\/.*\/endpoints\/openapi$/,
    );
  });

  it('an unknown command or provider exits 2 with a helpful message', () => {
    expect(plugboard('frobnicate').status).toBe(2);
    const res = plugboard('init', 'nosuch');
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('one of: openai, anthropic');
  });

  it('refuses to run on Node older than 24, saying why', () => {
    const old = spawnSync('/usr/bin/node', [BIN, 'help'], { encoding: 'utf8' });
    if (old.error) throw new Error(`this check needs the system Node at /usr/bin/node: ${old.error.message}`);
    const major = Number(
      spawnSync('/usr/bin/node', ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.split('.')[0],
    );
    if (major >= 24) {
      expect(old.status).toBe(0);
    } else {
      expect(old.status).toBe(1);
      expect(old.stderr).toContain('plugboard needs Node.js 24 or newer');
    }
  });
});
