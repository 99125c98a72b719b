import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import { HOSTILE } from '../security/ssrf-corpus.ts';
import { invalidFixtures } from '../support/fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'plugboard.js');

/** Runs `plugboard verify` without blocking this process (the mocks answer from here). */
function verify(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'verify', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('plugboard verify (offline)', () => {
  it('catches every schema error of test/fixtures/invalid with its message, file and document', async () => {
    const res = await verify('-f', join(ROOT, 'test', 'fixtures', 'invalid'));
    expect(res.status).toBe(1);
    const lines = res.stdout.split('\n');
    const fixtures = invalidFixtures();
    expect(fixtures.length).toBeGreaterThan(10);
    for (const f of fixtures) {
      const line = lines.find((l) => l.startsWith(`ERROR test/fixtures/invalid/${f.name}.yaml#1 `));
      expect(line, f.name).toBeDefined();
      expect(line, f.name).toContain(f.expectZod);
    }
    expect(lines.at(-2)).toMatch(/^FAIL {2}\d+ invalid: /);
  });

  it('refuses every URL of the SSRF corpus that admission covers, with the words of the API server', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugboard-verify-ssrf-'));
    try {
      const refused = HOSTILE.filter((h) => h.zod);
      const docs = refused.map(
        (h, i) =>
          `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: h${i}}\nspec: {url: ${JSON.stringify(h.url)}}\n`,
      );
      writeFileSync(join(dir, 'hostile.yaml'), docs.join('---\n'));
      const res = await verify('-f', dir, '--output', 'json');
      expect(res.status).toBe(1);
      const out = JSON.parse(res.stdout) as { errors: { doc: number; field: string; message: string }[] };
      refused.forEach((h, i) => {
        const messages = out.errors.filter((e) => e.doc === i + 1).map((e) => `${e.field}: ${e.message}`);
        expect(messages.join('\n'), `${h.why}: ${JSON.stringify(h.url)}`).toContain(`spec.url: ${h.zod}`);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 for one invalid file and reports machine-readable errors with --output json', async () => {
    const res = await verify('-f', 'test/fixtures/invalid/url-with-credentials.yaml', '--output', 'json');
    expect(res.status).toBe(1);
    const out = JSON.parse(res.stdout) as { ok: boolean; errors: Record<string, unknown>[] };
    expect(out.ok).toBe(false);
    expect(out.errors).toEqual([
      expect.objectContaining({
        file: 'test/fixtures/invalid/url-with-credentials.yaml',
        doc: 1,
        field: 'spec.url',
        message: expect.stringContaining('url must not contain credentials'),
      }),
    ]);
  });

  it('passes every provider example (exit 0)', async () => {
    const res = await verify('-f', 'examples/providers');
    expect(res.stdout).toMatch(/^OK {4}valid: 23 connection\(s\)/m);
    expect(res.status).toBe(0);
  });

  it('reports YAML syntax errors and duplicates, and exits 2 without -f', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugboard-verify-'));
    try {
      const conn =
        'apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: a}\nspec: {url: http://x:1/v1}\n';
      writeFileSync(join(dir, 'a.yaml'), `${conn}---\n${conn}---\nkind: [unclosed\n`);
      writeFileSync(join(dir, 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: ai}\n');
      const res = await verify('-f', dir);
      expect(res.status).toBe(1);
      expect(res.stdout).toMatch(
        /a\.yaml#2 metadata\.name: duplicate ProviderConnection default\/a \(first defined in .*a\.yaml#1\)/,
      );
      expect(res.stdout).toMatch(/a\.yaml#3 \(yaml\): /);
      expect((await verify()).status).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('plugboard verify --connect', () => {
  const KEY = 'sk-verify-connect-key-0042';
  let openai: MockProvider;
  let noModels: MockProvider;
  let keyedNoModels: MockProvider;
  let dir: string;
  let refused: string;

  beforeAll(async () => {
    openai = await startMockProvider({ profile: 'openai', apiKey: KEY });
    noModels = await startMockProvider({ profile: 'no-models' });
    keyedNoModels = await startMockProvider({ profile: 'no-models', apiKey: KEY });
    dir = mkdtempSync(join(tmpdir(), 'plugboard-connect-'));
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    refused = `http://127.0.0.1:${(srv.address() as { port: number }).port}/v1`;
    await new Promise<void>((r) => srv.close(() => r()));
  });
  afterAll(async () => {
    await openai.close();
    await noModels.close();
    await keyedNoModels.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const secret = (key: string) =>
    `apiVersion: v1\nkind: Secret\nmetadata: {name: key}\nstringData: {apiKey: '${key}'}\n---\n`;
  const connection = (url: string, withKey = true) =>
    `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: up}\nspec: {url: '${url}'${withKey ? ', apiKeySecretRef: {name: key}' : ''}}\n`;
  const allowlistOf = (models: string) =>
    `---\napiVersion: plugboard.dev/v1alpha1\nkind: ModelAllowlist\nmetadata: {name: up}\nspec: {connectionRef: {name: up}, models: ${models}}\n`;
  const allowlist = allowlistOf('[local-model]');

  const cases: { name: string; yaml: () => string; exit: number; line: RegExp }[] = [
    {
      name: 'Verified → exit 0',
      yaml: () => secret(KEY) + connection(openai.url),
      exit: 0,
      line: /^PASS {2}default\/up Verified: 11 models exposed/m,
    },
    {
      name: 'Unauthorized → exit 1',
      yaml: () => secret('sk-wrong') + connection(openai.url),
      exit: 1,
      line: /^FAIL {2}default\/up Unauthorized: the upstream rejected the API key \(HTTP 401/m,
    },
    {
      name: 'ModelsEndpointUnsupported without an allowlist → exit 1',
      yaml: () => connection(noModels.url, false),
      exit: 1,
      line: /^FAIL {2}default\/up ModelsEndpointUnsupported: GET \/v1\/models returned HTTP 404/m,
    },
    {
      name: 'ModelsEndpointUnsupported with an allowlist → exit 0',
      yaml: () => connection(noModels.url, false) + allowlist,
      exit: 0,
      line: /^PASS {2}default\/up ModelsEndpointUnsupported: 1 allowlisted models exposed/m,
    },
    {
      name: 'a wrong key on an upstream without /models, with an allowlist → Unauthorized, exit 1',
      yaml: () => secret('sk-wrong') + connection(keyedNoModels.url) + allowlist,
      exit: 1,
      line: /^FAIL {2}default\/up Unauthorized: the upstream rejected the API key \(HTTP 401 to the verification probe POST \/v1\/chat\/completions/m,
    },
    {
      name: 'a wrong base URL without /models, with an allowlist → EndpointNotFound, exit 1',
      yaml: () => connection(`${noModels.origin}/api`, false) + allowlist,
      exit: 1,
      line: /^FAIL {2}default\/up EndpointNotFound: GET \/api\/models returned HTTP 404 and POST \/api\/chat\/completions returned HTTP 404/m,
    },
    {
      name: 'a glob on an upstream without /models → GlobNeedsModelList, exit 1',
      yaml: () => connection(noModels.url, false) + allowlistOf('[local-model, "local-*"]'),
      exit: 1,
      line: /^FAIL {2}allowlist default\/up GlobNeedsModelList: "local-\*" can never match: the upstream does not list its models/m,
    },
    {
      name: 'ConnectionRefused → exit 1',
      yaml: () => connection(refused, false),
      exit: 1,
      line: /^FAIL {2}default\/up ConnectionRefused: connection refused by 127\.0\.0\.1:\d+/m,
    },
    {
      name: 'SecretNotFound (no Secret among the files) → exit 1',
      yaml: () => connection(openai.url),
      exit: 1,
      line: /^FAIL {2}default\/up SecretNotFound: Secret "key" was not found in namespace default/m,
    },
  ];

  it.each(cases)('$name', async (c) => {
    const file = join(dir, `${c.name.replace(/\W+/g, '-')}.yaml`);
    writeFileSync(file, c.yaml());
    const res = await verify('-f', file, '--connect');
    expect(res.stdout).toMatch(c.line);
    expect(res.status).toBe(c.exit);
    expect(res.stdout + res.stderr).not.toContain(KEY);
  });

  it('reports missing allowlisted models and gives the operator conditions with --output json', async () => {
    const file = join(dir, 'missing.yaml');
    writeFileSync(
      file,
      `${secret(KEY)}${connection(openai.url)}---\napiVersion: plugboard.dev/v1alpha1\nkind: ModelAllowlist\nmetadata: {name: up}\nspec: {connectionRef: {name: up}, models: [gpt-4o, gpt-9]}\n`,
    );
    const text = await verify('-f', file, '--connect');
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(
      /^FAIL {2}allowlist default\/up ModelsMissing: the upstream does not offer 1 listed model\(s\): gpt-9/m,
    );
    const json = JSON.parse((await verify('-f', file, '--connect', '-o', 'json')).stdout) as {
      connections: {
        result: string;
        ready: { reason: string };
        verified: { reason: string };
        models: string[];
      }[];
    };
    expect(json.connections[0]).toMatchObject({
      result: 'pass',
      ready: { reason: 'Verified' },
      verified: { reason: 'Verified' },
      models: ['gpt-4o'],
    });
  });
});

describe('plugboard verify --connect --policy', () => {
  let mock: MockProvider;
  let dir: string;
  const write = (name: string, url: string) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: ${name}}\nspec: {url: '${url}'}\n`,
    );
    return file;
  };
  beforeAll(async () => {
    mock = await startMockProvider({ profile: 'openai' });
    dir = mkdtempSync(join(tmpdir(), 'plugboard-policy-'));
  });
  afterAll(async () => {
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('local (the default) allows loopback, as standalone mode does', async () => {
    const file = write('local', mock.url);
    for (const args of [[], ['--policy', 'local']]) {
      const res = await verify('-f', file, '--connect', ...args);
      expect(res.stdout).toMatch(/^INFO {2}address policy local: loopback allowed$/m);
      expect(res.stdout).toMatch(/^PASS {2}default\/local Verified: /m);
      expect(res.status).toBe(0);
    }
  });

  it('cluster refuses loopback, literal or by name, as the operator in a pod does', async () => {
    const port = new URL(mock.url).port;
    const before = mock.requests.length;
    for (const url of [mock.url, `http://localhost:${port}/v1`]) {
      const res = await verify('-f', write('cluster', url), '--connect', '--policy', 'cluster');
      expect(res.stdout).toMatch(/^INFO {2}address policy cluster: loopback refused$/m);
      expect(res.stdout).toMatch(
        /^FAIL {2}default\/cluster BlockedAddress: refused to connect: .*loopback \(127\.0\.0\.0\/8, ::1\).*--allow-loopback/m,
      );
      expect(res.status, url).toBe(1);
    }
    expect(mock.requests.length).toBe(before); // nothing was sent to it
  });

  it("cluster takes the operator's flags: --allow-loopback, --deny-cidrs, --allow-cidrs", async () => {
    const file = write('flags', mock.url);
    const allowed = await verify('-f', file, '--connect', '--policy', 'cluster', '--allow-loopback', 'true');
    expect(allowed.stdout).toMatch(/^PASS {2}default\/flags Verified: /m);
    expect(allowed.status).toBe(0);
    const denied = await verify(
      '-f',
      file,
      '--connect',
      '--policy',
      'cluster',
      '--allow-loopback',
      'true',
      '--deny-cidrs',
      '127.0.0.0/8',
    );
    expect(denied.stdout).toMatch(/^FAIL {2}default\/flags BlockedAddress: .*--deny-cidrs 127\.0\.0\.0\/8/m);
    expect(denied.status).toBe(1);
    const outside = await verify('-f', file, '--connect', '--allow-cidrs', '10.0.0.0/8', '-o', 'json');
    const json = JSON.parse(outside.stdout) as {
      policy: { mode: string; description: string };
      connections: { result: string; ready: { reason: string; message: string } }[];
    };
    // Loopback stays allowed under local, and is not subject to --allow-cidrs (as on the operator).
    expect(json.policy).toEqual({ mode: 'local', description: 'loopback allowed; allow only 10.0.0.0/8' });
    expect(json.connections[0]?.result).toBe('pass');
  });

  it('refuses a bad policy or flag with exit 2, and policy flags without --connect', async () => {
    const file = write('usage', mock.url);
    const cases: [string[], RegExp][] = [
      [['--connect', '--policy', 'pod'], /--policy must be local or cluster, not "pod"/],
      [['--policy', 'cluster'], /--policy applies only with --connect/],
      [
        ['--deny-cidrs', '10.0.0.0/8', '--policy', 'cluster'],
        /--policy, --deny-cidrs apply only with --connect/,
      ],
      [['--connect', '--deny-cidrs', '10.0.0.0/33'], /--deny-cidrs: .*invalid prefix length/],
      [['--connect', '--allow-loopback', 'yes'], /--allow-loopback must be true or false/],
      [['--connect', '--nat64-prefixes', '2001:db8::/72'], /--nat64-prefixes: .*not a NAT64 prefix/],
    ];
    for (const [args, message] of cases) {
      const res = await verify('-f', file, ...args);
      expect(res.stderr, args.join(' ')).toMatch(message);
      expect(res.status, args.join(' ')).toBe(2);
    }
  });
});
