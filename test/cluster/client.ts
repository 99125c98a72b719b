/**
 * Clients of the cluster's endpoint, run by the suite inside the cluster's network namespace
 * (`nsenter --net=/run/netns/<netns> node test/cluster/client.ts <mode> <json>`): the traffic comes from the
 * cluster's network, and Service names are resolved by the cluster's DNS (CoreDNS at the kube-dns address) as a
 * pod would, because the namespace has no other resolver. Prints one JSON document on stdout.
 *
 *   chat  {baseURL, apiKey, model}             models, one reply, one streamed reply (the official openai client)
 *   keys  {targets, newKey, oldKey}            per gateway pod: ms from `go <epoch ms>` on stdin until it accepts
 *                                              newKey and refuses oldKey (polled every 25 ms, direct to the pod)
 *   load  {baseURL, apiKey, model, rps}        mixed traffic at a fixed rate until stdin says `stop`; stdin
 *                                              `phase <name>` starts a new phase; prints counts per phase
 *   requests {baseURL, apiKey, model, n}       n chat completions one after the other, no retries; prints the
 *                                              count of each HTTP status
 *   forward {socket, port}                     relays connections on a Unix socket to 127.0.0.1:port in the
 *                                              namespace (how the suite reaches Prometheus) until stdin says `stop`
 */
import { Resolver } from 'node:dns/promises';
import { rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';

const [mode = '', json = '{}'] = process.argv.slice(2);
const args = JSON.parse(json) as Record<string, unknown>;
const str = (k: string) => args[k] as string;

/** Resolves through the cluster DNS (searching nothing: names are given fully qualified). */
const resolver = new Resolver();
resolver.setServers([str('dns') ?? '10.96.0.10']);
const agent = new Agent({
  connections: 512,
  connect: {
    lookup: (hostname, _opts, cb) => {
      if (/^[\d.]+$/.test(hostname)) return cb(null, [{ address: hostname, family: 4 }]);
      resolver.resolve4(hostname).then(
        (a) =>
          cb(
            null,
            a.map((address) => ({ address, family: 4 })),
          ),
        (err: Error) => cb(err, []),
      );
    },
  },
});

/**
 * The official client, over undici with the cluster-DNS lookup. Its retries (maxRetries, on connection errors,
 * 408/409/429/5xx) are what an application gets; each HTTP attempt of a request tagged with the header
 * x-e2e-request is counted, so the retries show.
 */
const attempts = new Map<string, number>();
/** Why an attempt of a tagged request did not succeed (what made the client retry): error code or HTTP status. */
const attemptFailures = new Map<string, string[]>();
function client(maxRetries = 2): OpenAI {
  return new OpenAI({
    baseURL: str('baseURL'),
    apiKey: str('apiKey'),
    maxRetries,
    timeout: 30_000,
    fetch: (async (url: string, init: Record<string, unknown>) => {
      const id = new Headers(init.headers as HeadersInit).get('x-e2e-request');
      if (id) attempts.set(id, (attempts.get(id) ?? 0) + 1);
      const fail = (why: string) => {
        if (id) attemptFailures.set(id, [...(attemptFailures.get(id) ?? []), why]);
      };
      try {
        const res = await undiciFetch(url, { ...init, dispatcher: agent } as Parameters<
          typeof undiciFetch
        >[1]);
        if (res.status >= 500 || res.status === 408 || res.status === 409 || res.status === 429)
          fail(`HTTP ${res.status}`);
        return res;
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        fail(cause?.code ?? cause?.message ?? (err as Error).message);
        throw err;
      }
    }) as unknown as typeof fetch,
  });
}

async function chat() {
  const c = client(0);
  const models = (await c.models.list()).data.map((m) => m.id);
  const reply = await c.chat.completions.create({
    model: str('model'),
    messages: [{ role: 'user', content: 'hello from inside the cluster' }],
  });
  const stream = await c.chat.completions.create({
    model: str('model'),
    stream: true,
    messages: [{ role: 'user', content: 'one two three four five six' }],
  });
  let chunks = 0;
  let text = '';
  for await (const ch of stream) {
    chunks++;
    text += ch.choices[0]?.delta.content ?? '';
  }
  return { models, reply: reply.choices[0]?.message.content ?? '', chunks, text };
}

async function status(url: string, key: string): Promise<number> {
  try {
    const r = await undiciFetch(url, { headers: { authorization: `Bearer ${key}` }, dispatcher: agent });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

/** Waits for `go <epoch ms>` on stdin (sent just before the Secret is changed), then polls every target. */
async function keys() {
  const targets = args.targets as string[];
  const rl = createInterface({ input: process.stdin });
  console.error('ready');
  const since = await new Promise<number>((resolve) =>
    rl.on('line', (line) => {
      if (line.startsWith('go ')) resolve(Number(line.slice(3)));
    }),
  );
  rl.close();
  const deadline = Date.now() + 30_000;
  const out: Record<string, { acceptsNewMs: number | null; refusesOldMs: number | null }> = {};
  await Promise.all(
    targets.map(async (base) => {
      const r = { acceptsNewMs: null as number | null, refusesOldMs: null as number | null };
      out[base] = r;
      while (
        Date.now() < deadline &&
        (r.acceptsNewMs === null || (str('oldKey') && r.refusesOldMs === null))
      ) {
        if (r.acceptsNewMs === null && (await status(`${base}/v1/models`, str('newKey'))) === 200)
          r.acceptsNewMs = Date.now() - since;
        if (
          str('oldKey') &&
          r.refusesOldMs === null &&
          (await status(`${base}/v1/models`, str('oldKey'))) === 401
        )
          r.refusesOldMs = Date.now() - since;
        await new Promise((res) => setTimeout(res, 25));
      }
    }),
  );
  return out;
}

interface Phase {
  name: string;
  sent: number;
  ok: number;
  failed: number;
  attempts: number;
  errors: string[];
  retryCauses: Record<string, number>;
  latencies: number[];
}

async function load() {
  const c = client();
  const rps = args.rps as number;
  const phases: Phase[] = [];
  const newPhase = (name: string) => {
    phases.push({ name, sent: 0, ok: 0, failed: 0, attempts: 0, errors: [], retryCauses: {}, latencies: [] });
  };
  newPhase('start');
  const inFlight = new Set<Promise<void>>();
  let stopping = false;
  let n = 0;
  const one = async (p: Phase) => {
    const kind = n++ % 10;
    const id = String(n);
    const opts = { headers: { 'x-e2e-request': id } };
    const t = performance.now();
    try {
      if (kind < 6) {
        const r = await c.chat.completions.create(
          { model: str('model'), messages: [{ role: 'user', content: `q${n}` }] },
          opts,
        );
        if (!r.choices[0]?.message.content) throw new Error('empty reply');
      } else if (kind < 9) {
        const s = await c.chat.completions.create(
          {
            model: str('model'),
            stream: true,
            messages: [{ role: 'user', content: `stream ${n} a b c d e f g h` }],
          },
          opts,
        );
        let got = '';
        for await (const ch of s) got += ch.choices[0]?.delta.content ?? '';
        if (!got) throw new Error('empty stream');
      } else {
        const m = await c.models.list(opts);
        if (!m.data.length) throw new Error('no models');
      }
      p.ok++;
      p.latencies.push(performance.now() - t);
    } catch (err) {
      p.failed++;
      if (p.errors.length < 10) p.errors.push(String((err as Error).message ?? err).slice(0, 200));
    } finally {
      p.attempts += attempts.get(id) ?? 0;
      attempts.delete(id);
      for (const why of attemptFailures.get(id) ?? []) p.retryCauses[why] = (p.retryCauses[why] ?? 0) + 1;
      attemptFailures.delete(id);
    }
  };
  const rl = createInterface({ input: process.stdin });
  console.error('ready');
  rl.on('line', (line) => {
    const [cmd, ...rest] = line.trim().split(' ');
    if (cmd === 'phase') newPhase(rest.join(' '));
    if (cmd === 'stop') stopping = true;
  });
  // Fixed-rate arrivals (open loop): a slow gateway does not lower the offered load.
  const started = performance.now();
  let due = 0;
  while (!stopping) {
    const target = Math.floor(((performance.now() - started) / 1000) * rps);
    while (due < target) {
      due++;
      const p = phases.at(-1) as Phase;
      p.sent++;
      const pr: Promise<void> = one(p).finally(() => inFlight.delete(pr));
      inFlight.add(pr);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  rl.close();
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage();
  return {
    seconds,
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    phases: phases.map(({ latencies, ...p }) => {
      const s = latencies.sort((a, b) => a - b);
      const q = (f: number) => Math.round(s[Math.min(s.length - 1, Math.floor(f * s.length))] ?? 0);
      return { ...p, retries: p.attempts - p.sent, p50Ms: q(0.5), p99Ms: q(0.99) };
    }),
  };
}

/** Chat completions in sequence without retries: what each got, by HTTP status (0: no response). */
async function requests() {
  const c = client(0);
  const statuses: Record<string, number> = {};
  for (let i = 0; i < (args.n as number); i++) {
    let status = 200;
    try {
      await c.chat.completions.create({
        model: str('model'),
        messages: [{ role: 'user', content: `r${i}` }],
      });
    } catch (err) {
      status = (err as { status?: number }).status ?? 0;
    }
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  return statuses;
}

async function forward() {
  const socket = str('socket');
  rmSync(socket, { force: true });
  const server = createServer((inbound) => {
    const outbound = connect(args.port as number, '127.0.0.1');
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  console.error('ready');
  await new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => line.trim() === 'stop' && resolve());
    rl.on('close', resolve);
  });
  server.close();
  return { forwarded: socket };
}

const modes: Record<string, () => Promise<unknown>> = { chat, keys, load, requests, forward };
const fn = modes[mode];
if (!fn) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
fn().then(
  (r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    console.error((err as Error)?.stack ?? String(err));
    process.exit(1);
  },
);
