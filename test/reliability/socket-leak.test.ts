/**
 * No leaked sockets (issue 8): 1,000 fault cycles through a gateway in its own process — upstream resets before
 * and after the first byte, 503s, hangs cut by the first-byte timeout, failovers, clients that go away mid-stream
 * — and the gateway process's open sockets (from /proc/<pid>/fd) return to the baseline measured after a
 * warm-up with the same mix, within a small tolerance (idle keep-alive connections in the upstream pools).
 */
import { Pool } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { conn, metricValue, mock, snapshot } from '../gateway/helpers.ts';
import { type GatewayProcess, spawnGateway } from './process.ts';

const CYCLES = 1000;
const CONCURRENCY = 20;
const TOLERANCE = 8;
const MODELS = ['good', 'failover', 'reset', 'midreset', 's503', 'hang'];

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  while (cleanup.length) await cleanup.pop()?.();
});

type Kind = 'ok' | 'ok-stream' | 'reset' | 'midreset' | 's503' | 'hang' | 'failover' | 'client-abort';
const KINDS: Kind[] = ['ok', 'ok-stream', 'reset', 'midreset', 's503', 'hang', 'failover', 'client-abort'];

const body = (model: string, stream: boolean) =>
  JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'a b c d e f g h i j' }],
    ...(stream ? { stream: true } : {}),
  });

/** One cycle; returns what the client saw, so the test can check every fault was reported. */
async function cycle(pool: Pool, kind: Kind): Promise<string> {
  const model =
    kind === 'ok' || kind === 'ok-stream' || kind === 'client-abort'
      ? 'good'
      : kind === 'midreset'
        ? 'midreset'
        : kind;
  const stream = kind === 'ok-stream' || kind === 'midreset' || kind === 'client-abort';
  const ac = new AbortController();
  try {
    const r = await pool.request({
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: body(model, stream),
      signal: ac.signal,
    });
    if (kind === 'client-abort') {
      for await (const _c of r.body) {
        ac.abort();
        break;
      }
      return 'aborted';
    }
    const text = await r.body.text();
    if (r.statusCode !== 200) return `http ${r.statusCode}`;
    if (text.includes('data: {"error"')) return 'sse-error';
    return 'ok';
  } catch (err) {
    return kind === 'client-abort' ? 'aborted' : `client error ${(err as Error).message}`;
  }
}

async function run(url: string, n: number, offset: number): Promise<Map<string, number>> {
  const pool = new Pool(url, { connections: CONCURRENCY, pipelining: 1 });
  const seen = new Map<string, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        const i = next++;
        const kind = KINDS[(i + offset) % KINDS.length] as Kind;
        const got = await cycle(pool, kind);
        const key = `${kind}: ${got}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
    }),
  );
  await pool.destroy();
  return seen;
}

/**
 * The gateway's descriptors once it has noticed the closed client connections: unchanged for a whole second
 * (a busy machine can hold the process back for longer than a few polls), at most 15 s.
 */
async function settle(gw: GatewayProcess): Promise<{ total: number; sockets: number }> {
  let last = gw.fds();
  let stableSince = performance.now();
  const deadline = stableSince + 15_000;
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const now = gw.fds();
    if (now.sockets !== last.sockets || now.total !== last.total) {
      last = now;
      stableSince = performance.now();
    } else if (performance.now() - stableSince >= 1000) return now;
  }
  return last;
}

describe('no leaked sockets', () => {
  it(`the gateway's open sockets return to the baseline after ${CYCLES} fault cycles`, async () => {
    const ups: Record<string, MockProvider> = {
      good: await mock({ models: MODELS, profile: 'openai', chunkDelayMs: 3 }),
      reset: await mock({ models: MODELS, profile: 'openai', failure: { kind: 'reset' } }),
      midreset: await mock({ models: MODELS, profile: 'openai', failure: { kind: 'reset', afterChunks: 2 } }),
      s503: await mock({ models: MODELS, profile: 'openai', failure: { kind: 'status', status: 503 } }),
      hang: await mock({ models: MODELS, profile: 'openai', failure: { kind: 'hang' } }),
    };
    for (const m of Object.values(ups)) cleanup.push(() => m.close());
    const gw = await spawnGateway(
      snapshot([
        conn(ups.good, { name: 'good', models: ['good', 'failover'] }),
        conn(ups.reset, { name: 'reset', models: ['reset', 'failover'] }),
        conn(ups.midreset, { name: 'midreset', models: ['midreset'] }),
        conn(ups.s503, { name: 's503', models: ['s503', 'failover'] }),
        conn(ups.hang, { name: 'hang', models: ['hang'], timeouts: { firstByteMs: 150 } }),
      ]),
      ['--log-level', 'error'],
    );
    cleanup.push(() => gw.stop());
    const start = gw.fds();

    await run(gw.url, 200, 0); // warm-up: the same mix fills the upstream pools
    const baseline = await settle(gw);
    const t0 = performance.now();
    const seen = await run(gw.url, CYCLES, 0);
    const seconds = (performance.now() - t0) / 1000;
    const after = await settle(gw);

    // every fault reached the client as a clear answer
    const count = (k: string) => seen.get(k) ?? 0;
    const per = CYCLES / KINDS.length;
    expect(count('ok: ok')).toBe(per);
    expect(count('ok-stream: ok')).toBe(per);
    expect(count('reset: http 502')).toBe(per);
    expect(count('midreset: sse-error')).toBe(per);
    expect(count('s503: http 502')).toBe(per);
    expect(count('hang: http 504')).toBe(per);
    expect(count('failover: ok')).toBe(per);
    expect(count('client-abort: aborted')).toBe(per);

    // the process is healthy and nothing is in flight
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(200);
    // (a client's abort reaches the gateway a moment after the client has moved on)
    await expect
      .poll(async () =>
        metricValue(await (await fetch(`${gw.url}/metrics`)).text(), 'plugboard_gateway_in_flight_requests'),
      )
      .toBe(0);
    const final = await settle(gw);

    console.log(
      `socket leak check: ${CYCLES} cycles in ${seconds.toFixed(1)} s; gateway sockets at start ${start.sockets}, ` +
        `after warm-up ${baseline.sockets}, after ${CYCLES} cycles ${after.sockets} (fds ${baseline.total} -> ${final.total})`,
    );
    expect(after.sockets).toBeLessThanOrEqual(baseline.sockets + TOLERANCE);
    expect(final.total).toBeLessThanOrEqual(baseline.total + TOLERANCE);
  }, 60_000);
});
