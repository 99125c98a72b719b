/**
 * Open-loop load generator for bench/load.ts, in its own process: `node bench/load-gen.ts '<json config>'`.
 * Request i is started at t0 + i/rate whatever happened to the earlier ones (no closed loops, so a slow gateway
 * cannot slow the offered load down); latency is measured from the scheduled start (no coordinated omission).
 * Every `streamEvery`-th request is a streamed chat completion, read to `data: [DONE]`. Prints a progress line per
 * second on stderr (`{"t":..,"ok":..,"errors":..}`) and one JSON result line on stdout.
 */
import { Pool } from 'undici';

interface Config {
  url: string;
  rate: number;
  durationMs: number;
  streamEvery: number;
  /** Requests still running this long after the schedule ends count as errors. */
  graceMs?: number;
}

const cfg = JSON.parse(process.argv[2] as string) as Config;
const pool = new Pool(cfg.url, {
  connections: 1024,
  pipelining: 1,
  headersTimeout: 30_000,
  bodyTimeout: 30_000,
});
const body = (stream: boolean) =>
  JSON.stringify({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'Hello, load test!' }],
    ...(stream ? { stream: true } : {}),
  });
const JSON_BODY = body(false);
const STREAM_BODY = body(true);
const headers = { 'content-type': 'application/json' };

const total = Math.round((cfg.rate * cfg.durationMs) / 1000);
let started = 0;
let ok = 0;
let errors = 0;
const errorKinds = new Map<string, number>();
const lat: number[] = [];
let maxLagMs = 0;

function fail(kind: string): void {
  errors++;
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
}

async function one(i: number, scheduled: number): Promise<void> {
  const stream = cfg.streamEvery > 0 && i % cfg.streamEvery === 0;
  try {
    const r = await pool.request({
      method: 'POST',
      path: '/v1/chat/completions',
      headers,
      body: stream ? STREAM_BODY : JSON_BODY,
    });
    let text = '';
    for await (const c of r.body) text += (c as Buffer).toString('utf8');
    if (r.statusCode !== 200) return fail(`HTTP ${r.statusCode}: ${text.slice(0, 160)}`);
    if (stream ? !text.includes('data: [DONE]') || text.includes('"error"') : !text.includes('"choices"'))
      return fail(`bad body: ${text.slice(0, 160)}`);
    ok++;
    lat.push(performance.now() - scheduled);
  } catch (err) {
    fail((err as Error).message);
  }
}

const inflight = new Set<Promise<void>>();
const t0 = performance.now() + 50;
const interval = 1000 / cfg.rate;
let lastOk = 0;
let lastErr = 0;
const progress = setInterval(() => {
  process.stderr.write(
    `${JSON.stringify({ t: Math.round((performance.now() - t0) / 1000), ok: ok - lastOk, errors: errors - lastErr, inflight: inflight.size })}\n`,
  );
  lastOk = ok;
  lastErr = errors;
}, 1000);

await new Promise<void>((resolve) => {
  const tick = () => {
    const now = performance.now();
    while (started < total && t0 + started * interval <= now) {
      const scheduled = t0 + started * interval;
      maxLagMs = Math.max(maxLagMs, now - scheduled);
      const p = one(started, scheduled);
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      started++;
    }
    if (started >= total) return resolve();
    setTimeout(tick, Math.max(0, Math.min(5, t0 + started * interval - performance.now())));
  };
  tick();
});
const scheduleEnd = performance.now();
const grace = cfg.graceMs ?? 10_000;
await Promise.race([Promise.all(inflight), new Promise((r) => setTimeout(r, grace))]);
clearInterval(progress);
const unfinished = inflight.size;
for (let i = 0; i < unfinished; i++) fail(`unfinished ${grace} ms after the schedule ended`);
const elapsedS = (scheduleEnd - t0) / 1000;
lat.sort((a, b) => a - b);
const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? Number.NaN;
console.log(
  JSON.stringify({
    offered: total,
    offeredRps: cfg.rate,
    ok,
    errors,
    errorKinds: Object.fromEntries([...errorKinds].slice(0, 5)),
    achievedRps: ok / elapsedS,
    achievedRatio: ok / total,
    scheduleSeconds: elapsedS,
    maxStartLagMs: maxLagMs,
    p50: q(0.5),
    p99: q(0.99),
    p999: q(0.999),
    max: lat.at(-1) ?? Number.NaN,
  }),
);
await pool.destroy();
process.exit(0);
