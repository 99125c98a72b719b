import { Readable } from 'node:stream';
import { refuse } from './body.ts';
import { errors, GatewayError } from './errors.ts';
import { candidatesFor, type JsonEndpointDeps } from './json-endpoint.ts';
import { boundaryOf, MultipartError, readMultipartHead, rewriteModel } from './multipart.ts';
import { proxy } from './proxy.ts';
import { bodyUnread, type RequestContext, respondWithError } from './request-context.ts';
import type { Endpoint } from './upstream.ts';

/**
 * The handler of a proxied multipart endpoint (audio transcriptions and translations, image edits): reads the
 * form up to its `model` field, routes by it, and streams the rest of the upload through.
 */
export function multipartHandler(deps: JsonEndpointDeps, maxBody: number): (ctx: RequestContext) => void {
  return (ctx) => {
    serveMultipart(deps, ctx, maxBody).catch((err: unknown) => {
      // An unread upload is not drained: the connection ends with the answer.
      if (!ctx.res.headersSent && bodyUnread(ctx.req)) ctx.res.setHeader('connection', 'close');
      if (err instanceof GatewayError) return respondWithError(ctx, err);
      ctx.log.error({ err }, 'request failed');
      respondWithError(ctx, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
    });
  };
}

async function serveMultipart(deps: JsonEndpointDeps, ctx: RequestContext, maxBody: number): Promise<void> {
  const { req } = ctx;
  const endpoint = ctx.route?.endpoint as Endpoint;
  const ctype = req.headers['content-type'] ?? '';
  const boundary = boundaryOf(ctype);
  if (!ctype.toLowerCase().startsWith('multipart/form-data') || !boundary)
    return refuse(ctx, errors.unsupportedMediaType('multipart/form-data (with a boundary)'));
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBody) return refuse(ctx, errors.tooLarge(maxBody));
  let head: Awaited<ReturnType<typeof readMultipartHead>>;
  try {
    head = await readMultipartHead(req, boundary, maxBody);
  } catch (err) {
    if (err instanceof MultipartError) {
      if (err.kind === 'too_large') return refuse(ctx, errors.tooLarge(maxBody));
      if (err.kind === 'no_model') return respondWithError(ctx, errors.missingModel());
      return refuse(ctx, new GatewayError(400, err.message, { code: 'invalid_multipart' }));
    }
    throw err;
  }
  const candidates = candidatesFor(deps.table(), ctx.clientKey, head.model);
  const declaredLength = Number.isFinite(declared) && declared > 0 ? declared : undefined;
  // The rest of the body is read once, so only the first candidate can be tried unless it was all read.
  const complete = req.readableEnded;
  await proxy(deps, ctx, {
    endpoint,
    model: head.model,
    candidates,
    replayable: complete,
    contentType: ctype,
    hideUsage: false,
    body: (c) => {
      const prefix = rewriteModel(head, c.model.upstreamId);
      const length =
        declaredLength === undefined ? undefined : declaredLength + prefix.length - head.prefix.length;
      if (complete) return { data: prefix, length: prefix.length };
      return {
        data: Readable.from(restOfBody(prefix, req, maxBody - head.prefix.length)),
        length,
      };
    },
  });
}

/** The routed prefix, then the rest of the upload as it arrives, bounded by the multipart limit. */
async function* restOfBody(
  prefix: Buffer,
  raw: NodeJS.ReadableStream,
  budget: number,
): AsyncGenerator<Buffer> {
  yield prefix;
  let n = 0;
  for await (const chunk of raw as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > budget) throw new GatewayError(413, 'body too large', { code: 'request_too_large' });
    yield chunk;
  }
}
