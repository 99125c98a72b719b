import { type BodyLimits, readBody, refuse } from './body.ts';
import { allows, type ClientKey } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { type ProxyCall, type ProxyDeps, proxy } from './proxy.ts';
import { type RequestContext, respondWithError } from './request-context.ts';
import type { Candidate, RouteTable } from './routing.ts';
import type { Endpoint } from './upstream.ts';

/** Endpoints whose streamed replies carry usage when `stream_options.include_usage` is set. */
const USAGE_STREAMING: ReadonlySet<Endpoint> = new Set(['chat/completions', 'completions']);

/**
 * Deepest nesting of arrays and objects accepted in a JSON body. Real requests nest a few levels (a tool's JSON
 * schema a few dozen); a body nested hundreds of thousands deep parses, but re-serialising it overflows the
 * stack, so it is refused at once with 400.
 */
export const MAX_JSON_DEPTH = 128;

/**
 * Most arrays and objects accepted in a JSON body. A long conversation, a batch of token arrays or a few hundred
 * tools stay in the thousands; 8 MiB of `{},` would make 2.7 million objects, about 175 MB of heap, from one
 * request.
 */
export const MAX_JSON_CONTAINERS = 100_000;

export interface JsonEndpointDeps extends ProxyDeps {
  /** The routing table in use (undefined until a snapshot is loaded). */
  table(): RouteTable | undefined;
}

/** `application/json`, with parameters and in any case; what every OpenAI client sends. */
const JSON_TYPE = /^application\/json\s*(?:;|$)/i;

/**
 * The handler of a proxied JSON endpoint (`POST /v1/chat/completions` and the others): served straight from
 * node:http, without fastify's request pipeline (hooks, parsers, reply objects), which was a sixth of the
 * gateway's CPU on a proxied chat completion. The front door has already authenticated the client.
 */
export function jsonHandler(deps: JsonEndpointDeps, limits: BodyLimits): (ctx: RequestContext) => void {
  return (ctx) => {
    const ctype = ctx.req.headers['content-type'];
    // A web page can send text/plain or a form to any address without asking (no CORS preflight); JSON it cannot.
    if (!ctype || !JSON_TYPE.test(ctype)) return refuse(ctx, errors.unsupportedMediaType('application/json'));
    readBody(ctx, limits, (body, watch) => {
      // Before anything parses it: the depth, the number of containers, and the heap parsing will take.
      const shape = jsonShape(body, MAX_JSON_DEPTH);
      if (shape.tooDeep)
        return respondWithError(
          ctx,
          errors.badJson(`arrays and objects are nested more than ${MAX_JSON_DEPTH} levels deep`),
        );
      if (shape.containers > MAX_JSON_CONTAINERS)
        return respondWithError(
          ctx,
          errors.badJson(
            `the body has more than ${MAX_JSON_CONTAINERS.toLocaleString('en')} arrays and objects`,
          ),
        );
      if (!watch.reserve(parsedHeapEstimate(body.length, shape) - body.length))
        return respondWithError(ctx, errors.busy());
      serveJson(deps, ctx, ctx.route?.endpoint as Endpoint, body, shape).catch((err: unknown) => {
        ctx.log.error({ err }, 'request failed');
        respondWithError(ctx, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
      });
    });
  };
}

/** Checks the body, routes it by `model` and proxies it; errors are OpenAI-shaped. */
export async function serveJson(
  deps: JsonEndpointDeps,
  ctx: RequestContext,
  endpoint: Endpoint,
  raw: Buffer,
  shape: JsonShape,
): Promise<void> {
  let call: ProxyCall;
  try {
    call = prepare(deps.table(), ctx, endpoint, raw, shape);
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    respondWithError(ctx, err);
    return;
  }
  await proxy(deps, ctx, call);
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
  // The table first: a scope is a glob (a regex that backtracks), and only IDs from the table are matched
  // against it, never a name of any length from the body.
  const candidates = requireTable(table).routes.get(model);
  if (!candidates || !allows(clientKey, model)) throw errors.modelNotFound(model);
  return candidates;
}

function prepare(
  table: RouteTable | undefined,
  ctx: RequestContext,
  endpoint: Endpoint,
  raw: Buffer,
  shape: JsonShape,
): ProxyCall {
  if (raw.length === 0) throw errors.badJson('the body is empty');
  const { members } = shape;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw errors.badJson((err as Error).message);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw errors.badJson('the body must be a JSON object');
  const body = parsed as Record<string, unknown>;
  // A repeated name (`"model"` twice, or once escaped as `"mod\u0065l"`) is read as the last one here and as the
  // first one by some upstreams: the model authorised would not be the model served. Go's encoding/json (Ollama,
  // LocalAI, Go proxies) also takes a name that differs only in case (Unicode simple folding) for the field:
  // `"Model"` after `"model"` is the model it serves. So names are compared folded too.
  let names = 0;
  let unfolded = false;
  for (const name in body) {
    names++;
    unfolded ||= !isFolded(name);
  }
  if (names !== members) throw errors.badJson('the body repeats a field name');
  // Distinct names that are their own folded forms (lower-case ASCII, what OpenAI's API uses) cannot collide.
  if (unfolded) {
    const folded = new Set<string>();
    for (const name in body) folded.add(name.toUpperCase().toLowerCase());
    if (folded.size !== names)
      throw errors.badJson('the body repeats a field name in another case (some upstreams read them as one)');
  }
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

/** Whether a name is its own folded form for certain: no upper-case ASCII letter and nothing beyond ASCII. */
function isFolded(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c >= 0x80) return false;
  }
  return true;
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

/** What one pass over JSON text finds, before anything parses it (jsonShape). */
export interface JsonShape {
  /** Arrays and objects nest deeper than the limit (the pass stopped there). */
  tooDeep: boolean;
  /** Members of the top-level object as written: more than the parsed object has means a repeated name. */
  members: number;
  /** Arrays and objects: what parsing costs beyond the bytes (each is tens of bytes of heap). */
  containers: number;
  /** Bytes inside strings (a parsed string takes about its length; numbers and punctuation take more). */
  stringBytes: number;
}

/**
 * One pass over JSON text, cheaper than parsing (a few microseconds for a typical request): brackets and commas
 * inside strings do not count.
 */
export function jsonShape(raw: Buffer, maxDepth: number): JsonShape {
  let depth = 0;
  let expectName = false;
  let members = 0;
  let containers = 0;
  let stringBytes = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c === 0x22) {
      if (expectName) {
        members++;
        expectName = false;
      }
      // Jump to the closing quote: one that is not escaped (preceded by an even number of backslashes).
      for (;;) {
        const q = raw.indexOf(0x22, i + 1);
        if (q < 0) return { tooDeep: false, members, containers, stringBytes }; // unterminated: JSON.parse says so
        let slashes = 0;
        while (raw[q - 1 - slashes] === 0x5c) slashes++;
        stringBytes += q - i;
        i = q;
        if (slashes % 2 === 0) break;
      }
    } else if (c === 0x7b || c === 0x5b) {
      containers++;
      if (++depth > maxDepth) return { tooDeep: true, members, containers, stringBytes };
      if (depth === 1 && c === 0x7b) expectName = true;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c && depth === 1) expectName = true;
  }
  return { tooDeep: false, members, containers, stringBytes };
}

/**
 * An upper bound of the heap a parsed body takes, measured on V8: an empty object is 64 bytes, an array 32 plus
 * its elements, a small integer in an array 4 bytes for its 2 bytes of text, a string about its length (plus a
 * header, counted with the punctuation around it). Counted against the body budget next to the bytes, since the
 * parsed body lives as long as the request.
 */
export function parsedHeapEstimate(bytes: number, shape: JsonShape): number {
  return shape.stringBytes + (bytes - shape.stringBytes) * 4 + shape.containers * 64;
}
