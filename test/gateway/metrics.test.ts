/**
 * Issue 17, gateway side: who spent what (per client key, by its name, never the key) and the OpenTelemetry GenAI
 * semantic-convention metrics next to the plugboard_* ones, counted from what the clients really got.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import { GatewayMetrics } from '../../src/gateway/metrics.ts';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { conn, type Harness, metricValue, mock, refusedUrl, startGateway } from './helpers.ts';

const ALICE = 'pb-metrics-alice-0123456789';
const BOB = 'pb-metrics-bob-0123456789';

describe('gateway metrics per client key and under their OpenTelemetry GenAI names', () => {
  let openai: MockProvider;
  let anthropic: MockProvider;
  let h: Harness;
  let metrics = '';
  const usage = { alicePrompt: 0, aliceCompletion: 0, bobPrompt: 0, anthropicPrompt: 0 };

  beforeAll(async () => {
    openai = await mock({ profile: 'openai', models: ['gpt-4o', 'text-embedding-3-small'] });
    anthropic = await mock({ profile: 'anthropic', models: ['claude-sonnet-4-5'] });
    h = await startGateway(
      [
        conn(openai, { name: 'openai', models: ['gpt-4o', 'text-embedding-3-small'] }),
        conn(anthropic, { name: 'claude', models: ['claude-sonnet-4-5'] }),
        conn(undefined, { name: 'down', url: await refusedUrl(), models: ['gone-model'] }),
      ],
      {
        clientKeys: new StaticClientKeys(
          JSON.stringify([
            { name: 'alice', key: ALICE },
            { name: 'bob', key: BOB },
          ]),
        ),
      },
    );
    const alice = h.client({ apiKey: ALICE });
    const bob = h.client({ apiKey: BOB });
    const plain = await alice.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'how many tokens is this' }],
    });
    usage.alicePrompt += plain.usage?.prompt_tokens ?? 0;
    usage.aliceCompletion += plain.usage?.completion_tokens ?? 0;
    const stream = await alice.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'one two three' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      usage.alicePrompt += chunk.usage?.prompt_tokens ?? 0;
      usage.aliceCompletion += chunk.usage?.completion_tokens ?? 0;
    }
    const emb = await bob.embeddings.create({ model: 'text-embedding-3-small', input: 'embed me' });
    usage.bobPrompt += emb.usage.prompt_tokens;
    const claude = await bob.chat.completions.create({
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'hello' }],
    });
    usage.anthropicPrompt += claude.usage?.prompt_tokens ?? 0;
    await expect(
      bob.chat.completions.create({ model: 'gone-model', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 502 });
    // refused before any upstream: no client key to count it under
    await expect(
      h.client({ apiKey: 'pb-not-a-key-0123456789' }).chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).rejects.toMatchObject({ status: 401 });
    // on the API port /metrics takes a client key like everything else (the metrics port takes none)
    metrics = await (
      await fetch(`${h.url}/metrics`, { headers: { authorization: `Bearer ${ALICE}` } })
    ).text();
  });
  afterAll(async () => {
    await h.close();
    await openai.close();
    await anthropic.close();
  });

  it('counts requests and tokens per client key name and model, as the clients received them', () => {
    const v = (name: string, labels: Record<string, string>) => metricValue(metrics, name, labels);
    expect(usage.alicePrompt).toBeGreaterThan(0);
    expect(
      v('plugboard_gateway_client_requests_total', { client_key: 'alice', model: 'gpt-4o', status: '200' }),
    ).toBe(2);
    expect(
      v('plugboard_gateway_client_requests_total', { client_key: 'bob', model: 'gone-model', status: '502' }),
    ).toBe(1);
    expect(v('plugboard_gateway_client_tokens_total', { client_key: 'alice', type: 'prompt' })).toBe(
      usage.alicePrompt,
    );
    expect(v('plugboard_gateway_client_tokens_total', { client_key: 'alice', type: 'completion' })).toBe(
      usage.aliceCompletion,
    );
    expect(
      v('plugboard_gateway_client_tokens_total', {
        client_key: 'bob',
        model: 'text-embedding-3-small',
        type: 'prompt',
      }),
    ).toBe(usage.bobPrompt);
    // the request with an unknown key is in no client's series, and no key text is anywhere
    expect(v('plugboard_gateway_client_requests_total', {})).toBe(5);
    for (const key of [ALICE, BOB, 'pb-not-a-key']) expect(metrics).not.toContain(key);
  });

  it('exports gen_ai.client.operation.duration, gen_ai.client.token.usage and gen_ai.server.time_to_first_token', () => {
    const v = (name: string, labels: Record<string, string>) => metricValue(metrics, name, labels);
    const gpt = {
      gen_ai_operation_name: 'chat',
      gen_ai_provider_name: 'openai',
      gen_ai_request_model: 'gpt-4o',
      server_address: '127.0.0.1',
    };
    expect(v('gen_ai_client_operation_duration_seconds_count', { ...gpt, error_type: '' })).toBe(2);
    expect(v('gen_ai_server_time_to_first_token_seconds_count', gpt)).toBe(1);
    expect(v('gen_ai_client_token_usage_sum', { ...gpt, gen_ai_token_type: 'input' })).toBe(
      usage.alicePrompt,
    );
    expect(v('gen_ai_client_token_usage_count', { ...gpt, gen_ai_token_type: 'output' })).toBe(2);
    expect(
      v('gen_ai_client_token_usage_sum', {
        gen_ai_operation_name: 'embeddings',
        gen_ai_request_model: 'text-embedding-3-small',
        gen_ai_token_type: 'input',
      }),
    ).toBe(usage.bobPrompt);
    expect(
      v('gen_ai_client_operation_duration_seconds_count', {
        gen_ai_provider_name: 'anthropic',
        gen_ai_request_model: 'claude-sonnet-4-5',
      }),
    ).toBe(1);
    expect(
      v('gen_ai_client_operation_duration_seconds_count', {
        gen_ai_request_model: 'gone-model',
        error_type: '502',
      }),
    ).toBe(1);
    // the semantic conventions' bucket advice
    expect(metrics).toContain('gen_ai_client_token_usage_bucket{le="67108864"');
    expect(metrics).toContain('gen_ai_client_operation_duration_seconds_bucket{le="81.92"');
  });
});

describe('GatewayMetrics GenAI series', () => {
  it('follow a connection whose URL changes to another host', async () => {
    const m = new GatewayMetrics({ defaultMetrics: false });
    const route = {};
    const upstream = (url: string) => conn(undefined, { name: 'moving', url, models: ['m'] });
    const rec = (url: string) =>
      m.record(route, {
        connection: 'ai/moving',
        model: 'm',
        endpoint: 'chat/completions',
        status: 200,
        seconds: 0.1,
        upstream: upstream(url),
      });
    rec('https://old.example/v1');
    rec('https://new.example/v1');
    rec('https://new.example/v1');
    const text = await m.registry.metrics();
    const count = (host: string) =>
      metricValue(text, 'gen_ai_client_operation_duration_seconds_count', { server_address: host });
    expect([count('old.example'), count('new.example')]).toEqual([1, 2]);
  });
});
