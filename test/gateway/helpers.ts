import OpenAI from 'openai';
import { afterEach } from 'vitest';
import { buildGateway, type Gateway, type GatewayOptions } from '../../src/gateway/app.ts';
import { MemorySnapshotSource } from '../../src/gateway/snapshot-source.ts';
import type { MockProvider, MockProviderOptions } from '../../src/mock-provider/index.ts';
import { startMockProvider } from '../../src/mock-provider/index.ts';
import { SNAPSHOT_FORMAT, type Snapshot, type SnapshotConnection } from '../../src/snapshot/schema.ts';

export interface ConnOpts {
  name: string;
  namespace?: string;
  models: string[];
  apiKey?: string;
  /** An access token the operator obtained (entraID, googleCloud), sent as Authorization: Bearer. */
  accessToken?: string;
  modelPrefix?: string;
  dropParams?: string[];
  headers?: Record<string, string>;
  azureApiVersion?: string;
  timeouts?: Partial<SnapshotConnection['timeouts']>;
  serving?: boolean;
  tags?: string[];
  url?: string;
}

const provider = (m: MockProvider | undefined) =>
  m?.profile === 'azure' ? 'AzureOpenAI' : m?.profile === 'anthropic' ? 'Anthropic' : 'OpenAI';

export function conn(mock: MockProvider | undefined, o: ConnOpts): SnapshotConnection {
  const ok = { status: 'True' as const, reason: 'Verified', message: '' };
  return {
    namespace: o.namespace ?? 'ai',
    name: o.name,
    provider: provider(mock),
    url: o.url ?? (mock as MockProvider).url,
    ...(o.apiKey ? { apiKey: o.apiKey } : {}),
    ...(o.accessToken ? { accessToken: o.accessToken } : {}),
    ...(mock?.profile === 'azure' ? { azureApiVersion: o.azureApiVersion ?? '2024-10-21' } : {}),
    headers: o.headers ?? {},
    dropParams: o.dropParams ?? [],
    ...(o.modelPrefix ? { modelPrefix: o.modelPrefix } : {}),
    tags: o.tags ?? [],
    timeouts: { connectMs: 2000, firstByteMs: 10_000, idleMs: 10_000, totalMs: 60_000, ...o.timeouts },
    serving: o.serving ?? true,
    status: { ready: ok, verified: ok },
    models: o.models.map((id) => ({ id: o.modelPrefix ? `${o.modelPrefix}.${id}` : id, upstreamId: id })),
  };
}

let generation = 1;
export function snapshot(connections: SnapshotConnection[]): Snapshot {
  return {
    format: SNAPSHOT_FORMAT,
    generation: generation++,
    generatedAt: new Date().toISOString(),
    connections,
  };
}

export interface Harness {
  gateway: Gateway;
  source: MemorySnapshotSource;
  url: string;
  client: (opts?: { apiKey?: string; maxRetries?: number; timeout?: number }) => OpenAI;
  close: () => Promise<void>;
}

export async function startGateway(
  connections: SnapshotConnection[],
  opts: Partial<GatewayOptions> = {},
): Promise<Harness> {
  const source = new MemorySnapshotSource(snapshot(connections));
  const gateway = await buildGateway({ snapshots: source, logger: false, defaultMetrics: false, ...opts });
  const url = await gateway.listen('127.0.0.1', 0);
  return {
    gateway,
    source,
    url,
    client: (o = {}) =>
      new OpenAI({
        baseURL: `${url}/v1`,
        apiKey: o.apiKey ?? 'unused',
        maxRetries: o.maxRetries ?? 0,
        timeout: o.timeout ?? 10_000,
      }),
    close: () => gateway.close(),
  };
}

export async function mock(opts: MockProviderOptions): Promise<MockProvider> {
  return startMockProvider(opts);
}

/** A URL on which nothing listens. */
export async function refusedUrl(): Promise<string> {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}/v1`;
}

export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/**
 * Per-test fixtures that close themselves after each test: `upstream(opts)` starts a simulated provider (with
 * `defaults` applied), `gateway(...)` a gateway, `onCleanup(fn)` anything else.
 */
export function useGatewayFixtures(defaults: Partial<MockProviderOptions> = {}) {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()?.();
  });
  return {
    upstream: async (opts: MockProviderOptions): Promise<MockProvider> => {
      const m = await mock({ ...defaults, ...opts } as MockProviderOptions);
      cleanup.push(() => m.close());
      return m;
    },
    gateway: async (...args: Parameters<typeof startGateway>): Promise<Harness> => {
      const h = await startGateway(...args);
      cleanup.push(() => h.close());
      return h;
    },
    onCleanup: (fn: () => Promise<unknown>) => cleanup.push(fn),
  };
}
