import { randomBytes, randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type MultipartBody, MultipartParser, multipartBoundary } from './multipart.ts';
import { defaultModelIds, type ErrorKind, type ErrorReply, type MockProfile, PROFILES } from './profiles.ts';
import {
  defaultDimensions,
  embedding,
  embeddingBase64,
  embeddingInputs,
  PERPLEXITY_CITATIONS,
  planChat,
  replyText,
  responsesInputText,
  SPEECH_CONTENT_TYPES,
  TINY_PNG,
  transcriptText,
  usage,
  wav,
} from './replies.ts';
import { countWords, SSE_DONE, sseData, sseEvent, wordChunks } from './sse.ts';
import { selfSignedCertificate } from './tls.ts';
import type {
  MockFailure,
  MockFailureScope,
  MockProvider,
  MockProviderOptions,
  RecordedRequest,
} from './types.ts';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const MAX_JSON_BODY = 32 * 1024 * 1024;
const SPEECH_CHUNK = 4096;
const GOOGLE_404_HTML =
  '<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n' +
  '  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL was not found on this server.  ' +
  '<ins>That’s all we know.</ins>\n';
const NON_JSON_HTML =
  '<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Corporate proxy</h1>' +
  '<p>Please sign in to continue.</p></body></html>\n';

/** Per-request state. */
interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  rec: RecordedRequest;
  query: URLSearchParams;
  /** The client went away (or the response is over): stop writing, wake sleepers. */
  done: boolean;
  /** We destroyed the socket on purpose (reset failure): not a client abort. */
  serverReset: boolean;
  wake: Set<() => void>;
  /** Reset after this many chunks (SSE events or body writes). */
  resetAfterChunks?: number;
  chunksWritten: number;
}

const newId = (n = 12) => randomBytes(n).toString('hex');

/** The inference paths every profile serves (POST), relative to its base. */
const POST_ROUTES = new Set([
  '/chat/completions',
  '/completions',
  '/embeddings',
  '/audio/speech',
  '/audio/transcriptions',
  '/audio/translations',
  '/images/generations',
  '/images/edits',
  '/responses',
]);
const nowSeconds = () => Math.floor(Date.now() / 1000);

export async function startMockProvider(opts: MockProviderOptions): Promise<MockProvider> {
  const base: MockProfile | undefined = PROFILES[opts.profile];
  if (!base) throw new Error(`unknown mock provider profile ${JSON.stringify(opts.profile)}`);
  const profile: MockProfile = { ...base, ...opts.quirks };
  const host = opts.host ?? '127.0.0.1';
  let models = opts.models ? [...opts.models] : defaultModelIds(opts.profile, opts.modelCount);
  let modelSet = new Set(models);
  let apiKey = opts.apiKey;
  let latencyMs = opts.latencyMs ?? 0;
  let chunkDelayMs = opts.chunkDelayMs ?? 0;
  let failure: MockFailure | undefined = opts.failure ? { ...opts.failure } : undefined;
  let failureScope: MockFailureScope = opts.failureScope ?? 'all';
  const requests: RecordedRequest[] = [];
  const ready = new WeakSet<RecordedRequest>();
  const listeners = new Set<() => void>();
  const live = new Set<Ctx>();
  const createdBase = 1_700_000_000;
  let closing = false;

  const notify = () => {
    for (const l of [...listeners]) l();
  };

  const tls = opts.tls ? await selfSignedCertificate([host]) : undefined;

  // ---- helpers --------------------------------------------------------------------------------------------

  /** Resolves true after ms, or false as soon as the request is over. */
  const sleep = (ctx: Ctx, ms: number): Promise<boolean> => {
    if (ctx.done) return Promise.resolve(false);
    if (ms <= 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        ctx.wake.delete(wake);
        resolve(!ctx.done);
      }, ms);
      ctx.wake.add(wake);
    });
  };

  const head = (ctx: Ctx, status: number, headers: Record<string, string | number>) => {
    ctx.res.writeHead(status, { 'x-request-id': `req_${newId(8)}`, ...headers });
    ctx.rec.firstByteSentAt = performance.now();
  };

  const destroy = (ctx: Ctx) => {
    ctx.serverReset = true;
    ctx.req.socket.destroy();
  };

  /** A complete (non-streamed) response. A `reset` failure with afterChunks sends half the body, then resets. */
  const send = (ctx: Ctx, status: number, contentType: string, body: string | Buffer, extra = {}) => {
    if (ctx.done) return;
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    head(ctx, status, { 'content-type': contentType, 'content-length': data.length, ...extra });
    if (ctx.resetAfterChunks !== undefined) {
      ctx.res.write(data.subarray(0, Math.floor(data.length / 2)), () => destroy(ctx));
      return;
    }
    ctx.res.end(data);
  };

  const sendJson = (ctx: Ctx, status: number, body: unknown, extra = {}) =>
    send(ctx, status, 'application/json', JSON.stringify(body), extra);

  const sendError = (ctx: Ctx, reply: ErrorReply, extra: Record<string, string> = {}) =>
    send(ctx, reply.status, reply.contentType, reply.body, extra);

  const fail = (ctx: Ctx, kind: ErrorKind, message: string, status?: number) =>
    sendError(ctx, profile.error(kind, message, status));

  /** Streamed body: writes chunks with chunkDelayMs between them, honours backpressure, aborts and resets. */
  const stream = (ctx: Ctx, status: number, headers: Record<string, string>) => {
    head(ctx, status, headers);
    ctx.res.flushHeaders();
    let first = true;
    let flushed: Promise<void> = Promise.resolve();
    /** Reset only after what was written has reached the socket, so the client sees exactly N chunks. */
    const resetNow = async () => {
      await Promise.race([flushed, new Promise<void>((resolve) => ctx.wake.add(resolve))]);
      if (!ctx.done) destroy(ctx);
    };
    return {
      async write(chunk: string | Buffer): Promise<boolean> {
        if (!first && chunkDelayMs > 0 && !(await sleep(ctx, chunkDelayMs))) return false;
        first = false;
        if (ctx.done) return false;
        if (ctx.resetAfterChunks !== undefined && ctx.chunksWritten >= ctx.resetAfterChunks) {
          await resetNow();
          return false;
        }
        ctx.chunksWritten++;
        const { promise, resolve } = Promise.withResolvers<void>();
        flushed = promise;
        if (!ctx.res.write(chunk, () => resolve())) {
          await new Promise<void>((resolve) => {
            const wake = () => resolve();
            ctx.wake.add(wake);
            ctx.res.once('drain', () => {
              ctx.wake.delete(wake);
              resolve();
            });
          });
        }
        return !ctx.done;
      },
      end(): void {
        if (ctx.done) return;
        if (ctx.resetAfterChunks !== undefined) {
          void resetNow();
          return;
        }
        ctx.res.end();
      },
    };
  };

  const sseHeaders = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

  // ---- failures -------------------------------------------------------------------------------------------

  const isModelsPath = (path: string) => /\/models(\/|$)/.test(path);

  /** The failure that applies to this request, counting down `times`. */
  const takeFailure = (path: string): MockFailure | undefined => {
    if (!failure) return undefined;
    const models = isModelsPath(path);
    if (failureScope === 'models' && !models) return undefined;
    if (failureScope === 'inference' && models) return undefined;
    const f = failure;
    if (f.times !== undefined) {
      if (f.times <= 0) {
        failure = undefined;
        return undefined;
      }
      f.times--;
      if (f.times === 0) failure = undefined;
    }
    return f;
  };

  // ---- auth -----------------------------------------------------------------------------------------------

  /** Sends the provider's auth error and returns false when the request lacks the key. */
  const authorized = (ctx: Ctx, isModels: boolean): boolean => {
    const h = ctx.rec.headers;
    if (profile.auth === 'anthropic' && isModels && !h['anthropic-version']) {
      fail(ctx, 'bad_request', 'anthropic-version: header is required');
      return false;
    }
    const bearer = /^Bearer\s+(.+)$/i.exec(h.authorization ?? '')?.[1];
    if (opts.acceptToken) {
      if (bearer !== undefined && opts.acceptToken(bearer) === undefined) return true;
      fail(ctx, 'auth', profile.tokenRejected);
      return false;
    }
    if (apiKey === undefined) return true;
    if (profile.auth === 'azure') {
      if (h['api-key'] === apiKey) return true;
      fail(
        ctx,
        'auth',
        'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key ' +
          'for an active subscription and use a correct regional API endpoint for your resource.',
      );
      return false;
    }
    if (profile.auth === 'anthropic') {
      const key = h['x-api-key'];
      if (key === apiKey || (!isModels && bearer === apiKey)) return true;
      fail(ctx, 'auth', key === undefined && isModels ? 'x-api-key header is required' : 'invalid x-api-key');
      return false;
    }
    if (bearer === apiKey) return true;
    if (bearer !== undefined && profile.wrongKey) {
      sendError(ctx, profile.wrongKey());
      return false;
    }
    if (bearer === undefined) {
      fail(
        ctx,
        'auth',
        "You didn't provide an API key. You need to provide your API key in an Authorization header using " +
          'Bearer auth (i.e. Authorization: Bearer YOUR_KEY).',
      );
    } else {
      fail(ctx, 'auth', `Incorrect API key provided: ${redact(bearer)}.`);
    }
    return false;
  };

  // ---- models ---------------------------------------------------------------------------------------------

  const notFoundPath = (ctx: Ctx) => {
    if (profile.models === 'none-text') {
      send(ctx, 404, 'text/plain; charset=utf-8', '404 page not found');
      return;
    }
    if (profile.name === 'gemini') {
      send(ctx, 404, 'text/html; charset=UTF-8', GOOGLE_404_HTML);
      return;
    }
    fail(ctx, 'not_found', `Invalid URL (${ctx.rec.method} ${ctx.rec.path})`);
  };

  const modelEntry = (id: string, i: number): Json => {
    const created = createdBase + i * 60;
    switch (profile.models) {
      case 'ownedOnly':
        return { id, object: 'model', owned_by: profile.owner };
      case 'google':
        return { id: `models/${id}`, object: 'model', owned_by: profile.owner };
      case 'openrouter': {
        const [vendor = 'vendor', name = id] = id.split('/');
        return {
          id,
          canonical_slug: id,
          name: `${vendor}: ${name}`,
          created,
          description: `Simulated model ${id}.`,
          context_length: 8192 * (1 + (i % 16)),
          architecture: { modality: 'text->text', input_modalities: ['text'], output_modalities: ['text'] },
          pricing: { prompt: '0.000001', completion: '0.000002', request: '0', image: '0' },
          top_provider: {
            context_length: 8192 * (1 + (i % 16)),
            max_completion_tokens: 4096,
            is_moderated: false,
          },
          per_request_limits: null,
          supported_parameters: ['max_tokens', 'temperature', 'tools', 'stop'],
        };
      }
      case 'azure':
        return {
          id,
          status: 'succeeded',
          created_at: created,
          updated_at: created,
          object: 'model',
          capabilities: {
            fine_tune: false,
            inference: true,
            completion: false,
            chat_completion: true,
            embeddings: id.includes('embedding'),
          },
          lifecycle_status: 'generally-available',
          deprecation: { inference: created + 365 * 86400 },
        };
      case 'anthropic':
        return {
          type: 'model',
          id,
          display_name: id
            .split('-')
            .map((w) => (w ? w[0]?.toUpperCase() + w.slice(1) : w))
            .join(' '),
          created_at: new Date(created * 1000).toISOString(),
        };
      default:
        return { id, object: 'model', created, owned_by: profile.owner };
    }
  };

  const listsModels = profile.models !== 'none-json' && profile.models !== 'none-text';

  /** The answer of a server without /models. */
  const noModelList = (ctx: Ctx) =>
    profile.models === 'none-text' ? notFoundPath(ctx) : fail(ctx, 'not_found', 'Not Found');

  const listModels = (ctx: Ctx) => {
    if (!listsModels) return noModelList(ctx);
    if (profile.models === 'anthropic') {
      const limitRaw = ctx.query.get('limit');
      const limit = limitRaw === null ? 20 : Number(limitRaw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        return fail(ctx, 'bad_request', 'limit: Input should be less than or equal to 1000');
      }
      const after = ctx.query.get('after_id');
      const before = ctx.query.get('before_id');
      let start = 0;
      let end = models.length;
      if (after !== null) start = models.indexOf(after) + 1 || models.length;
      if (before !== null) end = Math.max(0, models.indexOf(before));
      let page: string[];
      let hasMore: boolean;
      if (before !== null && after === null) {
        page = models.slice(Math.max(0, end - limit), end);
        hasMore = end - limit > 0;
      } else {
        page = models.slice(start, Math.min(end, start + limit));
        hasMore = start + limit < end;
      }
      return sendJson(ctx, 200, {
        data: page.map((id) => modelEntry(id, models.indexOf(id))),
        has_more: hasMore,
        first_id: page[0] ?? null,
        last_id: page[page.length - 1] ?? null,
      });
    }
    const data = models.map(modelEntry);
    if (profile.models === 'openrouter') return sendJson(ctx, 200, { data });
    return sendJson(ctx, 200, { object: 'list', data });
  };

  const retrieveModel = (ctx: Ctx, id: string) => {
    if (!listsModels) return noModelList(ctx);
    const i = models.indexOf(normalizeModel(id));
    if (i < 0) return fail(ctx, 'model_not_found', `The model \`${id}\` does not exist`);
    return sendJson(ctx, 200, modelEntry(models[i] as string, i));
  };

  const normalizeModel = (id: string) => (profile.name === 'gemini' ? id.replace(/^models\//, '') : id);

  // ---- inference ------------------------------------------------------------------------------------------

  /** The model the request names (azure: the deployment), or undefined after sending the error. */
  const requireModel = (ctx: Ctx, raw: unknown, deployment: string | undefined, optional = false) => {
    if (deployment !== undefined) {
      if (modelSet.has(deployment)) return deployment;
      fail(
        ctx,
        'model_not_found',
        'The API deployment for this resource does not exist. If you created the deployment within the last 5 ' +
          'minutes, please wait a moment and try again.',
      );
      return undefined;
    }
    if (typeof raw !== 'string' || raw === '') {
      if (optional) return '';
      fail(ctx, 'bad_request', 'you must provide a model parameter');
      return undefined;
    }
    if (modelSet.has(normalizeModel(raw))) return raw;
    const message =
      profile.name === 'perplexity'
        ? `Invalid model '${raw}'. Permitted models can be found in the documentation at https://docs.perplexity.ai/getting-started/models.`
        : profile.name === 'anthropic'
          ? `model: ${raw}`
          : `The model \`${raw}\` does not exist`;
    fail(ctx, 'model_not_found', message);
    return undefined;
  };

  const jsonBody = (ctx: Ctx): Json | undefined => {
    const b = ctx.rec.body;
    if (isObject(b) && !('bytes' in b && Object.keys(b).length === 1)) return b;
    fail(ctx, 'bad_request', 'We could not parse the JSON body of your request. Expected a JSON object.');
    return undefined;
  };

  const extrasFor = (body: Json): Json => {
    const extra: Json = {};
    if (profile.name === 'perplexity') {
      extra.citations = PERPLEXITY_CITATIONS;
      extra.search_results = PERPLEXITY_CITATIONS.map((url, i) => ({ title: `Source ${i + 1}`, url }));
    }
    void body;
    return extra;
  };

  /** A request body the API refuses: the profile's 400, or FastAPI's 422 with pydantic's `detail` list. */
  const invalid = (ctx: Ctx, message: string, missing: string[]) => {
    if (profile.invalidStatus !== 422) return fail(ctx, 'bad_request', message);
    return sendJson(ctx, 422, {
      object: 'error',
      message: {
        detail: missing.map((f) => ({ type: 'missing', loc: ['body', f], msg: 'Field required', input: {} })),
      },
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
  };

  const chatCompletions = async (ctx: Ctx, deployment: string | undefined) => {
    const body = jsonBody(ctx);
    if (!body) return;
    if (profile.name === 'perplexity') {
      for (const p of ['stop', 'frequency_penalty']) {
        if (body[p] !== undefined) return fail(ctx, 'bad_request', `Unsupported parameter: ${p}`);
      }
    }
    if (body.messages === undefined) {
      const missing =
        deployment === undefined && body.model === undefined ? ['model', 'messages'] : ['messages'];
      return invalid(ctx, "Missing required parameter: 'messages'.", missing);
    }
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      return invalid(ctx, "Invalid 'messages': empty array. Expected an array with minimum length 1.", []);
    }
    const model = requireModel(ctx, body.model, deployment);
    if (model === undefined) return;
    const suffix = newId();
    const plan = planChat(profile.name, normalizeModel(model), body, suffix.slice(0, 24));
    const id = `${profile.chatIdPrefix}${profile.chatIdPrefix ? suffix : randomUUID()}`;
    const created = nowSeconds();
    const extras = extrasFor(body);
    const azure = profile.name === 'azure';
    const filter = {
      hate: { filtered: false, severity: 'safe' },
      violence: { filtered: false, severity: 'safe' },
    };

    if (body.stream !== true) {
      const message: Json = { role: 'assistant', content: plan.content, refusal: null };
      if (plan.reasoning !== undefined) message.reasoning_content = plan.reasoning;
      if (plan.toolCall) {
        message.tool_calls = [
          {
            id: plan.toolCall.id,
            type: 'function',
            function: { name: plan.toolCall.name, arguments: plan.toolCall.arguments },
          },
        ];
      }
      const choice: Json = { index: 0, message, logprobs: null, finish_reason: plan.finishReason };
      if (azure) choice.content_filter_results = filter;
      const reply: Json = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [choice],
        usage: plan.reasoning
          ? { ...plan.usage, completion_tokens_details: { reasoning_tokens: countWords(plan.reasoning) } }
          : plan.usage,
        system_fingerprint: 'fp_plugboard_mock',
        ...extras,
      };
      if (azure) reply.prompt_filter_results = [{ prompt_index: 0, content_filter_results: filter }];
      return sendJson(ctx, 200, reply);
    }

    const includeUsage = isObject(body.stream_options) && body.stream_options.include_usage === true;
    const w = stream(ctx, 200, sseHeaders);
    const chunk = (delta: Json, finish: string | null): Json => {
      const choice: Json = { index: 0, delta, logprobs: null, finish_reason: finish };
      if (azure) choice.content_filter_results = finish ? {} : filter;
      const c: Json = {
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        system_fingerprint: 'fp_plugboard_mock',
        choices: [choice],
        ...extras,
      };
      if (includeUsage) c.usage = null;
      return c;
    };
    if (azure) {
      const pre = {
        choices: [],
        created: 0,
        id: '',
        model: '',
        object: '',
        prompt_filter_results: [{ prompt_index: 0, content_filter_results: filter }],
      };
      if (!(await w.write(sseData(pre)))) return;
    }
    const events: string[] = [];
    if (plan.toolCall) {
      const tc = plan.toolCall;
      events.push(
        sseData(
          chunk(
            {
              role: 'assistant',
              content: null,
              tool_calls: [
                { index: 0, id: tc.id, type: 'function', function: { name: tc.name, arguments: '' } },
              ],
            },
            null,
          ),
        ),
      );
      const pieces = tc.arguments.match(/.{1,8}/gs) ?? [tc.arguments];
      pieces.forEach((p, i) => {
        events.push(
          sseData(
            chunk(
              { tool_calls: [{ index: 0, function: { arguments: p } }] },
              i === pieces.length - 1 ? 'tool_calls' : null,
            ),
          ),
        );
      });
    } else {
      const first: Json = { role: 'assistant', content: '' };
      if (plan.reasoning !== undefined) first.reasoning_content = '';
      else first.refusal = null;
      events.push(sseData(chunk(first, null)));
      if (plan.reasoning !== undefined) {
        for (const r of wordChunks(plan.reasoning)) {
          events.push(sseData(chunk({ content: null, reasoning_content: r }, null)));
        }
      }
      const parts = wordChunks(plan.content ?? '');
      parts.forEach((p, i) => {
        const delta: Json = { content: p };
        if (plan.reasoning !== undefined) delta.reasoning_content = null;
        events.push(sseData(chunk(delta, i === parts.length - 1 ? plan.finishReason : null)));
      });
    }
    if (includeUsage) {
      events.push(
        sseData({
          id,
          object: 'chat.completion.chunk',
          created,
          model,
          system_fingerprint: 'fp_plugboard_mock',
          choices: [],
          usage: plan.usage,
        }),
      );
    }
    events.push(SSE_DONE);
    for (const e of events) if (!(await w.write(e))) return;
    w.end();
  };

  const completions = async (ctx: Ctx, deployment: string | undefined) => {
    const body = jsonBody(ctx);
    if (!body) return;
    const model = requireModel(ctx, body.model, deployment);
    if (model === undefined) return;
    const prompt = Array.isArray(body.prompt) ? String(body.prompt[0] ?? '') : String(body.prompt ?? '');
    const text = replyText(profile.name, prompt);
    const id = `cmpl-${newId()}`;
    const created = nowSeconds();
    const u = usage(countWords(prompt), countWords(text));
    if (body.stream !== true) {
      return sendJson(ctx, 200, {
        id,
        object: 'text_completion',
        created,
        model,
        choices: [{ text, index: 0, logprobs: null, finish_reason: 'stop' }],
        usage: u,
      });
    }
    const w = stream(ctx, 200, sseHeaders);
    const parts = wordChunks(text);
    for (const [i, p] of parts.entries()) {
      const c = {
        id,
        object: 'text_completion',
        created,
        model,
        choices: [
          { text: p, index: 0, logprobs: null, finish_reason: i === parts.length - 1 ? 'stop' : null },
        ],
      };
      if (!(await w.write(sseData(c)))) return;
    }
    if (isObject(body.stream_options) && body.stream_options.include_usage === true) {
      if (
        !(await w.write(sseData({ id, object: 'text_completion', created, model, choices: [], usage: u })))
      ) {
        return;
      }
    }
    if (await w.write(SSE_DONE)) w.end();
  };

  const embeddings = (ctx: Ctx, deployment: string | undefined) => {
    const body = jsonBody(ctx);
    if (!body) return;
    const model = requireModel(ctx, body.model, deployment);
    if (model === undefined) return;
    const inputs = embeddingInputs(body.input);
    if (!inputs) return fail(ctx, 'bad_request', "'input' is required: a string or an array of strings.");
    const dims = body.dimensions === undefined ? defaultDimensions(model) : Number(body.dimensions);
    if (!Number.isInteger(dims) || dims < 1 || dims > 8192) {
      return fail(ctx, 'bad_request', `Invalid value for 'dimensions': ${String(body.dimensions)}.`);
    }
    const b64 = body.encoding_format === 'base64';
    const tokens = inputs.reduce((n, t) => n + countWords(t), 0);
    return sendJson(ctx, 200, {
      object: 'list',
      data: inputs.map((t, index) => {
        const v = embedding(model, t, dims);
        return { object: 'embedding', index, embedding: b64 ? embeddingBase64(v) : v };
      }),
      model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  };

  const speech = async (ctx: Ctx, deployment: string | undefined) => {
    const body = jsonBody(ctx);
    if (!body) return;
    const model = requireModel(ctx, body.model, deployment);
    if (model === undefined) return;
    if (typeof body.input !== 'string' || body.input === '') {
      return fail(ctx, 'bad_request', "Missing required parameter: 'input'.");
    }
    const format = typeof body.response_format === 'string' ? body.response_format : 'mp3';
    const contentType = SPEECH_CONTENT_TYPES[format];
    if (!contentType) return fail(ctx, 'bad_request', `Invalid value for 'response_format': ${format}.`);
    const audio = wav(body.input);
    const w = stream(ctx, 200, { 'content-type': contentType });
    for (let off = 0; off < audio.length; off += SPEECH_CHUNK) {
      if (!(await w.write(audio.subarray(off, off + SPEECH_CHUNK)))) return;
    }
    w.end();
  };

  const multipartBody = (ctx: Ctx): MultipartBody | undefined => {
    const b = ctx.rec.body;
    if (isObject(b) && isObject(b.fields) && Array.isArray(b.files)) return b as unknown as MultipartBody;
    fail(ctx, 'bad_request', 'This endpoint expects a multipart/form-data body.');
    return undefined;
  };

  const audioText = (ctx: Ctx, deployment: string | undefined, kind: 'transcriptions' | 'translations') => {
    const body = multipartBody(ctx);
    if (!body) return;
    const model = requireModel(ctx, body.fields.model, deployment);
    if (model === undefined) return;
    const file = body.files.find((f) => f.field === 'file');
    if (!file) return fail(ctx, 'bad_request', "Missing required parameter: 'file'.");
    const text = transcriptText(kind, model, file);
    const format = body.fields.response_format ?? 'json';
    switch (format) {
      case 'text':
        return send(ctx, 200, 'text/plain; charset=utf-8', `${text}\n`);
      case 'srt':
        return send(ctx, 200, 'text/plain; charset=utf-8', `1\n00:00:00,000 --> 00:00:01,000\n${text}\n\n`);
      case 'vtt':
        return send(
          ctx,
          200,
          'text/plain; charset=utf-8',
          `WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n${text}\n\n`,
        );
      case 'verbose_json':
        return sendJson(ctx, 200, {
          task: kind === 'translations' ? 'translate' : 'transcribe',
          language: kind === 'translations' ? 'english' : (body.fields.language ?? 'english'),
          duration: 1,
          text,
          segments: [{ id: 0, seek: 0, start: 0, end: 1, text, tokens: [], temperature: 0 }],
        });
      case 'json':
        return sendJson(ctx, 200, { text, usage: { type: 'duration', seconds: 1 } });
      default:
        return fail(ctx, 'bad_request', `Invalid value for 'response_format': ${format}.`);
    }
  };

  const images = (ctx: Ctx, deployment: string | undefined, kind: 'generations' | 'edits') => {
    let params: Record<string, unknown>;
    if (kind === 'edits') {
      const body = multipartBody(ctx);
      if (!body) return;
      if (!body.files.some((f) => f.field === 'image' || f.field === 'image[]')) {
        return fail(ctx, 'bad_request', "Missing required parameter: 'image'.");
      }
      params = body.fields;
    } else {
      const body = jsonBody(ctx);
      if (!body) return;
      params = body;
    }
    const model = requireModel(ctx, params.model, deployment, true);
    if (model === undefined) return;
    if (typeof params.prompt !== 'string' || params.prompt === '') {
      return fail(ctx, 'bad_request', "Missing required parameter: 'prompt'.");
    }
    const n = Math.min(10, Math.max(1, Number(params.n ?? 1) || 1));
    const b64 =
      params.response_format === 'b64_json' || (!params.response_format && model.startsWith('gpt-image'));
    const data = Array.from({ length: n }, () =>
      b64
        ? { b64_json: TINY_PNG.toString('base64'), revised_prompt: params.prompt }
        : { url: `${origin}/mock-files/image.png`, revised_prompt: params.prompt },
    );
    return sendJson(ctx, 200, { created: nowSeconds(), data });
  };

  const responses = async (ctx: Ctx, deployment: string | undefined) => {
    const body = jsonBody(ctx);
    if (!body) return;
    const model = requireModel(ctx, body.model, deployment);
    if (model === undefined) return;
    const said = responsesInputText(body.input);
    const text = replyText(profile.name, said);
    const id = `resp_${newId()}`;
    const msgId = `msg_${newId()}`;
    const u = { input_tokens: countWords(said), output_tokens: countWords(text) };
    const base = (status: string, output: unknown[], withUsage: boolean) => ({
      id,
      object: 'response',
      created_at: nowSeconds(),
      status,
      model,
      output,
      parallel_tool_calls: true,
      tool_choice: 'auto',
      tools: [],
      usage: withUsage ? { ...u, total_tokens: u.input_tokens + u.output_tokens } : null,
    });
    const part = (t: string) => ({ type: 'output_text', text: t, annotations: [] });
    const item = (status: string, t: string | undefined) => ({
      type: 'message',
      id: msgId,
      status,
      role: 'assistant',
      content: t === undefined ? [] : [part(t)],
    });
    if (body.stream !== true) return sendJson(ctx, 200, base('completed', [item('completed', text)], true));
    const w = stream(ctx, 200, sseHeaders);
    let seq = 0;
    const ev = (type: string, payload: Json) => sseEvent(type, { type, sequence_number: seq++, ...payload });
    const events = [
      ev('response.created', { response: base('in_progress', [], false) }),
      ev('response.in_progress', { response: base('in_progress', [], false) }),
      ev('response.output_item.added', { output_index: 0, item: item('in_progress', undefined) }),
      ev('response.content_part.added', {
        item_id: msgId,
        output_index: 0,
        content_index: 0,
        part: part(''),
      }),
    ];
    for (const d of wordChunks(text)) {
      events.push(
        ev('response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta: d }),
      );
    }
    events.push(
      ev('response.output_text.done', { item_id: msgId, output_index: 0, content_index: 0, text }),
      ev('response.content_part.done', {
        item_id: msgId,
        output_index: 0,
        content_index: 0,
        part: part(text),
      }),
      ev('response.output_item.done', { output_index: 0, item: item('completed', text) }),
      ev('response.completed', { response: base('completed', [item('completed', text)], true) }),
    );
    for (const e of events) if (!(await w.write(e))) return;
    w.end();
  };

  // ---- routing --------------------------------------------------------------------------------------------

  const route = async (ctx: Ctx): Promise<void> => {
    const { method, path } = ctx.rec;
    if (method === 'GET' && path === '/mock-files/image.png') return send(ctx, 200, 'image/png', TINY_PNG);
    if (profile.name === 'github-models' && method === 'GET' && path === '/catalog/models') {
      if (!authorized(ctx, false)) return;
      return sendJson(
        ctx,
        200,
        models.map((id) => ({
          id,
          name: id.split('/').pop(),
          publisher: id.split('/')[0],
          registry: 'azure-openai',
        })),
      );
    }

    let rest: string;
    let deployment: string | undefined;
    if (profile.name === 'azure') {
      if (!path.startsWith('/openai/')) return fail(ctx, 'not_found', 'Resource not found');
      const version = ctx.query.get('api-version');
      if (path.startsWith('/openai/v1/')) {
        // The v1 API takes no dated api-version; `preview` and `latest` opt into preview features.
        if (version !== null && version !== 'preview' && version !== 'latest') {
          return sendJson(ctx, 400, {
            error: { code: 'BadRequest', message: `API version not supported: ${version}` },
          });
        }
        rest = path.slice('/openai/v1'.length);
      } else {
        if (!version) {
          return sendJson(ctx, 400, {
            error: {
              code: 'MissingApiVersionParameter',
              message: 'The api-version query parameter (?api-version=) is required for all requests.',
            },
          });
        }
        // The deployments API knows only dated versions; any other is not found.
        if (!/^\d{4}-\d{2}-\d{2}(-preview)?$/.test(version))
          return fail(ctx, 'not_found', 'Resource not found');
        const m = /^\/openai\/deployments\/([^/]+)(\/.+)$/.exec(path);
        if (m) {
          deployment = decodeURIComponent(m[1] as string);
          rest = m[2] as string;
        } else {
          rest = path.slice('/openai'.length);
        }
      }
    } else {
      const base = profile.basePath;
      if (path.startsWith(`${base}//`) || !path.startsWith(`${base}/`)) return notFoundPath(ctx);
      rest = path.slice(base.length);
    }

    const isModels = deployment === undefined && (rest === '/models' || rest.startsWith('/models/'));
    const served = isModels ? method === 'GET' && listsModels : method === 'POST' && POST_ROUTES.has(rest);
    if (!served && profile.pathBeforeKey) return isModels ? noModelList(ctx) : notFoundPath(ctx);
    if (!authorized(ctx, isModels)) return;

    if (method === 'GET' && isModels) {
      if (rest === '/models') return listModels(ctx);
      return retrieveModel(ctx, decodeURIComponent(rest.slice('/models/'.length)));
    }
    if (method === 'POST') {
      switch (rest) {
        case '/chat/completions':
          return chatCompletions(ctx, deployment);
        case '/completions':
          return completions(ctx, deployment);
        case '/embeddings':
          return embeddings(ctx, deployment);
        case '/audio/speech':
          return speech(ctx, deployment);
        case '/audio/transcriptions':
          return audioText(ctx, deployment, 'transcriptions');
        case '/audio/translations':
          return audioText(ctx, deployment, 'translations');
        case '/images/generations':
          return images(ctx, deployment, 'generations');
        case '/images/edits':
          return images(ctx, deployment, 'edits');
        case '/responses':
          return responses(ctx, deployment);
      }
    }
    if (profile.name === 'azure') return fail(ctx, 'not_found', 'Resource not found');
    return notFoundPath(ctx);
  };

  // ---- request lifecycle ----------------------------------------------------------------------------------

  const readBody = async (ctx: Ctx): Promise<unknown> => {
    const ct = ctx.rec.headers['content-type'];
    const boundary = multipartBoundary(ct);
    if (boundary) {
      const parser = new MultipartParser(boundary);
      for await (const chunk of ctx.req) parser.write(chunk as Buffer);
      return parser.end();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += (chunk as Buffer).length;
      if (size <= MAX_JSON_BODY) chunks.push(chunk as Buffer);
    }
    if (ct && /^application\/([\w.+-]*\+)?json/i.test(ct) && size > 0 && size <= MAX_JSON_BODY) {
      try {
        return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
      } catch {
        return { bytes: size };
      }
    }
    return { bytes: size };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const receivedAt = performance.now();
    const url = new URL(req.url ?? '/', 'http://mock');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
    }
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body: undefined,
      receivedAt,
    };
    requests.push(rec);
    const ctx: Ctx = {
      req,
      res,
      rec,
      query: url.searchParams,
      done: false,
      serverReset: false,
      wake: new Set(),
      chunksWritten: 0,
    };
    live.add(ctx);
    const over = () => {
      if (ctx.done) return;
      ctx.done = true;
      live.delete(ctx);
      for (const w of [...ctx.wake]) w();
      ctx.wake.clear();
    };
    res.on('finish', () => {
      rec.closedAt = performance.now();
      over();
      notify();
    });
    res.on('close', () => {
      if (!res.writableFinished && !ctx.serverReset && !closing && rec.abortedAt === undefined) {
        rec.abortedAt = performance.now();
      }
      over();
      ready.add(rec);
      notify();
    });

    try {
      rec.body = await readBody(ctx);
    } catch (err) {
      if (ctx.done) return;
      ready.add(rec);
      notify();
      return fail(ctx, 'bad_request', `Could not read the request body: ${(err as Error).message}`);
    }
    ready.add(rec);
    notify();
    if (ctx.done) return;

    const f = takeFailure(rec.path);
    if (f?.kind === 'hang') return; // never answer; the 'close' listener records the abort
    if (latencyMs > 0 && !(await sleep(ctx, latencyMs))) return;
    if (f) {
      switch (f.kind) {
        case 'status': {
          const extra: Record<string, string> = f.retryAfter ? { 'retry-after': f.retryAfter } : {};
          if (f.body !== undefined) {
            return send(ctx, f.status, f.contentType ?? 'application/json', f.body, extra);
          }
          const kind: ErrorKind =
            f.status === 401
              ? 'auth'
              : f.status === 403
                ? 'forbidden'
                : f.status === 404
                  ? 'not_found'
                  : f.status === 429
                    ? 'rate_limit'
                    : f.status === 503 || f.status === 529
                      ? 'overloaded'
                      : f.status >= 500
                        ? 'server'
                        : 'bad_request';
          const message =
            kind === 'rate_limit'
              ? 'Rate limit reached for requests. Please try again later.'
              : kind === 'overloaded'
                ? 'Overloaded'
                : kind === 'server'
                  ? 'The server had an error while processing your request. Sorry about that!'
                  : `Simulated ${f.status} error`;
          return sendError(ctx, profile.error(kind, message, f.status), extra);
        }
        case 'reset':
          if (f.afterChunks === undefined) return destroy(ctx);
          ctx.resetAfterChunks = f.afterChunks;
          break;
        case 'non-json':
          return send(ctx, 200, 'text/html; charset=utf-8', NON_JSON_HTML);
      }
    }
    try {
      await route(ctx);
    } catch (err) {
      if (ctx.done) return;
      if (res.headersSent) {
        destroy(ctx);
        return;
      }
      fail(ctx, 'server', `mock provider error: ${(err as Error).message}`);
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  };
  const server = tls
    ? https.createServer({ key: tls.key, cert: tls.cert, keepAlive: true }, onRequest)
    : http.createServer({ keepAlive: true }, onRequest);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const origin = `${tls ? 'https' : 'http'}://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${addr.port}`;
  const url = profile.name === 'azure' ? origin : `${origin}${profile.basePath}`;

  const waitFor = (pred: (r: RecordedRequest) => boolean, timeoutMs: number, what: string) =>
    new Promise<RecordedRequest>((resolve, reject) => {
      const check = () => {
        const hit = requests.find((r) => ready.has(r) && pred(r));
        if (!hit) return false;
        done();
        resolve(hit);
        return true;
      };
      const timer = setTimeout(() => {
        done();
        const seen = requests
          .map((r) => `${r.method} ${r.path}${r.abortedAt ? ' (aborted)' : ''}`)
          .join(', ');
        reject(new Error(`mock provider ${profile.name}: no ${what} within ${timeoutMs} ms; saw [${seen}]`));
      }, timeoutMs);
      const listener = () => {
        check();
      };
      const done = () => {
        clearTimeout(timer);
        listeners.delete(listener);
      };
      listeners.add(listener);
      check();
    });

  let closed: Promise<void> | undefined;
  const provider: MockProvider = {
    profile: profile.name,
    url,
    origin,
    caCert: tls?.cert,
    requests,
    setFailure(f, scope = 'all') {
      failure = f ? { ...f } : undefined;
      failureScope = scope;
    },
    setModels(ids) {
      models = [...ids];
      modelSet = new Set(models);
    },
    setApiKey(key) {
      apiKey = key;
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    setChunkDelay(ms) {
      chunkDelayMs = ms;
    },
    waitForRequest: (pred, timeoutMs = 5000) => waitFor(pred, timeoutMs, 'matching request'),
    waitForAbort: (pred, timeoutMs = 5000) =>
      waitFor((r) => r.abortedAt !== undefined && pred(r), timeoutMs, 'matching aborted request'),
    reset() {
      requests.length = 0;
    },
    close() {
      closing = true;
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const ctx of [...live]) {
          ctx.done = true;
          for (const w of [...ctx.wake]) w();
        }
        live.clear();
      });
      return closed;
    },
  };
  return provider;
}

function redact(key: string): string {
  return key.length <= 8
    ? '*'.repeat(key.length)
    : `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}`;
}
