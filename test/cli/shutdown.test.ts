/**
 * Every long-running command as its real binary, with each option that opens something that must be closed
 * (watchers, servers, pools, the simulated provider): the first SIGTERM or SIGINT drains and the process exits 0
 * by itself, without the shutdown watchdog's "a handle was left open" warning; a second signal during a long
 * drain exits at once with 128 + that signal's number. Bounds are generous (a shared 2-core machine): the
 * second-signal bound only has to be well under the 60 s drain deadline.
 * The kube-backed variants (gateway --snapshot-secret / --client-keys-secret, operator) are in
 * shutdown.kube.test.ts and operator-cli.kube.test.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import { conn, snapshot } from '../gateway/helpers.ts';
import { type GatewayProcess, spawnPlugboard } from '../reliability/process.ts';
import { freePort } from '../support/control-plane.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CLIENT_KEY = 'sk-shutdown-test-client-key';
const KEYS_YAML = `- name: shutdown-test\n  key: ${CLIENT_KEY}\n`;
/** How long a clean exit may take after the signal; the drain itself is instant when nothing is in flight. */
const EXIT_BOUND_MS = 20_000;
const LEAK_WARNING = 'a handle was left open';

type Signal = 'SIGTERM' | 'SIGINT';
type Exit = { code: number | null; signal: NodeJS.Signals | null };

let dir: string;
let upstream: MockProvider;
let snapshotFile: string;
let manifestFile: string;
let manifestDir: string;
let keysFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'plugboard-shutdown-'));
  // Streams are slow (a reply of W words takes about W/2 s); plain replies are immediate.
  upstream = await startMockProvider({ profile: 'openai', chunkDelayMs: 500 });
  snapshotFile = join(dir, 'snapshot.json');
  writeFileSync(snapshotFile, JSON.stringify(snapshot([conn(upstream, { name: 'up', models: ['gpt-4o'] })])));
  manifestDir = join(dir, 'manifests');
  mkdirSync(manifestDir);
  manifestFile = join(manifestDir, 'up.yaml');
  writeFileSync(
    manifestFile,
    `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: up}\nspec: {url: "${upstream.url}"}\n`,
  );
  keysFile = join(dir, 'keys.yaml');
  writeFileSync(keysFile, KEYS_YAML);
});

afterAll(async () => {
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Case {
  command: 'gateway' | 'standalone' | 'start';
  /** The options under test, after --listen. */
  args: () => string[];
  env?: () => Record<string, string>;
  keyed?: boolean;
}

const CASES: Record<string, Case> = {
  'gateway --config-file': { command: 'gateway', args: () => ['--config-file', snapshotFile] },
  'gateway --config-file --client-keys-file': {
    command: 'gateway',
    args: () => ['--config-file', snapshotFile, '--client-keys-file', keysFile],
    keyed: true,
  },
  'gateway --config-file, PLUGBOARD_CLIENT_KEYS': {
    command: 'gateway',
    args: () => ['--config-file', snapshotFile],
    env: () => ({ PLUGBOARD_CLIENT_KEYS: KEYS_YAML }),
    keyed: true,
  },
  'gateway --config-file --metrics-listen': {
    command: 'gateway',
    args: () => ['--config-file', snapshotFile, '--metrics-listen', '127.0.0.1:0'],
  },
  'standalone -f <file>': { command: 'standalone', args: () => ['-f', manifestFile] },
  'standalone -f <dir>': { command: 'standalone', args: () => ['-f', manifestDir] },
  'standalone -f <dir> --client-keys-file': {
    command: 'standalone',
    args: () => ['-f', manifestDir, '--client-keys-file', keysFile],
    keyed: true,
  },
  'standalone -f <dir>, PLUGBOARD_CLIENT_KEYS': {
    command: 'standalone',
    args: () => ['-f', manifestDir],
    env: () => ({ PLUGBOARD_CLIENT_KEYS: KEYS_YAML }),
    keyed: true,
  },
  // start's own simulated provider runs too; -f points it at this test's upstream instead of examples/local.
  'start -f <dir>': { command: 'start', args: () => ['-f', manifestDir] },
  'start -f <dir> --client-keys-file': {
    command: 'start',
    args: () => ['-f', manifestDir, '--client-keys-file', keysFile],
    keyed: true,
  },
};

/** Runs a case until it serves the upstream's model, with one proxied request done (pools hold sockets now). */
async function serve(c: Case, extra: string[] = []): Promise<GatewayProcess> {
  const args = [...c.args(), ...extra];
  if (c.command === 'start') args.push('--mock-listen', `127.0.0.1:${await freePort()}`);
  const p = await spawnPlugboard(c.command, args, { env: c.env?.() });
  const headers = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const listed = await fetch(`${p.url}/v1/models`, { headers }).then(
      (r) => r.text(),
      () => '',
    );
    if (listed.includes('"gpt-4o"')) break;
    if (Date.now() > deadline) {
      await p.stop();
      throw new Error(`${c.command} never served gpt-4o:\n${p.logs().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const r = await fetch(`${p.url}/v1/chat/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
  });
  expect(r.status, p.logs().slice(-1500)).toBe(200);
  await r.text();
  return p;
}

/** The exit, or 'hung' when it takes longer than `ms`. */
function exitWithin(p: { exited: Promise<Exit> }, ms: number): Promise<Exit | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.exited,
    new Promise<'hung'>((r) => {
      timer = setTimeout(() => r('hung'), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function waitForLog(p: { logs(): string }, text: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!p.logs().includes(text)) {
    if (Date.now() > deadline) throw new Error(`no "${text}" in the logs:\n${p.logs().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the first signal: drain, close everything, exit 0', () => {
  const runs: [string, Signal][] = [
    ...Object.keys(CASES).map((name): [string, Signal] => [name, 'SIGTERM']),
    ['gateway --config-file --client-keys-file', 'SIGINT'],
    ['standalone -f <dir> --client-keys-file', 'SIGINT'],
    ['start -f <dir> --client-keys-file', 'SIGINT'],
  ];
  it.each(runs)(
    '%s exits 0 on %s',
    async (name, signal) => {
      const c = CASES[name] as Case;
      const p = await serve(c);
      try {
        const t0 = performance.now();
        p.child.kill(signal);
        const exit = await exitWithin(p, EXIT_BOUND_MS);
        console.log(
          `${name}, ${signal}: exit ${JSON.stringify(exit)} after ${Math.round(performance.now() - t0)} ms`,
        );
        expect(exit, p.logs().slice(-2000)).toEqual({ code: 0, signal: null });
        expect(p.logs()).toContain(`"signal":"${signal}","msg":"shutting down"`);
        expect(p.logs()).not.toContain(LEAK_WARNING);
      } finally {
        await p.stop();
      }
    },
    60_000,
  );

  it.each(['SIGTERM', 'SIGINT'] as const)('mock-provider exits 0 on %s', async (signal) => {
    const p = spawnMockProvider();
    try {
      const url = await p.url;
      const r = await fetch(`${url}/models`);
      expect(r.status).toBe(200);
      await r.text();
      p.child.kill(signal);
      const exit = await exitWithin(p, EXIT_BOUND_MS);
      expect(exit, p.logs()).toEqual({ code: 0, signal: null });
      expect(p.logs()).toContain('mock-provider: shutting down');
      expect(p.logs()).not.toContain(LEAK_WARNING);
    } finally {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    }
  });
});

describe('a second signal during a long drain exits at once', () => {
  const runs: [string, Signal, Signal, number][] = [
    ['gateway --config-file --client-keys-file', 'SIGTERM', 'SIGTERM', 143],
    ['standalone -f <dir> --client-keys-file', 'SIGINT', 'SIGINT', 130],
    ['start -f <dir> --client-keys-file', 'SIGTERM', 'SIGINT', 130],
  ];
  it.each(runs)(
    '%s: %s, then %s exits %i while a stream is open and the drain deadline is 60 s',
    async (name, first, second, status) => {
      const c = CASES[name] as Case;
      const p = await serve(c, ['--drain-timeout', '60s']);
      const abort = new AbortController();
      try {
        // A reply of 400 words: about 200 s at 500 ms per chunk, far past the drain deadline.
        const r = await fetch(`${p.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-4o',
            stream: true,
            messages: [{ role: 'user', content: Array.from({ length: 400 }, (_, i) => `w${i}`).join(' ') }],
          }),
          signal: abort.signal,
        });
        expect(r.status).toBe(200);
        const reader = (r.body as ReadableStream<Uint8Array>).getReader();
        await reader.read(); // the stream is open and in flight
        const rest = (async () => {
          for (;;) if ((await reader.read()).done) return;
        })().catch(() => undefined);

        p.child.kill(first);
        await waitForLog(p, '"deadlineMs":60000,"msg":"draining"');
        expect(p.logs()).toContain('"inFlight":1,"deadlineMs":60000');
        expect(p.child.exitCode).toBeNull(); // still draining: the stream holds it
        const t0 = performance.now();
        p.child.kill(second);
        const exit = await exitWithin(p, 20_000);
        console.log(
          `${name}: ${first} then ${second}: exit ${JSON.stringify(exit)} after ${Math.round(performance.now() - t0)} ms`,
        );
        expect(exit, p.logs().slice(-2000)).toEqual({ code: status, signal: null });
        expect(p.logs()).toContain(`"signal":"${second}","msg":"second signal: exiting now"`);
        abort.abort();
        await rest;
      } finally {
        abort.abort();
        await p.stop();
      }
    },
    60_000,
  );
});

/** `plugboard mock-provider` on a free port; `url` resolves with the base URL it prints first. */
function spawnMockProvider(): {
  child: ChildProcess;
  url: Promise<string>;
  exited: Promise<Exit>;
  logs(): string;
} {
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'plugboard.js'), 'mock-provider', '--profile', 'openai', '--listen', '127.0.0.1:0'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logs = '';
  child.stderr?.on('data', (d) => {
    logs += d;
  });
  const exited = new Promise<Exit>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const url = once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), 'line').then(
    ([line]) => {
      logs += `${line}\n`;
      const m = /listening on (\S+)$/.exec(line as string);
      if (!m?.[1]) throw new Error(`unexpected first line: ${line}`);
      return m[1];
    },
  );
  return { child, url, exited, logs: () => logs };
}
