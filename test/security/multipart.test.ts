import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import {
  MULTIPART_LIMITS,
  MultipartError,
  MultipartScanner,
  multipartError,
  readMultipart,
} from '../../src/gateway/multipart.ts';
import { conn, type Harness, startGateway } from '../gateway/helpers.ts';
import { BOUNDARY, CONTENT_TYPE, HOSTILE, LEGITIMATE, type MultipartCase } from './multipart-corpus.ts';

const KEY = 'pb-multipart-0123456789';
const LIMIT = 1 << 20;

/** An upstream that answers every request and keeps what it received. */
async function recordingUpstream() {
  const received: { url: string; contentType: string; body: Buffer }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        url: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: Buffer.concat(chunks),
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"text":"ok"}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/v1`, received, server };
}

/** Sends a request over a raw socket in small, separately flushed pieces; resolves with the status and body. */
function rawPost(
  url: string,
  path: string,
  contentType: string,
  body: Buffer,
  piece = 61,
): Promise<{
  status: number;
  json: { error?: { code: string; message: string } } & Record<string, unknown>;
}> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    socket.setNoDelay(true);
    const got: Buffer[] = [];
    socket.on('data', (c) => got.push(c));
    socket.on('error', () => undefined); // the gateway may close while the rest of a refused body is on its way
    socket.on('close', () => {
      const text = Buffer.concat(got).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      let payload = text.slice(head.length + 4);
      if (/^transfer-encoding: *chunked/im.test(head)) {
        let out = '';
        for (let at = 0; ; ) {
          const n = Number.parseInt(payload.slice(at), 16);
          if (!(n > 0)) break;
          const start = payload.indexOf('\r\n', at) + 2;
          out += payload.slice(start, start + n);
          at = start + n + 2;
        }
        payload = out;
      }
      if (!status) return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`));
      try {
        resolve({ status, json: JSON.parse(payload) });
      } catch {
        reject(new Error(`not JSON: ${status} ${payload.slice(0, 200)}`));
      }
    });
    socket.on('connect', async () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${KEY}\r\n` +
          `Content-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
      );
      for (let i = 0; i < body.length && !socket.destroyed; i += piece) {
        socket.write(body.subarray(i, i + piece));
        await new Promise((r) => setImmediate(r));
      }
    });
  });
}

/** What undici's multipart parser (a real upstream-side parser) reads from a form. */
async function formFields(contentType: string, body: Buffer): Promise<[string, string][]> {
  const form = await new Response(new Uint8Array(body), {
    headers: { 'content-type': contentType },
  }).formData();
  return [...form].map(([k, v]) => [k, typeof v === 'string' ? v : `<file ${v.size}>`]);
}

const bytes = (s: string) => Buffer.from(s, 'latin1');
async function drain(data: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of data) out.push(c as Buffer);
  return Buffer.concat(out);
}
const chunked = (buf: Buffer, cuts: number[]) => {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    if (c > prev) out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
};

async function outcome(c: { contentType?: string; body: string }, chunks?: number[]) {
  const body = bytes(c.body);
  try {
    const up = await readMultipart(Readable.from(chunks ? chunked(body, chunks) : [body]), {
      contentType: c.contentType ?? CONTENT_TYPE,
      limit: LIMIT,
      declaredLength: body.length,
    });
    return { model: up.model, upload: up };
  } catch (err) {
    if (!(err instanceof MultipartError)) throw err;
    const e = multipartError(err, LIMIT);
    return { status: e.status, code: e.code, message: e.message };
  }
}

describe('multipart model check (module)', () => {
  it.each(HOSTILE.map((c) => [c.id, c] as const))('refuses %s', async (_id, c: MultipartCase) => {
    const r = await outcome(c);
    expect(r, c.why).toMatchObject({ status: c.expect.status, code: c.expect.code });
    expect(r.message).toMatch(c.expect.message);
  });

  it.each(LEGITIMATE.map((c) => [c.id, c] as const))(
    'accepts %s and forwards only the rewritten model',
    async (_id, c) => {
      const r = await outcome(c);
      expect(r.model).toBe('eu.allowed');
      const upload = r.upload;
      if (!upload) throw new Error(`refused: ${r.message}`);
      const { data, length } = upload.body('allowed');
      const sent = await drain(data);
      expect(sent.length).toBe(length);
      const before = await formFields(c.contentType, bytes(c.body));
      const after = await formFields(upload.contentType, sent);
      expect(after.filter(([k]) => k === 'model')).toEqual([['model', 'allowed']]);
      expect(after.filter(([k]) => k !== 'model')).toEqual(before.filter(([k]) => k !== 'model'));
      // a fresh stream on every call, so failover can send it again
      const again = await drain(upload.body('allowed').data);
      expect(again.equals(sent)).toBe(true);
    },
  );

  it('gives the same answer however the body is cut into chunks', async () => {
    const cases = [...HOSTILE, ...LEGITIMATE.map((c) => ({ ...c, expect: undefined }))];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...cases), fc.array(fc.nat(), { maxLength: 40 }), async (c, cuts) => {
        const whole = await outcome(c);
        const pieces = await outcome(c, cuts);
        expect({ ...pieces, upload: undefined }).toEqual({ ...whole, upload: undefined });
      }),
      { numRuns: 400, verbose: true },
    );
  });

  it('accepts any well-formed form with one model field, whatever the field order and file bytes', async () => {
    const field = fc.record({
      name: fc.constantFrom(
        'language',
        'prompt',
        'temperature',
        'timestamp_granularities[]',
        'name',
        'filename',
      ),
      value: fc.string({ maxLength: 20 }).filter((s) => !s.includes('\r') && !s.includes(BOUNDARY)),
    });
    const file = fc.uint8Array({ maxLength: 2000 }).filter((b) => !Buffer.from(b).includes(`--${BOUNDARY}`));
    await fc.assert(
      fc.asyncProperty(fc.array(field, { maxLength: 5 }), file, fc.nat(6), async (fields, data, at) => {
        const parts = fields.map((f) =>
          bytes(
            `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${f.name.replace(/"/g, '')}"\r\n\r\n${f.value}\r\n`,
          ),
        );
        parts.push(
          Buffer.concat([
            bytes(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n`),
            Buffer.from(data),
            bytes('\r\n'),
          ]),
        );
        parts.splice(
          at % (parts.length + 1),
          0,
          bytes(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\neu.allowed\r\n`),
        );
        const body = Buffer.concat([...parts, bytes(`--${BOUNDARY}--\r\n`)]);
        const up = await readMultipart(Readable.from([body]), { contentType: CONTENT_TYPE, limit: LIMIT });
        expect(up.model).toBe('eu.allowed');
        const sent = await drain(up.body('allowed').data);
        expect(sent.toString('latin1')).toBe(
          body.toString('latin1').replace('\r\n\r\neu.allowed\r\n', '\r\n\r\nallowed\r\n'),
        );
      }),
      { numRuns: 200, verbose: true },
    );
  });

  it('refuses a declared or streamed body over the limit before reading it all', async () => {
    const body = bytes(HOSTILE[0]?.body ?? '');
    await expect(
      readMultipart(Readable.from([body]), {
        contentType: CONTENT_TYPE,
        limit: 100,
        declaredLength: body.length,
      }),
    ).rejects.toMatchObject({ kind: 'too_large' });
    let pulled = 0;
    const endless = new Readable({
      read() {
        pulled++;
        this.push(
          pulled === 1
            ? bytes(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n`)
            : Buffer.alloc(4096),
        );
      },
    });
    await expect(
      readMultipart(endless, { contentType: CONTENT_TYPE, limit: 64 * 1024 }),
    ).rejects.toMatchObject({
      kind: 'too_large',
    });
    expect(pulled).toBeLessThan(40);
  });
});

describe('the boundary scan is linear', () => {
  // Work is counted in bytes examined, not time. Each hostile body is fed in tiny chunks at growing sizes; the
  // work per input byte must stay under a constant that does not depend on the size.
  const dash = BOUNDARY.length + 2;
  const nearMiss = `\r\n--${BOUNDARY.slice(0, -1)}`; // a boundary less its last byte, over and over
  const bodies: Record<string, (n: number) => Buffer> = {
    'a file of near-boundaries': (n) =>
      bytes(
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n${nearMiss.repeat(Math.ceil(n / nearMiss.length))}`,
      ),
    'a file of dashes and CRLFs': (n) =>
      bytes(
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n${'\r\n--X'.repeat(n / 5)}`,
      ),
    'many parts with long header lines': (n) =>
      bytes(
        `--${BOUNDARY}\r\n${`Content-Disposition: form-data; name="n"\r\nX-Pad: ${'a'.repeat(8000)}\r\n\r\nv\r\n--${BOUNDARY}\r\n`.repeat(Math.max(1, Math.floor(n / 8100)))}`,
      ),
  };
  const work = (body: Buffer, chunk: number) => {
    const s = new MultipartScanner(BOUNDARY, { limit: body.length + 1 });
    try {
      for (let i = 0; i < body.length; i += chunk) s.push(body.subarray(i, i + chunk));
    } catch (err) {
      if (!(err instanceof MultipartError)) throw err;
    }
    return { scanned: s.scanned, copied: s.copied };
  };

  it.each(Object.keys(bodies))('%s', (name) => {
    const make = bodies[name] as (n: number) => Buffer;
    for (const chunk of [1, 7, 4096]) {
      const perByte: number[] = [];
      for (const n of [32 * 1024, 128 * 1024, 512 * 1024]) {
        if (chunk === 1 && n > 128 * 1024) continue;
        const body = make(n);
        const { scanned, copied } = work(body, chunk);
        perByte.push(scanned / body.length);
        expect(copied).toBeLessThanOrEqual(2 * body.length);
      }
      // at most the new bytes plus a partial delimiter per chunk (and a header block read twice)
      for (const p of perByte) expect(p).toBeLessThanOrEqual(3 + (dash + 4) / chunk);
      // and the same per byte at every size: linear, not growing with n
      expect(Math.max(...perByte) / Math.min(...perByte)).toBeLessThan(1.2);
    }
  });
});

/** A gateway and a small server on the new API, both in front of a recording upstream. */
describe.each(['gateway', 'readMultipart server'])(
  'multipart uploads through the %s (raw sockets)',
  (target) => {
    let upstream: Awaited<ReturnType<typeof recordingUpstream>>;
    let h: Harness | undefined;
    let mini: Server | undefined;
    let url = '';
    beforeAll(async () => {
      upstream = await recordingUpstream();
      if (target === 'gateway') {
        h = await startGateway(
          [
            conn(undefined, {
              name: 'up',
              url: upstream.url,
              modelPrefix: 'eu',
              models: ['allowed', 'forbidden'],
            }),
          ],
          {
            maxMultipartBody: LIMIT,
            clientKeys: new StaticClientKeys(
              JSON.stringify([{ name: 'team', key: KEY, models: ['eu.allowed'] }]),
            ),
          },
        );
        url = h.url;
      } else {
        // How app.ts uses the API: read and check, authorise the model, send upload.body(upstreamId).
        mini = createServer(async (req: IncomingMessage, res) => {
          try {
            const upload = await readMultipart(req, {
              contentType: req.headers['content-type'],
              limit: LIMIT,
              declaredLength: Number(req.headers['content-length']),
            });
            if (upload.model !== 'eu.allowed') {
              res.writeHead(404, { connection: 'close' }).end('{"error":{"code":"model_not_found"}}');
              return;
            }
            const { data, length } = upload.body('allowed');
            const r = await request(`${upstream.url}/audio/transcriptions`, {
              method: 'POST',
              headers: { 'content-type': upload.contentType, 'content-length': String(length) },
              body: data,
            });
            res.writeHead(r.statusCode, { 'content-type': 'application/json' }).end(await r.body.text());
          } catch (err) {
            if (!(err instanceof MultipartError)) throw err;
            const e = multipartError(err, LIMIT);
            res.writeHead(e.status, { 'content-type': 'application/json', connection: 'close' });
            res.end(JSON.stringify(e.toJSON()));
          }
        });
        await new Promise<void>((r) => mini?.listen(0, '127.0.0.1', r));
        url = `http://127.0.0.1:${(mini.address() as { port: number }).port}`;
      }
    });
    afterAll(async () => {
      await h?.close();
      const servers = [mini, upstream.server].filter((s) => s !== undefined);
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    });

    it.each(HOSTILE.map((c) => [c.id, c] as const))(
      'refuses %s; the upstream gets nothing',
      async (_id, c) => {
        const before = upstream.received.length;
        const r = await rawPost(
          url,
          '/v1/audio/transcriptions',
          c.contentType ?? CONTENT_TYPE,
          bytes(c.body),
        );
        expect(r.status, c.why).toBe(c.expect.status);
        expect(r.json.error?.code).toBe(c.expect.code);
        // (the Content-Type messages are checked word for word in the module's tests)
        expect(r.json.error?.message).toMatch(
          c.expect.code === 'invalid_content_type' ? /multipart\/form-data/ : c.expect.message,
        );
        expect(upstream.received.length).toBe(before);
      },
    );

    it.each(LEGITIMATE.map((c) => [c.id, c] as const))(
      'accepts %s; the upstream reads only the rewritten model',
      async (_id, c) => {
        const before = upstream.received.length;
        const r = await rawPost(url, '/v1/audio/transcriptions', c.contentType, bytes(c.body));
        expect(r.status).toBe(200);
        const got = upstream.received.slice(before);
        expect(got).toHaveLength(1);
        const sent = got[0] as (typeof got)[number];
        expect(sent.body.includes('eu.allowed')).toBe(false);
        const fields = await formFields(sent.contentType, sent.body);
        expect(fields.filter(([k]) => k.toLowerCase().includes('model'))).toEqual([['model', 'allowed']]);
      },
    );

    it('no upstream ever received the forbidden model', () => {
      for (const r of upstream.received) expect(r.body.includes('forbidden')).toBe(false);
    });
  },
);

describe('limits', () => {
  it('are the documented ones', () => {
    expect(MULTIPART_LIMITS).toEqual({ headerBytes: 8192, parts: 128, modelBytes: 1024 });
  });
});
