/**
 * schemathesis (from PyPI, installed by scripts/install-schemathesis.sh, which `npm test`'s set-up runs) against a
 * live gateway and its published /openapi.json, with a simulated upstream behind it: a bounded number of
 * generated cases per operation, checking that there are no 5xx from the gateway's own code, that every status
 * code and content type is documented, and that JSON bodies match the documented schemas (every error
 * OpenAI-shaped). Fails, with the reason, when schemathesis cannot be installed or run; it is never skipped.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { conn, type Harness, mock, startGateway } from '../gateway/helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const KEY = 'pb-schemathesis-0123456789';
const MAX_EXAMPLES = 40;
const TIME_LIMIT_MS = 60_000;

/** The schemathesis executable, installing it if needed; throws with the installer's reason. */
function schemathesis(): string {
  const res = spawnSync('bash', [join(ROOT, 'scripts', 'install-schemathesis.sh')], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  const path = res.stdout?.trim().split('\n').at(-1);
  if (res.status !== 0 || !path) {
    throw new Error(
      `schemathesis is not available: scripts/install-schemathesis.sh exited ${res.status ?? res.signal}:\n` +
        `${(res.stderr ?? '').trim().slice(-2000)}`,
    );
  }
  return path;
}

interface RunResult {
  code: number | null;
  output: string;
  timedOut: boolean;
}

function run(bin: string, args: string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd,
      env: { ...process.env, NO_COLOR: '1', SCHEMATHESIS_HOOKS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, TIME_LIMIT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${bin}: ${err.message}`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}

describe('schemathesis against the published OpenAPI description', () => {
  let upstream: MockProvider;
  let h: Harness;
  let dir: string;
  beforeAll(async () => {
    upstream = await mock({ profile: 'openai' });
    h = await startGateway(
      [
        conn(upstream, {
          name: 'mock',
          models: ['gpt-4o', 'text-embedding-3-small', 'tts-1', 'whisper-1', 'dall-e-3', 'gpt-image-1'],
        }),
      ],
      {
        clientKeys: new StaticClientKeys(JSON.stringify([{ name: 'st', key: KEY }])),
        maxJsonBody: 256 * 1024,
        maxMultipartBody: 1024 * 1024,
      },
    );
    dir = mkdtempSync(join(tmpdir(), 'plugboard-st-'));
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('publishes an OpenAPI 3.1 document naming every endpoint', async () => {
    const doc = (await (await fetch(`${h.url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    for (const p of [
      '/v1/models',
      '/v1/models/{model}',
      '/v1/chat/completions',
      '/v1/completions',
      '/v1/embeddings',
      '/v1/audio/speech',
      '/v1/audio/transcriptions',
      '/v1/audio/translations',
      '/v1/images/generations',
      '/v1/images/edits',
      '/v1/responses',
      '/api/connections',
      '/healthz',
      '/readyz',
      '/metrics',
    ])
      expect(doc.paths[p], p).toBeDefined();
  });

  it(
    `no 5xx, documented statuses and content types, conforming bodies (${MAX_EXAMPLES} cases per operation)`,
    async () => {
      const bin = schemathesis();
      // The published document is generic (a model is any string); so that generated requests reach the
      // upstream and not only 404 model_not_found, this deployment's model IDs are offered as examples.
      const doc = (await (await fetch(`${h.url}/openapi.json`)).json()) as Record<string, unknown>;
      const models = ((await (await h.client({ apiKey: KEY }).models.list()).data) ?? []).map((m) => m.id);
      const specialised = JSON.parse(
        JSON.stringify(doc).replaceAll(
          '"description":"A model ID from GET /v1/models."',
          `"description":"A model ID from GET /v1/models.","enum":${JSON.stringify(models)}`,
        ),
      ) as Record<string, unknown>;
      const paths = specialised.paths as Record<string, { get?: { parameters?: Record<string, unknown>[] } }>;
      const param = paths['/v1/models/{model}']?.get?.parameters?.[0];
      if (param) param.examples = { served: { value: models[0] } };
      for (const form of ['/v1/audio/transcriptions', '/v1/audio/translations', '/v1/images/edits']) {
        type Form = { schema: { properties: { model: Record<string, unknown> } } };
        const post = (paths[form] as unknown as { post: { requestBody: { content: Record<string, Form> } } })
          .post;
        const model = post.requestBody.content['multipart/form-data']?.schema.properties.model;
        if (model) model.enum = models;
      }
      const file = join(dir, 'openapi.json');
      writeFileSync(file, JSON.stringify(specialised));
      expect(models.length).toBeGreaterThan(0);
      const report = join(dir, 'junit.xml');
      const r = await run(
        bin,
        [
          'run',
          file,
          '--url',
          h.url,
          '--checks',
          'not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance',
          '--phases',
          'examples,coverage,fuzzing',
          '--max-examples',
          String(MAX_EXAMPLES),
          '--seed',
          '8',
          '--generation-database',
          'none',
          '--no-shrink',
          // one worker: hypothesis' lambda-source introspection is not thread-safe on CPython 3.11
          '--workers',
          '1',
          '--request-timeout',
          '10',
          '--suppress-health-check',
          'all',
          '--header',
          `Authorization: Bearer ${KEY}`,
          '--report',
          'junit',
          '--report-junit-path',
          report,
          '--no-color',
        ],
        dir,
      );
      if (r.timedOut)
        throw new Error(
          `schemathesis did not finish within ${TIME_LIMIT_MS / 1000} s:\n${r.output.slice(-4000)}`,
        );
      if (r.code !== 0) throw new Error(`schemathesis failed (exit ${r.code}):\n${r.output.slice(-6000)}`);
      // it really ran cases: the JUnit report has one test case per operation
      const xml = readFileSync(report, 'utf8');
      expect((xml.match(/<testcase /g) ?? []).length).toBeGreaterThanOrEqual(15);
      const generated = Number(/(\d+) generated/.exec(r.output)?.[1] ?? 0);
      expect(generated, r.output.slice(-2000)).toBeGreaterThanOrEqual(300);
      expect(upstream.requests.length).toBeGreaterThan(0);
      // and the gateway is still healthy
      expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
    },
    TIME_LIMIT_MS + 30_000,
  );
});
