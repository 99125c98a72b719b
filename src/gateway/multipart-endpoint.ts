import { type BodyLimits, watchBody } from './body.ts';
import { GatewayError } from './errors.ts';
import { candidatesFor, type JsonEndpointDeps } from './json-endpoint.ts';
import { MultipartError, multipartError, readMultipart } from './multipart.ts';
import { proxy } from './proxy.ts';
import { bodyUnread, type RequestContext, respondWithError } from './request-context.ts';
import type { Endpoint } from './upstream.ts';

/**
 * The handler of a proxied multipart endpoint (audio transcriptions and translations, image edits). The whole
 * form is read and checked before a byte goes upstream (multipart.ts says why): exactly one `model` field, as
 * every common upstream parser reads it, which routes the request and is rewritten to the upstream's ID. The
 * upload counts against the same body budget and pause limit as JSON bodies, and, being held, can fail over.
 */
export function multipartHandler(deps: JsonEndpointDeps, limits: BodyLimits): (ctx: RequestContext) => void {
  return (ctx) => {
    serveMultipart(deps, ctx, limits).catch((err: unknown) => {
      // An unread upload is not drained: the connection ends with the answer.
      if (!ctx.res.headersSent && bodyUnread(ctx.req)) ctx.res.setHeader('connection', 'close');
      if (err instanceof MultipartError) return respondWithError(ctx, multipartError(err, limits.max));
      if (err instanceof GatewayError) return respondWithError(ctx, err);
      ctx.log.error({ err }, 'request failed');
      respondWithError(ctx, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
    });
  };
}

async function serveMultipart(
  deps: JsonEndpointDeps,
  ctx: RequestContext,
  limits: BodyLimits,
): Promise<void> {
  const { req } = ctx;
  const endpoint = ctx.route?.endpoint as Endpoint;
  const stall = new AbortController();
  const watch = watchBody(ctx, limits, (err) => stall.abort(err));
  let upload: Awaited<ReturnType<typeof readMultipart>>;
  try {
    upload = await readMultipart(req, {
      contentType: req.headers['content-type'],
      limit: limits.max,
      declaredLength: Number(req.headers['content-length']),
      onChunk: (chunk) => watch.chunk(chunk.length),
      signal: stall.signal,
    });
  } finally {
    watch.stop();
  }
  const candidates = candidatesFor(deps.table(), ctx.clientKey, upload.model);
  await proxy(deps, ctx, {
    endpoint,
    model: upload.model,
    candidates,
    replayable: true,
    contentType: upload.contentType,
    hideUsage: false,
    body: (c) => upload.body(c.model.upstreamId),
  });
}
