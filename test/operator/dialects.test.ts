import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROVIDER_TYPES } from '../../src/api/provider-connection.ts';
import { credentialHeaders, dialect } from '../../src/providers/dialects.ts';

const SRC = join(import.meta.dirname, '..', '..', 'src');

describe('dialect records', () => {
  it('send the key as each provider reads it, and no credential header without a key', () => {
    expect(credentialHeaders('OpenAI', 'k', 'models')).toEqual({ authorization: 'Bearer k' });
    expect(credentialHeaders('OpenAI', 'k', 'inference')).toEqual({ authorization: 'Bearer k' });
    expect(credentialHeaders('AzureOpenAI', 'k', 'inference')).toEqual({ 'api-key': 'k' });
    expect(credentialHeaders('Anthropic', 'k', 'models')).toEqual({
      'x-api-key': 'k',
      'anthropic-version': '2023-06-01',
    });
    expect(credentialHeaders('Anthropic', 'k', 'inference')).toEqual({
      authorization: 'Bearer k',
      'x-api-key': 'k',
      'anthropic-version': '2023-06-01',
    });
    for (const p of PROVIDER_TYPES) {
      const headers = Object.keys(credentialHeaders(p, undefined, 'inference'));
      expect(
        headers.filter((h) => h !== 'anthropic-version'),
        p,
      ).toEqual([]);
    }
  });

  it('send an access token (entraID, googleCloud) as Authorization: Bearer, on Azure too, never as api-key', () => {
    expect(credentialHeaders('AzureOpenAI', 't', 'models', 'accessToken')).toEqual({
      authorization: 'Bearer t',
    });
    expect(credentialHeaders('AzureOpenAI', 't', 'inference', 'accessToken')).toEqual({
      authorization: 'Bearer t',
    });
    expect(credentialHeaders('OpenAI', 't', 'inference', 'accessToken')).toEqual({
      authorization: 'Bearer t',
    });
    expect(credentialHeaders('AzureOpenAI', undefined, 'inference', 'accessToken')).toEqual({});
  });

  it('say where model IDs are deployments the model list does not show (Azure only)', () => {
    expect(PROVIDER_TYPES.filter((p) => dialect(p).deployments)).toEqual(['AzureOpenAI']);
  });

  it('are the only place that compares provider names: no other module branches on one', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
      );
    const names = PROVIDER_TYPES.join('|');
    const branch = new RegExp(`(===|!==|case)\\s*'(${names})'|'(${names})'\\s*(===|!==)`);
    // src/api holds the schema's own rule that `azure` goes with AzureOpenAI; the simulated upstreams are not
    // production code.
    const allowed = ['providers/', 'api/', 'mock-provider/'];
    const offenders = files(SRC)
      .filter((f) => !allowed.some((a) => relative(SRC, f).startsWith(a)))
      .filter((f) => branch.test(readFileSync(f, 'utf8')))
      .map((f) => relative(SRC, f));
    expect(offenders).toEqual([]);
  });
});
