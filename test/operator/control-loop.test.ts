import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManifestStore } from '../../src/cli/local-adapters.ts';
import { loadManifests } from '../../src/cli/manifests.ts';
import { ControlLoop } from '../../src/operator/control-loop.ts';
import { OperatorMetrics } from '../../src/operator/metrics.ts';
import type { ObjectEvent } from '../../src/operator/ports.ts';
import type { VerifyTarget } from '../../src/operator/verification/verify.ts';
import type { SnapshotConnection } from '../../src/snapshot/schema.ts';

/**
 * The control loop on standalone's file adapters, in process: what a change reconciles, who writes which
 * status, and which Events it records. The same loop runs in the operator on the API server's adapters.
 */
describe('the control loop on manifest files', () => {
  let dir: string;
  const log = pino({ level: 'silent' });
  const verified: VerifyTarget[] = [];
  const reconciled: string[] = [];
  const events: ObjectEvent[] = [];
  const snapshot = new Map<string, SnapshotConnection>();
  const store = new ManifestStore({});
  const loop = new ControlLoop({
    objects: store,
    secrets: store,
    status: store,
    events: {
      record: async (e) => {
        events.push(e);
      },
    },
    snapshot,
    metrics: new OperatorMetrics({ defaultMetrics: false }),
    log,
    verify: async (t) => {
      verified.push(t);
      return {
        ok: true,
        reason: 'Verified',
        message: 'listed 3 models',
        models: [{ id: 'a' }, { id: 'b' }, { id: 'c' }],
        durationMs: 1,
      };
    },
    onReconciled: (controller, key) => reconciled.push(`${controller} ${key}`),
  });

  const write = (docs: string[]) => writeFileSync(join(dir, 'all.yaml'), docs.join('\n---\n'));
  const apply = async (docs: string[]) => {
    write(docs);
    const set = await loadManifests([dir]);
    expect(set.errors).toEqual([]);
    reconciled.length = 0;
    verified.length = 0;
    events.length = 0;
    store.apply(set, loop);
    await loop.idle();
  };
  const secret = (key: string) =>
    `apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {apiKey: ${key}}`;
  const conn = (name: string, extra = '') =>
    `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: ${name}}\nspec: {url: 'http://127.0.0.1:1/${name}'${extra}}`;
  const list = (models: string) =>
    `apiVersion: plugboard.dev/v1alpha1\nkind: ModelAllowlist\nmetadata: {name: l1}\nspec: {connectionRef: {name: c1}, models: ${models}}`;
  const keyed = ', apiKeySecretRef: {name: s}';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'plugboard-loop-'));
    loop.start();
  });
  afterAll(async () => {
    await loop.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reconciles every object once, the allowlist after its connection, and records each transition', async () => {
    await apply([secret('k1'), conn('c1', keyed), conn('c2'), list('[a, x]')]);
    expect(reconciled.sort()).toEqual([
      'modelallowlist default/l1',
      'providerconnection default/c1',
      'providerconnection default/c2',
    ]);
    expect(store.allowlist('default/l1')?.status).toMatchObject({
      observedGeneration: 1,
      exposedModels: ['a'],
      missingModels: ['x'],
    });
    expect(store.connection('default/c1')?.status?.models).toEqual(['a']);
    expect(snapshot.get('default/c1')).toMatchObject({ apiKey: 'k1', serving: true });
    expect(events.map((e) => [e.kind, e.name, e.type, e.reason]).sort()).toEqual([
      ['ModelAllowlist', 'l1', 'Warning', 'ModelsMissing'],
      ['ProviderConnection', 'c1', 'Normal', 'Verified'],
      ['ProviderConnection', 'c2', 'Normal', 'Verified'],
    ]);
  });

  it('an allowlist edit replans its connection (no upstream call) and then the list; nothing else', async () => {
    await apply([secret('k1'), conn('c1', keyed), conn('c2'), list('[a, b]')]);
    expect(reconciled).toEqual(['providerconnection default/c1', 'modelallowlist default/l1']);
    expect(verified).toEqual([]);
    expect(store.allowlist('default/l1')?.status).toMatchObject({
      observedGeneration: 2,
      exposedModels: ['a', 'b'],
      missingModels: [],
    });
    expect(events).toEqual([]); // ModelsMissing → ModelsExposed is no fault: no Event
  });

  it('a Secret edit re-verifies exactly the connections that use it', async () => {
    await apply([secret('k2'), conn('c1', keyed), conn('c2'), list('[a, b]')]);
    expect(reconciled).toEqual(['providerconnection default/c1', 'modelallowlist default/l1']);
    expect(verified.map((t) => t.apiKey)).toEqual(['k2']);
    expect(snapshot.get('default/c1')?.apiKey).toBe('k2');
  });

  it('a removed connection leaves the snapshot, and its allowlist says ConnectionNotFound', async () => {
    await apply([secret('k2'), conn('c2'), list('[a, b]')]);
    expect([...snapshot.keys()]).toEqual(['default/c2']);
    const ready = store.allowlist('default/l1')?.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'ConnectionNotFound' });
  });
});
