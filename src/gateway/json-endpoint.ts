import { allows, type ClientKey } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { type ProxyCall, type ProxyDeps, proxy, type RequestContext, writeError } from './proxy.ts';
import type { Candidate, RouteTable } from './routing.ts';
import type { Endpoint } from './upstream.ts';

/** Endpoints whose streamed replies carry usage when `stream_options.include_usage` is set. */
const USAGE_STREAMING: ReadonlySet<Endpoint> = new Set(['chat/completions', 'completions']);

export interface JsonEndpointDeps extends ProxyDeps {
  /** The routing table in use (undefined until a snapshot is loaded). */
  table(): RouteTable | undefined;
}

/**
 * Serves one request to a JSON endpoint: checks the body, routes it by `model` and proxies it. Both server paths
 * (the node:http hot path and fastify's routes) end here, so they answer alike; errors are OpenAI-shaped.
 */
export async function serveJson(
  deps: JsonEndpointDeps,
  ctx: RequestContext,
  endpoint: Endpoint,
  raw: Buffer | undefined,
): Promise<void> {
  let call: ProxyCall;
  try {
    call = prepare(deps.table(), ctx, endpoint, raw);
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    respondWithError(ctx, err);
    return;
  }
  await proxy(deps, ctx, call);
}

/** Answers with an OpenAI-shaped error and writes the access line. */
export function respondWithError(ctx: RequestContext, err: GatewayError): void {
  writeError(ctx.res, ctx.id, err);
  ctx.logged();
  ctx.log.info(
    {
      method: ctx.req.method,
      url: ctx.req.url,
      status: err.status,
      ms: Math.round(performance.now() - ctx.started),
      ...(ctx.clientKey ? { clientKey: ctx.clientKey.name } : {}),
    },
    'request completed',
  );
}

/** The routing table, or 503 while no snapshot is loaded. */
export function requireTable(table: RouteTable | undefined): RouteTable {
  if (!table) throw errors.unavailable('The gateway has no routing snapshot yet.');
  return table;
}

/** The connections that may serve `model` to this client: 503 without a snapshot, 404 for a model it may not use. */
export function candidatesFor(
  table: RouteTable | undefined,
  clientKey: ClientKey | undefined,
  model: string,
): Candidate[] {
  const routes = requireTable(table).routes;
  const candidates = allows(clientKey, model) ? routes.get(model) : undefined;
  if (!candidates) throw errors.modelNotFound(model);
  return candidates;
}

function prepare(
  table: RouteTable | undefined,
  ctx: RequestContext,
  endpoint: Endpoint,
  raw: Buffer | undefined,
): ProxyCall {
  if (!raw || raw.length === 0) throw errors.badJson('the body is empty');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw errors.badJson((err as Error).message);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw errors.badJson('the body must be a JSON object');
  const body = parsed as Record<string, unknown>;
  const model = body.model;
  if (typeof model !== 'string' || model === '') throw errors.missingModel();
  const candidates = candidatesFor(table, ctx.clientKey, model);
  const stream = body.stream === true;
  const so = body.stream_options as Record<string, unknown> | undefined | null;
  const clientWantsUsage = !!so && typeof so === 'object' && so.include_usage === true;
  const injectUsage = stream && USAGE_STREAMING.has(endpoint) && !clientWantsUsage;
  let keys: string[] | undefined;
  // One candidate is the rule; failover re-asks for the body of the next one.
  let lastFor: Candidate | undefined;
  let last: Buffer | undefined;
  return {
    endpoint,
    model,
    candidates,
    replayable: true,
    contentType: 'application/json',
    hideUsage: injectUsage,
    body: (c) => {
      if (c !== lastFor || !last) {
        keys ??= Object.keys(body);
        last = upstreamBody(raw, body, keys, c, model, injectUsage);
        lastFor = c;
      }
      return { data: last, length: last.length };
    },
  };
}

const SPLICE_USAGE = Buffer.from(',"stream_options":{"include_usage":true}');

/**
 * The body sent upstream. Untouched bytes when nothing changes; when the only change is asking for usage and the
 * client sent no stream_options, the field is spliced in before the closing brace; otherwise re-serialised.
 */
function upstreamBody(
  raw: Buffer,
  body: Record<string, unknown>,
  keys: string[],
  c: Candidate,
  model: string,
  injectUsage: boolean,
): Buffer {
  const drop = c.connection.dropParams;
  const dropping = drop.length > 0 && keys.some((k) => drop.includes(k));
  const inject = injectUsage && !drop.includes('stream_options');
  const renaming = c.model.upstreamId !== model;
  if (!dropping && !renaming && !inject) return raw;
  if (!dropping && !renaming && body.stream_options === undefined) {
    const end = raw.lastIndexOf(0x7d); // '}'
    if (end > 0) return Buffer.concat([raw.subarray(0, end), SPLICE_USAGE, raw.subarray(end)]);
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) if (!drop.includes(k)) out[k] = body[k];
  out.model = c.model.upstreamId;
  if (inject) {
    const so = body.stream_options;
    out.stream_options = { ...(so && typeof so === 'object' ? so : {}), include_usage: true };
  }
  return Buffer.from(JSON.stringify(out), 'utf8');
}
