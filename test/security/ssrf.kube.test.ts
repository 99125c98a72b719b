import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../src/api/common.ts';
import { customResourceDefinitions } from '../../src/api/crds.ts';
import { ProviderConnectionSpec } from '../../src/api/provider-connection.ts';
import { createNamespace, kubeRaw, testKubeConfig } from '../support/kube.ts';
import { propertyRun } from '../support/property.ts';
import { spelling } from './address-spellings.ts';
import { ADMITTED, HOSTILE } from './ssrf-corpus.ts';

/**
 * The real API server's CEL rules on spec.url against the attacker's corpus and generated spellings: it refuses
 * what zod refuses, with the same messages, and admits what zod admits.
 */
let kc: KubeConfig;
let ns: string;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createNamespace(kc, 'ssrf');
});

/** Every message the CRD's rules on spec.url can give. */
const URL_MESSAGES: string[] = (() => {
  type Schema = { properties: Record<string, Schema>; 'x-kubernetes-validations'?: { message: string }[] };
  const crd = customResourceDefinitions()[0] as {
    spec: { versions: { schema: { openAPIV3Schema: Schema } }[] };
  };
  const url = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec?.properties.url;
  return (url?.['x-kubernetes-validations'] ?? []).map((v) => v.message);
})();

/** A dry-run create: nothing is stored, every admission rule runs. */
async function admit(url: string): Promise<{ status: number; messages: string[]; text: string }> {
  const res = await kubeRaw(
    kc,
    'POST',
    `/apis/${GROUP}/${VERSION}/namespaces/${ns}/providerconnections?dryRun=All`,
    {
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'ProviderConnection',
        metadata: { name: `u-${randomBytes(4).toString('hex')}` },
        spec: { url },
      },
    },
  );
  const text = (res.body as { message?: string }).message ?? JSON.stringify(res.body);
  return { status: res.status, messages: URL_MESSAGES.filter((m) => text.includes(m)), text };
}

function zodMessages(url: string): string[] {
  const parsed = ProviderConnectionSpec.safeParse({ url });
  return parsed.success ? [] : URL_MESSAGES.filter((m) => parsed.error.issues.some((i) => i.message === m));
}

describe('the API server refuses every hostile URL admission covers, with the words zod uses', () => {
  it('knows the messages of every rule on spec.url', () => {
    expect(URL_MESSAGES).toHaveLength(12);
  });

  for (const h of HOSTILE.filter((x) => x.zod)) {
    it(`${h.why}: ${JSON.stringify(h.url)}`, async () => {
      const res = await admit(h.url);
      expect(res.status, res.text).toBe(422);
      expect(res.text).toContain(h.zod);
      expect(res.messages).toEqual(zodMessages(h.url));
    });
  }

  it('admits private and public addresses in every wrapping, names and loopback', async () => {
    for (const url of ADMITTED) {
      const res = await admit(url);
      expect(res.status, `${url}: ${res.text}`).toBe(201);
    }
  });
});

describe('generated spellings: the API server and zod agree', () => {
  it('same verdict and messages', async () => {
    await fc.assert(
      fc.asyncProperty(spelling, async (s) => {
        const res = await admit(s.url);
        const zod = zodMessages(s.url);
        expect(res.messages, `${s.how}: ${s.url}\n${res.text}`).toEqual(zod);
        expect(res.status, `${s.how}: ${s.url}`).toBe(zod.length ? 422 : 201);
      }),
      propertyRun('API server and zod on generated spellings', 400),
    );
  }, 120_000);
});
