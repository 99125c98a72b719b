import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../src/kube/client.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { type ElectionClock, LeaderElector } from '../../src/operator/runtime/leader-election.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { Api, eventually, log, startOperator } from './harness.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let client: KubeClient;
let api: Api;
let op: Operator;
/** Every providerconnection reconcile, in order, with its outcome. */
const reconciles: { key: string; outcome: string }[] = [];
const electors: LeaderElector[] = [];

beforeAll(async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'control-loop');
  api = new Api(kc, ns);
  client = new KubeClient(kc);
  op = startOperator(kc, ns, {
    leaderElection: false,
    onReconciled: (controller, key, outcome) => {
      if (controller === 'providerconnection') reconciles.push({ key, outcome });
    },
  });
});

afterAll(async () => {
  await Promise.all(electors.map((e) => e.stop()));
  await op?.stop();
  client?.close();
});

describe('leader election judges expiry on its own clock, never by comparing wall clocks across replicas', () => {
  const LEASE_MS = 4000;
  const RETRY_MS = 400;
  const MINUTES = 60_000;

  /** A replica's clocks: the wall clock off by `skewMs`, the monotonic clock true (as on a real node). */
  const skewed = (skewMs: number): ElectionClock => ({
    now: () => Date.now() + skewMs,
    monotonic: () => performance.now(),
  });

  function elector(lease: string, skewMs: number) {
    const state = { started: 0, stopped: 0 };
    const e = new LeaderElector(
      client,
      {
        namespace: api.ns,
        name: lease,
        identity: `${lease}-${skewMs}-${randomBytes(2).toString('hex')}`,
        leaseDurationMs: LEASE_MS,
        renewDeadlineMs: 3000,
        retryPeriodMs: RETRY_MS,
        // A crash, not a graceful stop: the Lease stays with the holder until it expires.
        releaseOnStop: false,
        clock: skewed(skewMs),
      },
      log,
    );
    electors.push(e);
    e.run(
      () => state.started++,
      () => state.stopped++,
    );
    return { e, state };
  }

  async function leaseHolder(name: string): Promise<string | undefined> {
    const l = await client.get<{ spec: { holderIdentity?: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${api.ns}/leases/${name}`,
    );
    return l.spec.holderIdentity;
  }

  // Each pair skews one side's wall clock by ten minutes. Comparing the holder's renewTime with the
  // candidate's wall clock would make the first two steal a lease that is being renewed, and the last two wait
  // ten minutes for a holder that is gone.
  const pairs = [
    { holderSkew: 0, candidateSkew: +10 * MINUTES },
    { holderSkew: -10 * MINUTES, candidateSkew: 0 },
    { holderSkew: 0, candidateSkew: -10 * MINUTES },
    { holderSkew: +10 * MINUTES, candidateSkew: 0 },
  ];

  it('a renewed lease is never stolen, and a stopped holder is replaced within about one lease duration', async () => {
    await Promise.all(
      pairs.map(async ({ holderSkew, candidateSkew }, i) => {
        const lease = `skew-${i}`;
        const holder = elector(lease, holderSkew);
        await eventually(async () => holder.e.isLeader, `${lease}: the first replica leads`);
        const candidate = elector(lease, candidateSkew);

        // Two lease durations of the holder renewing: the candidate must stay a standby throughout.
        await sleep(2 * LEASE_MS);
        expect({ lease, candidateLed: candidate.state.started, holderLost: holder.state.stopped }).toEqual({
          lease,
          candidateLed: 0,
          holderLost: 0,
        });
        expect(holder.e.isLeader).toBe(true);

        await holder.e.stop();
        const stoppedAt = performance.now();
        await eventually(
          async () => candidate.e.isLeader,
          `${lease}: the candidate takes over`,
          2 * LEASE_MS + 5000,
        );
        // Expiry is a lease duration after the candidate last saw the record change, plus a retry period.
        expect(performance.now() - stoppedAt).toBeLessThan(LEASE_MS + 3 * RETRY_MS + 4000);
        expect(await leaseHolder(lease)).toMatch(new RegExp(`^${lease}-${candidateSkew}-`));
      }),
    );
  }, 60_000);
});
