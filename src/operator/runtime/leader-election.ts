import type { Logger } from 'pino';
import { type KubeClient, KubeError } from '../../kube/client.ts';
import { sleep } from '../../kube/informer.ts';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Give the Lease up on stop() so another replica takes over at once (client-go's ReleaseOnCancel). */
  releaseOnStop?: boolean;
  clock?: ElectionClock;
}

/** The elector's time sources; injected so a test can play a replica whose wall clock is wrong. */
export interface ElectionClock {
  /** Wall-clock ms since the epoch: only written into the Lease (acquireTime, renewTime) for people to read. */
  now(): number;
  /** Monotonic ms: every expiry and deadline decision. */
  monotonic(): number;
}

export const systemClock: ElectionClock = { now: () => Date.now(), monotonic: () => performance.now() };

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

const microTime = (d: Date) => d.toISOString().replace('Z', '000Z');

/** What identifies one write of the Lease record: any renewal, release or take-over changes it. */
const recordOf = (spec: Lease['spec']) =>
  JSON.stringify([
    spec.holderIdentity ?? '',
    spec.leaseDurationSeconds ?? 0,
    spec.acquireTime ?? '',
    spec.renewTime ?? '',
    spec.leaseTransitions ?? 0,
  ]);

/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: acquire when free or expired,
 * renew every retry period, give up leadership when renewals fail past the renew deadline, release on stop.
 *
 * Expiry never compares another replica's renewTime with this replica's wall clock, which would let a skewed
 * clock steal a lease that is being renewed or wait out minutes for a holder that is gone. A replica remembers
 * when, on its own monotonic clock, it first saw the current record; the lease has expired once the record has
 * not changed for leaseDurationSeconds since then. So a candidate that starts beside a dead holder waits one
 * lease duration, and skew between clocks does not matter (only a difference in their rates would).
 */
export class LeaderElector {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly o: Required<LeaderElectionOptions>;
  private readonly abort = new AbortController();
  private leading = false;
  private loop: Promise<void> | undefined;
  /** The Lease record as last read or written, and when (monotonic) this replica first saw it. */
  private observed: { record: string; at: number } | undefined;

  constructor(client: KubeClient, opts: LeaderElectionOptions, log: Logger) {
    this.client = client;
    this.log = log.child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.o = {
      ...opts,
      leaseDurationMs: opts.leaseDurationMs ?? 15_000,
      renewDeadlineMs: opts.renewDeadlineMs ?? 10_000,
      retryPeriodMs: opts.retryPeriodMs ?? 2_000,
      releaseOnStop: opts.releaseOnStop ?? true,
      clock: opts.clock ?? systemClock,
    };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Runs until stopped; calls onStarted when leadership is acquired and onStopped when it is lost. */
  run(onStarted: () => void, onStopped: () => void): void {
    this.loop = this.electionLoop(onStarted, onStopped);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    if (this.leading) {
      this.leading = false;
      if (this.o.releaseOnStop) await this.release();
    }
  }

  private path(name?: string) {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases${name ? `/${name}` : ''}`;
  }

  private observe(spec: Lease['spec']): void {
    const record = recordOf(spec);
    if (record !== this.observed?.record) this.observed = { record, at: this.o.clock.monotonic() };
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date(this.o.clock.now());
    const spec = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      renewTime: microTime(now),
    };
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(this.path(this.o.name), { timeoutMs: this.o.retryPeriodMs * 2 });
    } catch (err) {
      if (!KubeError.is(err, 404)) throw err;
      try {
        const created = await this.client.request<Lease>('POST', this.path(), {
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
          },
        });
        this.observe(created.spec);
        return true;
      } catch (e) {
        if (KubeError.is(e, 409)) return false;
        throw e;
      }
    }
    this.observe(lease.spec);
    const held = lease.spec.holderIdentity;
    const mine = held === this.o.identity;
    const since = this.o.clock.monotonic() - (this.observed?.at ?? 0);
    const expired = since >= (lease.spec.leaseDurationSeconds ?? 0) * 1000;
    if (held && !mine && !expired) return false;
    try {
      const written = await this.client.request<Lease>('PUT', this.path(this.o.name), {
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            ...spec,
            acquireTime: mine ? lease.spec.acquireTime : microTime(now),
            leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
          },
        },
        timeoutMs: this.o.retryPeriodMs * 2,
      });
      this.observe(written.spec);
      return true;
    } catch (err) {
      if (KubeError.is(err, 409)) return false;
      throw err;
    }
  }

  private async electionLoop(onStarted: () => void, onStopped: () => void): Promise<void> {
    let lastRenew = 0;
    while (!this.abort.signal.aborted) {
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'lease update failed');
      }
      const now = this.o.clock.monotonic();
      if (ok) {
        lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.log.info('became leader');
          onStarted();
        }
      } else if (this.leading && now - lastRenew > this.o.renewDeadlineMs) {
        this.leading = false;
        this.log.warn('lost leadership');
        onStopped();
      }
      const jitter = this.leading ? 1 : 1 + Math.random() * 0.2;
      await sleep(this.o.retryPeriodMs * jitter, this.abort.signal);
    }
  }

  /** Lets another replica take over at once instead of waiting for the lease to expire. */
  private async release(): Promise<void> {
    try {
      const lease = await this.client.get<Lease>(this.path(this.o.name));
      if (lease.spec.holderIdentity !== this.o.identity) return;
      await this.client.request('PUT', this.path(this.o.name), {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } },
      });
      this.log.info('released leadership');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not release the lease');
    }
  }
}
