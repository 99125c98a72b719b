import { Pool } from 'undici';
import { type SafeConnectorOptions, safeConnector } from '../net/safe-connect.ts';
import { credentialHeaders, dialect } from '../providers/dialects.ts';
import { type SnapshotConnection, upstreamSecret } from '../snapshot/schema.ts';

/** The OpenAI API paths the gateway proxies, relative to a connection's base URL. */
export type Endpoint =
  | 'chat/completions'
  | 'completions'
  | 'embeddings'
  | 'audio/speech'
  | 'audio/transcriptions'
  | 'audio/translations'
  | 'images/generations'
  | 'images/edits'
  | 'responses';

/** The proxied endpoints by body type; tests take the list from here so they cover every route. */
export const JSON_ENDPOINTS: readonly Endpoint[] = [
  'chat/completions',
  'completions',
  'embeddings',
  'audio/speech',
  'images/generations',
  'responses',
];
export const MULTIPART_ENDPOINTS: readonly Endpoint[] = [
  'audio/transcriptions',
  'audio/translations',
  'images/edits',
];

interface ParsedBase {
  origin: string;
  basePath: string;
}
const parsedUrls = new WeakMap<SnapshotConnection, ParsedBase>();

function base(c: SnapshotConnection): ParsedBase {
  let p = parsedUrls.get(c);
  if (!p) {
    const u = new URL(c.url);
    p = { origin: u.origin, basePath: u.pathname.replace(/\/+$/, '') };
    parsedUrls.set(c, p);
  }
  return p;
}

export interface UpstreamTarget {
  origin: string;
  path: string;
  headers: Record<string, string>;
}

/**
 * Where a request goes: path and credential headers come from the connection's dialect (src/providers/dialects.ts):
 * - OpenAI and Anthropic (its OpenAI compatibility layer): `{url}/{endpoint}`.
 * - AzureOpenAI, dated api-version: `{url}/openai/deployments/{deployment}/{endpoint}?api-version=`; the Responses
 *   API is not per deployment: `{url}/openai/responses?api-version=`.
 * - AzureOpenAI, api-version v1/latest/preview: `{url}/openai/v1/{endpoint}`, the deployment in the body's model.
 * Connection `headers` are added first, so they can never override the credentials. An access token (entraID,
 * googleCloud) is sent as `Authorization: Bearer` on every dialect.
 */
export function upstreamTarget(
  c: SnapshotConnection,
  endpoint: Endpoint,
  upstreamModel: string,
): UpstreamTarget {
  // Computed once per connection, endpoint and model: a snapshot's connections are immutable.
  let byRoute = targets.get(c);
  if (!byRoute) {
    byRoute = new Map();
    targets.set(c, byRoute);
  }
  const id = `${endpoint}\u0000${upstreamModel}`;
  let t = byRoute.get(id);
  if (!t) {
    t = computeTarget(c, endpoint, upstreamModel);
    byRoute.set(id, t);
  }
  return t;
}

const targets = new WeakMap<SnapshotConnection, Map<string, UpstreamTarget>>();

function computeTarget(c: SnapshotConnection, endpoint: Endpoint, upstreamModel: string): UpstreamTarget {
  const { origin, basePath } = base(c);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.headers)) headers[k.toLowerCase()] = v;
  const secret = upstreamSecret(c);
  Object.assign(headers, credentialHeaders(c.provider, secret?.value, 'inference', secret?.scheme));
  const path = basePath + dialect(c.provider).inference(endpoint, upstreamModel, c.azureApiVersion);
  return Object.freeze({ origin, path, headers: Object.freeze(headers) });
}

export interface PoolTls {
  /** Extra CA certificates (PEM) trusted for upstream TLS, e.g. a private CA or a test certificate. */
  ca?: string | string[];
  /**
   * The address policy (default: the process's, see src/net/address-policy.ts), a resolver and a connector
   * (tests). Every upstream connection is checked against the policy and opened to the checked address.
   */
  net?: Pick<SafeConnectorOptions, 'policy' | 'resolve' | 'connect'>;
}

/**
 * One keep-alive undici Pool per upstream origin and timeout profile, shared by every connection that uses it
 * and kept across snapshot reloads. Pools unused by the current snapshot are closed once idle.
 */
export class Pools {
  private readonly pools = new Map<string, { pool: Pool; lastUsed: number }>();
  private readonly tls: PoolTls;
  private sweeper: NodeJS.Timeout;

  constructor(tls: PoolTls = {}) {
    this.tls = tls;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  get(c: SnapshotConnection): Pool {
    const { origin } = base(c);
    const t = c.timeouts;
    const key = `${origin}|${t.connectMs}|${t.firstByteMs}|${t.idleMs}`;
    let entry = this.pools.get(key);
    if (!entry) {
      entry = {
        pool: new Pool(origin, {
          connections: null,
          pipelining: 1,
          keepAliveTimeout: 4_000,
          keepAliveMaxTimeout: 600_000,
          // undici's headersTimeout is the time to the response headers: our first-byte timeout.
          headersTimeout: t.firstByteMs,
          // bodyTimeout is the longest silence between two body chunks: our idle timeout.
          bodyTimeout: t.idleMs,
          // The address policy: resolve, check every address, connect to the checked one (no rebinding).
          connect: safeConnector({ ...this.tls.net, ca: this.tls.ca, timeoutMs: t.connectMs }),
        }),
        lastUsed: Date.now(),
      };
      this.pools.set(key, entry);
    }
    entry.lastUsed = Date.now();
    return entry.pool;
  }

  /** Closes pools that have carried nothing for five minutes (connections removed or re-timed by a reload). */
  sweep(now = Date.now()): void {
    for (const [key, entry] of this.pools) {
      const s = entry.pool.stats;
      if (now - entry.lastUsed > 300_000 && s.running === 0 && s.pending === 0) {
        this.pools.delete(key);
        void entry.pool.close().catch(() => undefined);
      }
    }
  }

  get size(): number {
    return this.pools.size;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((e) => e.pool.destroy().catch(() => undefined)));
  }
}
