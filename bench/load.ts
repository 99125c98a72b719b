/**
 * Load benchmark (`npm run bench:load`, not a test): the gateway (`plugboard gateway --config-file`, production
 * settings, its own process) in front of the simulated upstream (the mock provider, its own process), driven by an
 * open-loop generator (its own process; requests start on a schedule, not in closed loops).
 *
 *   npm run bench:load                         1,000 req/s for 60 s, then 20 snapshot changes during 500 req/s
 *   npm run bench:load -- --scenario rate      only the first      (--rate 1000 --duration 60s to change it)
 *   npm run bench:load -- --scenario snapshots only the second
 *   npm run bench:load -- --soak 30m           the soak: 1,000 req/s for 30 minutes, RSS sampled every 10 s
 *
 * Targets (issue 8): 0 errors and >= 99% of the offered rate achieved; twenty snapshot changes with zero failed
 * requests; RSS growth <= 10% between minute 1 and the end of the soak. Prints the figures and PASS/FAIL per
 * target; exits 1 when one is missed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parseDurationMs } from '../src/cli/args.ts';
import { chartNodeOptions, freePort, rssMiB, waitLine } from './support.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const NODE = process.execPath;
const children: ChildProcess[] = [];

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    soak: { type: 'string' },
    'upstream-latency-ms': { type: 'string', default: '20' },
    'stream-every': { type: 'string', default: '4' },
  },
});

function start(
  args: string[],
  stdout: 'pipe' | 'ignore' = 'pipe',
  env: Record<string, string> = {},
): ChildProcess {
  const child = spawn(NODE, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', stdout, 'inherit'],
  });
  children.push(child);
  return child;
}

const ok = { status: 'True', reason: 'Verified', message: '' };
function connection(name: string, url: string) {
  return {
    namespace: 'bench',
    name,
    provider: 'OpenAI',
    url,
    headers: {},
    dropParams: [],
    tags: [],
    timeouts: { connectMs: 5000, firstByteMs: 30_000, idleMs: 30_000, totalMs: 120_000 },
    serving: true,
    status: { ready: ok, verified: ok },
    models: [
      { id: 'gpt-4o', upstreamId: 'gpt-4o' },
      { id: 'gpt-4o-mini', upstreamId: 'gpt-4o-mini' },
    ],
  };
}

/** Writes the snapshot file atomically (as a ConfigMap mount or an editor does: write, then rename). */
function writeSnapshot(file: string, generation: number, conns: ReturnType<typeof connection>[]): void {
  const tmp = `${file}.tmp`;
  writeFileSync(
    tmp,
    JSON.stringify({ format: 1, generation, generatedAt: new Date().toISOString(), connections: conns }),
  );
  renameSync(tmp, file);
}

interface LoadResult {
  offered: number;
  offeredRps: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  achievedRps: number;
  achievedRatio: number;
  scheduleSeconds: number;
  maxStartLagMs: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

async function runLoad(
  url: string,
  rate: number,
  durationMs: number,
  onSecond?: (t: number) => void,
): Promise<LoadResult> {
  const gen = spawn(
    NODE,
    [
      join(ROOT, 'bench/load-gen.ts'),
      JSON.stringify({ url, rate, durationMs, streamEvery: Number(values['stream-every']) }),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(gen);
  let out = '';
  gen.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  let errText = '';
  gen.stderr.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) {
      if (!line.trim()) continue;
      try {
        const p = JSON.parse(line) as { t: number; ok: number; errors: number; inflight: number };
        onSecond?.(p.t);
        if (p.errors > 0) process.stderr.write(`  t=${p.t}s: ${p.errors} errors\n`);
      } catch {
        errText += `${line}\n`;
      }
    }
  });
  const code = await new Promise<number | null>((r) => gen.on('exit', r));
  const last = out.trim().split('\n').at(-1);
  if (code !== 0 || !last) throw new Error(`load generator exited ${code}: ${errText.slice(-1000)}`);
  return JSON.parse(last) as LoadResult;
}

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const verdicts: { target: string; pass: boolean; figure: string }[] = [];
function verdict(target: string, pass: boolean, figure: string): void {
  verdicts.push({ target, pass, figure });
  console.log(`${pass ? 'PASS' : 'FAIL'}  ${target}: ${figure}`);
}
function describe(r: LoadResult): string {
  return (
    `${r.ok}/${r.offered} ok, ${r.errors} errors${r.errors ? ` ${JSON.stringify(r.errorKinds)}` : ''}, ` +
    `achieved ${f(r.achievedRps, 0)} req/s of ${r.offeredRps} offered (${f(r.achievedRatio * 100, 2)}%), ` +
    `latency p50 ${f(r.p50)} ms, p99 ${f(r.p99)} ms, p99.9 ${f(r.p999)} ms, max ${f(r.max)} ms, ` +
    `generator start lag max ${f(r.maxStartLagMs)} ms`
  );
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'plugboard-load-'));
  const latency = values['upstream-latency-ms'] as string;
  try {
    const upA = start(['bench/load-upstream.ts', latency]);
    const upB = start(['bench/load-upstream.ts', latency]);
    const urlA = (await waitLine(upA, /ready (\S+)/))[1] as string;
    const urlB = (await waitLine(upB, /ready (\S+)/))[1] as string;
    const snap = join(tmp, 'snapshot.json');
    let generation = 1;
    const a = connection('a', urlA);
    const b = connection('b', urlB);
    writeSnapshot(snap, generation, [a]);
    const port = await freePort();
    // production settings: JSON access logs at info (discarded), default limits and drain timeout, the heap
    // sizing the chart's defaults give
    const gw = start(
      ['bin/plugboard.js', 'gateway', '--config-file', snap, '--listen', `127.0.0.1:${port}`],
      'ignore',
      { NODE_OPTIONS: chartNodeOptions('gateway') },
    );
    const gwUrl = `http://127.0.0.1:${port}`;
    const until = Date.now() + 20_000;
    for (;;) {
      const ready = await fetch(`${gwUrl}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (Date.now() > until) throw new Error('the gateway did not become ready');
      await sleep(100);
    }
    // warm-up: JIT, pools
    await runLoad(gwUrl, 200, 3000);
    const rate = Number(values.rate ?? 1000);
    console.log(
      `node ${process.version}, ${(await import('node:os')).availableParallelism()} cores; upstream latency ${latency} ms; ` +
        `every ${values['stream-every']}th request streamed`,
    );

    if (values.soak) {
      const soakMs = parseDurationMs(values.soak);
      const samples: { t: number; rss: number }[] = [];
      const r = await runLoad(gwUrl, rate, soakMs, (t) => {
        if (t % 10 === 0 && !samples.some((s) => s.t === t)) {
          samples.push({ t, rss: rssMiB(gw.pid) });
          if (t % 60 === 0)
            console.log(`  soak t=${t}s gateway RSS ${f(samples.at(-1)?.rss ?? Number.NaN)} MiB`);
        }
      });
      const atMinute1 = samples.find((s) => s.t >= 60) ?? samples[0];
      const end = samples.at(-1);
      const growth = atMinute1 && end ? (end.rss / atMinute1.rss - 1) * 100 : Number.NaN;
      console.log(`soak ${values.soak} at ${rate} req/s: ${describe(r)}`);
      verdict('soak: 0 errors', r.errors === 0, `${r.errors} errors`);
      verdict(
        'soak: RSS growth <= 10% between minute 1 and the end',
        growth <= 10,
        `${f(atMinute1?.rss ?? Number.NaN)} MiB at t=${atMinute1?.t}s -> ${f(end?.rss ?? Number.NaN)} MiB at t=${end?.t}s (${f(growth, 1)}%)`,
      );
    } else {
      const scenario = values.scenario as string;
      if (scenario === 'all' || scenario === 'rate') {
        const durationMs = parseDurationMs(values.duration ?? '60s');
        const rss0 = rssMiB(gw.pid);
        let peak = rss0;
        const r = await runLoad(gwUrl, rate, durationMs, () => {
          peak = Math.max(peak, rssMiB(gw.pid));
        });
        console.log(`${rate} req/s for ${durationMs / 1000} s: ${describe(r)}`);
        console.log(`  gateway RSS ${f(rss0)} MiB before, peak ${f(peak)} MiB`);
        verdict(`${rate} req/s for ${durationMs / 1000} s: 0 errors`, r.errors === 0, `${r.errors} errors`);
        verdict(
          `${rate} req/s for ${durationMs / 1000} s: >= 99% of the offered rate`,
          r.achievedRatio >= 0.99,
          `${f(r.achievedRatio * 100, 2)}% (${f(r.achievedRps, 0)} req/s)`,
        );
      }
      if (scenario === 'all' || scenario === 'snapshots') {
        const snapRate = Number(values.rate ?? 500);
        const changes = 20;
        const durationMs = 30_000;
        const plans = [[a, b], [b], [a]];
        let applied = 0;
        const lagMs: number[] = [];
        const changer = (async () => {
          await sleep(2000);
          for (let i = 0; i < changes; i++) {
            generation++;
            const t0 = performance.now();
            writeSnapshot(snap, generation, plans[i % plans.length] as ReturnType<typeof connection>[]);
            for (let k = 0; k < 100; k++) {
              const body = (await (await fetch(`${gwUrl}/readyz`)).json()) as {
                snapshot: { generation: number };
              };
              if (body.snapshot.generation === generation) {
                applied++;
                lagMs.push(performance.now() - t0);
                break;
              }
              await sleep(20);
            }
            await sleep(1200);
          }
        })();
        const r = await runLoad(gwUrl, snapRate, durationMs);
        await changer;
        console.log(
          `${changes} snapshot changes during ${snapRate} req/s for ${durationMs / 1000} s: ${describe(r)}`,
        );
        lagMs.sort((x, y) => x - y);
        console.log(
          `  ${applied}/${changes} generations applied (file write -> /readyz): median ${f(lagMs[Math.floor(lagMs.length / 2)] ?? Number.NaN, 0)} ms, max ${f(lagMs.at(-1) ?? Number.NaN, 0)} ms`,
        );
        verdict(
          `${changes} snapshot changes during ${snapRate} req/s: zero failed requests`,
          r.errors === 0 && applied === changes,
          `${r.errors} failed of ${r.offered}, ${applied}/${changes} changes applied`,
        );
      }
    }
    const served: string[] = [];
    for (const up of [upA, upB]) {
      const line = waitLine(up, /served (\d+)/, 5000).then(
        (m) => m[1] as string,
        () => '?',
      );
      up.kill('SIGTERM');
      served.push(await line);
    }
    console.log(`upstream requests served: a ${served[0]}, b ${served[1]}`);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
  if (verdicts.some((v) => !v.pass)) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  process.exit(1);
});
