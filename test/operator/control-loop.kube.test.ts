import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KubeClient } from '../../src/kube/client.ts';
import { Informer } from '../../src/kube/informer.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { type ElectionClock, LeaderElector } from '../../src/operator/runtime/leader-election.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { useMockProviders } from '../support/mocks.ts';
import { Api, cond, eventually, log, startOperator } from './harness.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mock = useMockProviders();

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

const outcomesOf = (name: string, from = 0) =>
  reconciles
    .slice(from)
    .filter((r) => r.key === `${api.ns}/${name}`)
    .map((r) => r.outcome);

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

describe('a spec the API server admits but validation refuses', () => {
  it('ends Ready False / Stalled True (InvalidSpec) with the error, one Event, and no retries until it changes', async () => {
    const m = await mock({ profile: 'openai' });
    // Header names longer than 256 characters: zod refuses them; the CRD cannot bound a map's keys without a CEL
    // rule, so the API server admits them (api.connection throws if it does not: then pick another such field).
    const longName = `X-${'a'.repeat(300)}`;
    await api.connection('invalid', { url: m.url, headers: { [longName]: 'v' } });

    const c = await eventually(async () => {
      const x = await api.getConnection('invalid');
      return cond(x, 'Stalled')?.observedGeneration === x.metadata.generation ? x : undefined;
    }, 'Stalled for the current generation');
    expect(cond(c, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(cond(c, 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(cond(c, 'Ready')?.message).toMatch(
      /^the spec fails validation: spec\.headers\.X-a+: .*expected string to have <=256 characters\. Fix the spec/,
    );
    expect(c.status?.observedGeneration).toBe(c.metadata.generation);
    const events = await eventually(async () => {
      const e = (await api.events('invalid')).filter((x) => x.reason === 'InvalidSpec');
      return e.length ? e : undefined;
    }, 'an InvalidSpec Event');
    expect(events[0]?.type).toBe('Warning');

    // Retrying with backoff (0.5 s, 1 s, 2 s, ...) would have reconciled several times by now.
    await sleep(4000);
    expect(outcomesOf('invalid')).toEqual(['terminal_error']);
    expect((await api.events('invalid')).filter((x) => x.reason === 'InvalidSpec')).toHaveLength(1);
    expect(m.requests).toHaveLength(0);

    // The next generation is acted on again, and once valid nothing says stalled any more.
    await api.patchConnection('invalid', { headers: { [longName]: null, 'X-Title': 'fixed' } });
    const fixed = await api.waitReady('invalid', 'Verified');
    expect(cond(fixed, 'Stalled')).toBeUndefined();
  });
});

describe('Secret events', () => {
  it('reconcile exactly the connections that reference the Secret, found by index rather than a scan', async () => {
    const m = await mock({ profile: 'openai' });
    await api.secret('idx-shared', { apiKey: 'sk-idx-one' });
    await api.secret('idx-other', { apiKey: 'sk-idx-two' });
    const refs: Record<string, string | undefined> = {
      'idx-0': 'idx-shared',
      'idx-1': 'idx-shared',
      'idx-2': 'idx-shared',
      'idx-3': 'idx-other',
      'idx-4': undefined,
      'idx-5': 'idx-other',
    };
    for (const [name, secret] of Object.entries(refs)) {
      await api.connection(name, { url: m.url, ...(secret ? { apiKeySecretRef: { name: secret } } : {}) });
    }
    for (const name of Object.keys(refs)) await api.waitReady(name, 'Verified');
    // The index follows spec changes: idx-2 moves away from the shared Secret, idx-3 to it.
    await api.patchConnection('idx-2', { apiKeySecretRef: { name: 'idx-other' } });
    await api.patchConnection('idx-3', { apiKeySecretRef: { name: 'idx-shared' } });
    await api.waitReady('idx-2', 'Verified');
    await api.waitReady('idx-3', 'Verified');
    // let the reconciles of those updates finish before counting: a quiet second, however long that takes
    let count = reconciles.length;
    await eventually(async () => {
      await sleep(1000);
      const quiet = reconciles.length === count;
      count = reconciles.length;
      return quiet;
    }, 'a second without reconciles');

    const list = vi.spyOn(Informer.prototype, 'list');
    try {
      const mark = reconciles.length;
      await api.updateSecret('idx-shared', { apiKey: 'sk-idx-three' });
      const expected = ['idx-0', 'idx-1', 'idx-3'];
      await eventually(
        async () => expected.every((n) => outcomesOf(n, mark).length > 0),
        'the referencing connections reconciled',
      );
      await sleep(1500); // time for any reconcile that should not happen
      const reconciled = Object.keys(refs).filter((n) => outcomesOf(n, mark).length > 0);
      expect(reconciled).toEqual(expected);
      // No Secret event walked the connection cache.
      const scans = list.mock.contexts.filter((ctx) =>
        (ctx as unknown as { opts: { path: string } }).opts.path.includes('/providerconnections'),
      );
      expect(scans).toHaveLength(0);
    } finally {
      list.mockRestore();
    }
  });
});
