/**
 * Load generator for bench/gateway.ts, in its own process: `node bench/gateway-load.ts '<json config>'`.
 * Runs `concurrency` closed loops for `durationMs` (or `count` requests each) against one URL with an undici
 * Pool and prints one JSON line: {n, errors, rps, p50, p99} with latencies in ms (whole response read).
 */
import { Pool } from 'undici';

interface Config {
  url: string;
  path: string;
  body: string;
  headers?: Record<string, string>;
  concurrency: number;
  durationMs?: number;
  /** Requests per loop instead of a duration (used for the 1,000 open streams check). */
  count?: number;
  warmupMs?: number;
}

const cfg = JSON.parse(process.argv[2] as string) as Config;
const pool = new Pool(cfg.url, {
  connections: cfg.concurrency,
  pipelining: 1,
  headersTimeout: 60_000,
  bodyTimeout: 60_000,
});
const headers = { 'content-type': 'application/json', ...cfg.headers };
const lat: number[] = [];
let errors = 0;
let warmupN = 0;
let firstError: string | undefined;

async function one(record: boolean): Promise<void> {
  const t0 = performance.now();
  try {
    const r = await pool.request({ method: 'POST', path: cfg.path, headers, body: cfg.body });
    let bytes = 0;
    for await (const c of r.body) bytes += (c as Buffer).length;
    if (r.statusCode !== 200 || bytes === 0) {
      errors++;
      firstError ??= `HTTP ${r.statusCode}`;
    } else if (record) lat.push(performance.now() - t0);
  } catch (err) {
    errors++;
    firstError ??= (err as Error).message;
  }
}

async function run(): Promise<void> {
  if (cfg.warmupMs) {
    const until = performance.now() + cfg.warmupMs;
    await Promise.all(
      Array.from({ length: cfg.concurrency }, async () => {
        while (performance.now() < until) {
          await one(false);
          warmupN++;
        }
      }),
    );
    errors = 0;
  }
  const start = performance.now();
  const until = start + (cfg.durationMs ?? 0);
  await Promise.all(
    Array.from({ length: cfg.concurrency }, async () => {
      if (cfg.count !== undefined) for (let i = 0; i < cfg.count; i++) await one(true);
      else while (performance.now() < until) await one(true);
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? Number.NaN;
  console.log(
    JSON.stringify({
      n: lat.length,
      warmupN,
      errors,
      firstError,
      rps: lat.length / elapsed,
      p50: q(0.5),
      p99: q(0.99),
    }),
  );
  await pool.close();
}
void run();
