import { describe, expect, it, vi } from 'vitest';
import { ProviderConnectionSpec } from '../../src/api/provider-connection.ts';
import { planAllowlist } from '../../src/operator/logic/allowlist-status.ts';
import {
  planConnection,
  rememberOutcome,
  verificationFingerprint,
} from '../../src/operator/logic/connection-status.ts';
import { computeExposure } from '../../src/operator/logic/exposure.ts';
import { planInvalidSpec } from '../../src/operator/logic/invalid-spec.ts';
import { mergeConditions } from '../../src/operator/runtime/conditions.ts';
import { WorkQueue } from '../../src/operator/runtime/queue.ts';
import { ReferenceIndex } from '../../src/operator/runtime/reference-index.ts';

describe('work queue', () => {
  it('holds each key once and never hands the same key to two workers', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('a');
    q.add('b');
    expect(q.length).toBe(2);
    const first = await q.get();
    expect(first).toBe('a');
    q.add('a'); // while in flight: marked dirty, not queued twice
    expect(await q.get()).toBe('b');
    expect(q.length).toBe(0);
    q.done('a'); // dirty → queued again
    expect(await q.get()).toBe('a');
    q.shutdown();
    expect(await q.get()).toBeUndefined();
  });

  it('deduplicates the adds of one burst even while a worker waits, and says when it is idle', async () => {
    const q = new WorkQueue();
    const next = q.get(); // a worker waiting for work
    q.add('a');
    q.add('a'); // the same burst (a relist, a reload): no second run
    expect(q.idle).toBe(false);
    expect(await next).toBe('a');
    let idle = false;
    const whenIdle = q.whenIdle().then(() => {
      idle = true;
    });
    q.done('a');
    await whenIdle;
    expect([idle, q.idle, q.length]).toEqual([true, true, 0]);
    q.shutdown();
  });

  it('backs off per key exponentially with jitter and forgets on success', () => {
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
    const delays = [1, 2, 3, 4, 5, 6].map(() => q.addRateLimited('k'));
    expect(delays[0]).toBeGreaterThanOrEqual(75);
    expect(delays[0]).toBeLessThanOrEqual(125);
    expect(delays[3]).toBeGreaterThanOrEqual(600);
    expect(delays[5]).toBeLessThanOrEqual(1250);
    expect(q.numRequeues('k')).toBe(6);
    q.forget('k');
    expect(q.numRequeues('k')).toBe(0);
    q.shutdown();
  });

  it('an earlier schedule wins over a later one', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const q = new WorkQueue();
      q.addAfter('k', 10_000);
      q.addAfter('k', 20);
      let got: string | undefined;
      void q.get().then((k) => {
        got = k;
      });
      await vi.advanceTimersByTimeAsync(19);
      expect(got).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1);
      expect(got).toBe('k');
      // the later schedule was replaced, not kept for a second run
      q.done('k');
      await vi.advanceTimersByTimeAsync(20_000);
      expect(q.depth).toBe(0);
      q.shutdown();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('conditions', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const t1 = new Date('2026-01-01T01:00:00Z');
  const ready = (status: 'True' | 'False', reason: string) => ({
    type: 'Ready',
    status,
    reason,
    message: reason,
    observedGeneration: 1,
  });

  it('moves lastTransitionTime only when the status flips', () => {
    const a = mergeConditions(undefined, [ready('True', 'Verified')], t0);
    const b = mergeConditions(a, [ready('True', 'Verified')], t1);
    expect(b[0]?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    const c = mergeConditions(b, [ready('False', 'Unauthorized')], t1);
    expect(c[0]?.lastTransitionTime).toBe('2026-01-01T01:00:00Z');
  });

  it('truncates messages to the schema limit', () => {
    const long = mergeConditions(undefined, [{ ...ready('False', 'X'), message: 'x'.repeat(40_000) }], t0);
    expect(long[0]?.message.length).toBe(32_768);
  });
});

describe('model exposure', () => {
  const models = ['gpt-4o', 'gpt-4o-mini', 'o3', 'text-embedding-3-small'].map((id) => ({ id }));

  it('exposes everything without an allowlist, and the union of allowlists otherwise', () => {
    expect(computeExposure('OpenAI', models, []).exposed.length).toBe(4);
    const e = computeExposure('OpenAI', models, [
      { name: 'a', models: ['gpt-4o*'] },
      { name: 'b', models: ['o3', 'o4'] },
    ]);
    expect(e.exposed.map((m) => m.id)).toEqual(['gpt-4o', 'gpt-4o-mini', 'o3']);
    expect(e.perAllowlist.get('b')).toEqual({ exposed: ['o3'], missing: ['o4'], unmatchable: [] });
  });

  it('matches a listed model by its exposed ID or by the ID the upstream listed (Gemini models/<id>)', () => {
    const gemini = [
      { id: 'gemini-2.5-pro', upstreamId: 'models/gemini-2.5-pro' },
      { id: 'gemini-2.0-flash', upstreamId: 'models/gemini-2.0-flash' },
    ];
    const e = computeExposure('OpenAI', gemini, [
      { name: 'short', models: ['gemini-2.5-pro'] },
      { name: 'long', models: ['models/gemini-2.0-*'] },
    ]);
    expect(e.exposed).toEqual(gemini.slice().reverse());
    expect(e.perAllowlist.get('short')).toMatchObject({ exposed: ['gemini-2.5-pro'], missing: [] });
    expect(e.perAllowlist.get('long')).toMatchObject({ exposed: ['gemini-2.0-flash'], missing: [] });
  });

  it('treats Azure allowlist entries as deployment names and exact IDs as enough without /models', () => {
    expect(computeExposure('AzureOpenAI', models, [{ name: 'a', models: ['my-deploy'] }]).exposed).toEqual([
      { id: 'my-deploy' },
    ]);
    const unlisted = computeExposure('OpenAI', undefined, [{ name: 'a', models: ['sonar-pro', 'sonar-*'] }]);
    expect(unlisted.exposed).toEqual([{ id: 'sonar-pro' }]);
    expect(unlisted.perAllowlist.get('a')).toEqual({
      exposed: ['sonar-pro'],
      missing: [],
      unmatchable: ['sonar-*'],
    });
  });
});

describe('connection status plan', () => {
  const spec = ProviderConnectionSpec.parse({ url: 'http://127.0.0.1:1/v1' });
  const ok = {
    ok: true as const,
    reason: 'Verified' as const,
    message: 'listed 1 models',
    models: [{ id: 'm' }],
    durationMs: 1,
  };
  const base = {
    namespace: 'ns',
    name: 'c',
    generation: 1,
    spec,
    secret: { kind: 'none' as const },
    allowlists: [],
  };

  it('writes once, then nothing while the answer stays the same (lastVerifiedTime rides along with changes)', () => {
    const fp = verificationFingerprint(spec, undefined);
    const m1 = rememberOutcome(undefined, fp, ok, 300_000, Date.parse('2026-01-01T00:00:00Z'));
    const p1 = planConnection({
      ...base,
      memory: m1,
      previousStatus: undefined,
      now: new Date('2026-01-01T00:00:00Z'),
    });
    expect(p1.statusChanged).toBe(true);
    expect(p1.status.lastVerifiedTime).toBe('2026-01-01T00:00:00Z');
    const m2 = rememberOutcome(m1, fp, ok, 300_000, Date.parse('2026-01-01T00:05:00Z'));
    const p2 = planConnection({
      ...base,
      memory: m2,
      previousStatus: p1.status,
      now: new Date('2026-01-01T00:05:00Z'),
    });
    expect(p2.statusChanged).toBe(false);
    expect(p2.snapshot.status.lastVerifiedTime).toBe('2026-01-01T00:05:00Z');
    expect(p2.requeueAfterMs).toBeGreaterThan(250_000);
  });

  const unlistedPlan = (
    reason: 'ModelsEndpointUnsupported' | 'ProbeAccepted' | 'Unauthorized',
    models: string[],
  ) => {
    const out = { ok: false as const, reason, message: `said ${reason}`, durationMs: 1 };
    return planConnection({
      ...base,
      allowlists: [{ name: 'list', generation: 1, models }],
      memory: rememberOutcome(undefined, 'fp', out, 300_000, 0),
      previousStatus: undefined,
      now: new Date(0),
    });
  };
  /** The status of the allowlist "list", planned from what the connection decided for it. */
  const listOf = (p: ReturnType<typeof planConnection>) =>
    planAllowlist({
      namespace: 'ns',
      name: 'list',
      generation: 1,
      connectionName: 'c',
      connection: p.view,
      previousStatus: undefined,
      now: new Date(0),
    });
  const conditionOf = (p: ReturnType<typeof planConnection>, type: string) =>
    p.status.conditions?.find((c) => c.type === type);

  it('an upstream without a model list whose probe passed is verified and serves the exact IDs', () => {
    for (const reason of ['ModelsEndpointUnsupported', 'ProbeAccepted'] as const) {
      const p = unlistedPlan(reason, ['sonar-pro']);
      expect(conditionOf(p, 'Verified')).toMatchObject({ status: 'True', reason });
      expect(conditionOf(p, 'ModelsDiscovered')).toMatchObject({ status: 'False', reason });
      expect(p.ready).toMatchObject({ status: 'True', reason });
      expect(p.snapshot.models.map((m) => m.id)).toEqual(['sonar-pro']);
      expect(listOf(p).ready).toMatchObject({ status: 'True', reason: 'ModelsExposed' });
    }
    expect(unlistedPlan('ProbeAccepted', ['sonar-pro']).ready.message).toMatch(/may be billed/);
  });

  it('a glob on an upstream without a model list makes the allowlist not Ready (GlobNeedsModelList)', () => {
    const p = unlistedPlan('ModelsEndpointUnsupported', ['sonar-pro', 'sonar-*']);
    expect(listOf(p).ready).toMatchObject({ status: 'False', reason: 'GlobNeedsModelList' });
    expect(listOf(p).ready?.message).toMatch(/^"sonar-\*" can never match: the upstream does not list/);
    expect(listOf(p).exposure.exposedModels).toEqual(['sonar-pro']);
    const onlyGlobs = unlistedPlan('ModelsEndpointUnsupported', ['sonar-*']);
    expect(onlyGlobs.ready).toMatchObject({ status: 'False', reason: 'ModelsEndpointUnsupported' });
    expect(onlyGlobs.ready.message).toMatch(/name only globs \(sonar-\*\), which need a model list/);
  });

  it('an allowlist of a connection that was never verified exposes nothing and is not Ready', () => {
    const p = unlistedPlan('Unauthorized', ['sonar-pro', 'sonar-*']);
    expect(p.ready).toMatchObject({ status: 'False', reason: 'Unauthorized' });
    expect(p.snapshot.models).toEqual([]);
    expect(listOf(p).exposure.exposedModels).toEqual([]);
    expect(listOf(p).ready).toMatchObject({ status: 'False', reason: 'ConnectionNotReady' });
  });

  it('the snapshot sends an upstream the ID it listed (Gemini models/<id>) and exposes the short one', () => {
    const fp = verificationFingerprint(spec, undefined);
    const listed = { ...ok, models: [{ id: 'gemini-2.5-pro', upstreamId: 'models/gemini-2.5-pro' }] };
    const p = planConnection({
      ...base,
      allowlists: [{ name: 'list', generation: 1, models: ['gemini-2.5-pro'] }],
      memory: rememberOutcome(undefined, fp, listed, 300_000, 0),
      previousStatus: undefined,
      now: new Date(0),
    });
    expect(p.snapshot.models).toEqual([{ id: 'gemini-2.5-pro', upstreamId: 'models/gemini-2.5-pro' }]);
    expect(listOf(p).ready).toMatchObject({ status: 'True', reason: 'ModelsExposed' });
  });

  it('backs off while failing, honouring Retry-After', () => {
    const fp = 'x';
    const limited = {
      ok: false as const,
      reason: 'RateLimited' as const,
      message: '',
      retryAfterMs: 120_000,
      durationMs: 1,
    };
    const m = rememberOutcome(undefined, fp, limited, 300_000, 0);
    expect(m.nextDueAt).toBe(120_000);
    // never beyond the verification interval: a hostile upstream cannot park a connection unverified for days
    for (const huge of [3_000_000_000, Number.POSITIVE_INFINITY])
      expect(rememberOutcome(undefined, fp, { ...limited, retryAfterMs: huge }, 300_000, 0).nextDueAt).toBe(
        300_000,
      );
    const fail = { ok: false as const, reason: 'UpstreamError' as const, message: '', durationMs: 1 };
    const f1 = rememberOutcome(undefined, fp, fail, 300_000, 0);
    const f4 = rememberOutcome(
      rememberOutcome(rememberOutcome(f1, fp, fail, 300_000, 0), fp, fail, 300_000, 0),
      fp,
      fail,
      300_000,
      0,
    );
    expect(f1.nextDueAt).toBeLessThanOrEqual(5_500);
    expect(f4.nextDueAt).toBeGreaterThan(f1.nextDueAt);
    expect(f4.consecutiveFailures).toBe(4);
  });
});

describe('reference index', () => {
  it('answers who refers to a key, following reference changes and deletes', () => {
    const idx = new ReferenceIndex();
    idx.set('ns/a', ['ns/s1']);
    idx.set('ns/b', ['ns/s1']);
    idx.set('ns/c', ['ns/s2']);
    idx.set('ns/d', []);
    expect(idx.referrers('ns/s1').sort()).toEqual(['ns/a', 'ns/b']);
    idx.set('ns/b', ['ns/s2']); // b's spec now names another Secret
    expect(idx.referrers('ns/s1')).toEqual(['ns/a']);
    expect(idx.referrers('ns/s2').sort()).toEqual(['ns/b', 'ns/c']);
    idx.set('ns/a', ['ns/s1']); // an update that changes nothing
    idx.delete('ns/a');
    expect(idx.referrers('ns/s1')).toEqual([]);
    idx.set('ns/c', []);
    expect(idx.referrers('ns/s2')).toEqual(['ns/b']);
    expect(idx.referrers('other/s2')).toEqual([]);
    expect(idx.size).toBe(1);
  });
});

describe('invalid spec plan', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const t1 = new Date('2026-01-01T01:00:00Z');

  it('stalls Ready and Stalled with the errors once, keeping what describes the last valid generation', () => {
    const previous = {
      observedGeneration: 1,
      exposedModelCount: 3,
      conditions: mergeConditions(
        undefined,
        [
          {
            type: 'Ready',
            status: 'True',
            reason: 'Verified',
            message: '3 models exposed',
            observedGeneration: 1,
          },
          { type: 'Verified', status: 'True', reason: 'Verified', message: 'ok', observedGeneration: 1 },
        ],
        t0,
      ),
    };
    const issues = Array.from({ length: 12 }, (_, i) => `headers.h${i}: too long`);
    const p = planInvalidSpec({ generation: 2, issues, serving: true, previousStatus: previous, now: t1 });
    expect(p.statusChanged).toBe(true);
    expect(p.status.observedGeneration).toBe(2);
    expect(p.status.exposedModelCount).toBe(3);
    const ready = p.status.conditions?.find((c) => c.type === 'Ready');
    const stalled = p.status.conditions?.find((c) => c.type === 'Stalled');
    expect(ready).toMatchObject({ status: 'False', reason: 'InvalidSpec', observedGeneration: 2 });
    expect(stalled).toMatchObject({
      status: 'True',
      reason: 'InvalidSpec',
      lastTransitionTime: '2026-01-01T01:00:00Z',
    });
    expect(ready?.message).toMatch(
      /^the spec fails validation: spec\.headers\.h0: too long; .*spec\.headers\.h9: too long; and 2 more\./,
    );
    expect(ready?.message).toMatch(/the gateway serves the last valid spec/);
    expect(p.status.conditions?.find((c) => c.type === 'Verified')?.observedGeneration).toBe(1);

    const again = planInvalidSpec({
      generation: 2,
      issues,
      serving: true,
      previousStatus: p.status,
      now: t1,
    });
    expect(again.statusChanged).toBe(false);
  });

  it('a later valid generation drops Stalled', () => {
    const spec = ProviderConnectionSpec.parse({ url: 'http://127.0.0.1:1/v1', enabled: false });
    const stalled = planInvalidSpec({
      generation: 1,
      issues: ['url: bad'],
      serving: false,
      previousStatus: undefined,
      now: t0,
    }).status;
    const p = planConnection({
      namespace: 'ns',
      name: 'c',
      generation: 2,
      spec,
      secret: { kind: 'none' },
      allowlists: [],
      memory: undefined,
      previousStatus: stalled,
      now: t1,
    });
    expect(p.status.conditions?.map((c) => c.type)).not.toContain('Stalled');
    expect(p.ready).toMatchObject({ status: 'False', reason: 'Disabled' });
  });
});
