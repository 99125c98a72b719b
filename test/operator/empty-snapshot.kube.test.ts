/**
 * A fresh install has no ProviderConnections yet, and the gateways are Ready only once a routing snapshot exists:
 * the leader must write one (with no connections) at start, or `helm install --wait` never finishes (found by the
 * end-to-end suite on a real cluster, test/cluster/). A restarted leader with a snapshot in place rewrites nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Operator } from '../../src/operator/operator.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { Api, eventually, startOperator } from './harness.ts';

let op: Operator | undefined;
afterEach(async () => {
  await op?.stop();
  op = undefined;
});

describe('the routing snapshot with no connections', () => {
  it('is written, empty, by a leader that finds no snapshot; a restarted leader keeps its generation', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'empty-snapshot');
    const api = new Api(kc, ns);
    op = startOperator(kc, ns, { leaderElection: false });
    const first = await eventually(() => api.snapshot(), 'an empty snapshot Secret');
    expect(first.connections).toEqual([]);
    expect(first.generation).toBe(1);
    await op.stop();

    op = startOperator(kc, ns, { leaderElection: false });
    await eventually(async () => op?.snapshotGeneration === 1, 'the restarted operator loading generation 1');
    // Nothing changed: give a spurious write time to happen, then check none did.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await api.snapshot())?.generation).toBe(1);
  });
});
