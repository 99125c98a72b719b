import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../src/api/common.ts';
import { exampleFiles, invalidFixtures } from '../support/fixtures.ts';
import { createNamespace, kubeRaw, testKubeConfig } from '../support/kube.ts';

const PLURAL: Record<string, string> = {
  ProviderConnection: 'providerconnections',
  ModelAllowlist: 'modelallowlists',
};

let kc: KubeConfig;
let ns: string;
let custom: CustomObjectsApi;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createNamespace(kc, 'api');
  custom = kc.makeApiClient(CustomObjectsApi);
});

async function create(obj: Record<string, unknown>, namespace = ns) {
  if (obj.kind === 'Secret') {
    return kc.makeApiClient(CoreV1Api).createNamespacedSecret({ namespace, body: obj as never });
  }
  return custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL[obj.kind as string] as string,
    body: obj,
  });
}

/** The API server's message for a rejected object (ApiException keeps the body as a string). */
async function rejection(obj: Record<string, unknown>): Promise<{ code: number; message: string }> {
  try {
    await create(obj);
  } catch (err) {
    const e = err as { code: number; body: string };
    return { code: e.code, message: (JSON.parse(e.body) as { message: string }).message };
  }
  throw new Error(`the API server accepted ${JSON.stringify(obj)}`);
}

describe('the API server rejects bad resources with a message a person understands', () => {
  for (const f of invalidFixtures()) {
    it(f.name, async () => {
      const { code, message } = await rejection(f.object);
      expect(code).toBe(422);
      expect(message).toContain(f.expectApi);
    });
  }
});

describe('the example for every provider is accepted by the API server', () => {
  for (const { name, docs } of exampleFiles()) {
    it(name, async () => {
      const exampleNs = await createNamespace(kc, `ex-${name}`.slice(0, 40));
      for (const doc of docs) await create(doc, exampleNs);
      const conn = (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: exampleNs,
        plural: 'providerconnections',
        name,
      })) as { spec: Record<string, unknown> };
      // Defaults are applied by the API server, so `kubectl get -o yaml` shows the effective settings.
      expect(conn.spec).toMatchObject({
        enabled: true,
        verification: { interval: '5m', timeout: '10s' },
        timeouts: { connect: '10s', firstByte: '5m', idle: '5m', total: '1h' },
      });
    });
  }
});

describe('kubectl get pconn', () => {
  it('shows provider, URL, Ready, model count and age; status is a subresource', async () => {
    await create({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ProviderConnection',
      metadata: { name: 'table' },
      spec: { url: 'https://api.deepseek.com/v1' },
    });
    const status = {
      observedGeneration: 1,
      exposedModelCount: 2,
      models: ['deepseek-chat', 'deepseek-reasoner'],
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Verified',
          message: '2 models exposed',
          observedGeneration: 1,
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        },
      ],
    };
    const patched = await kubeRaw(
      kc,
      'PATCH',
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/providerconnections/table/status`,
      {
        body: { status },
        headers: { 'content-type': 'application/merge-patch+json' },
      },
    );
    expect(patched.status).toBe(200);

    // A status written through the main resource is ignored: only the operator's status writes count.
    const viaMain = await kubeRaw(
      kc,
      'PATCH',
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/providerconnections/table`,
      {
        body: { status: { exposedModelCount: 99 } },
        headers: { 'content-type': 'application/merge-patch+json' },
      },
    );
    expect((viaMain.body as { status: { exposedModelCount: number } }).status.exposedModelCount).toBe(2);

    const table = await kubeRaw(
      kc,
      'GET',
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/providerconnections/table`,
      {
        headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
      },
    );
    const body = table.body as {
      columnDefinitions: { name: string; priority: number }[];
      rows: { cells: unknown[] }[];
    };
    const columns = body.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name);
    expect(columns).toEqual(['Name', 'Provider', 'URL', 'Ready', 'Reason', 'Models', 'Age']);
    const cells = body.rows[0]?.cells ?? [];
    const byName = Object.fromEntries(body.columnDefinitions.map((c, i) => [c.name, cells[i]]));
    expect(byName).toMatchObject({
      Name: 'table',
      Provider: 'OpenAI',
      URL: 'https://api.deepseek.com/v1',
      Ready: 'True',
      Reason: 'Verified',
      Models: 2,
    });
    expect(byName.Age).toMatch(/^\d+s$/);
  });

  it('short names and the plugboard category resolve like kubectl would', async () => {
    const res = await kubeRaw(kc, 'GET', `/apis/${GROUP}/${VERSION}`);
    const resources = (
      res.body as { resources: { name: string; shortNames?: string[]; categories?: string[] }[] }
    ).resources;
    const top = resources.filter((r) => !r.name.includes('/'));
    expect(top.map((r) => [r.name, r.shortNames, r.categories])).toEqual(
      expect.arrayContaining([
        ['providerconnections', ['pconn'], ['plugboard']],
        ['modelallowlists', ['mallow'], ['plugboard']],
      ]),
    );
  });
});
