import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BodyBudget, watchBody } from '../../src/gateway/body.ts';
import { parseClientKeys } from '../../src/gateway/client-keys.ts';
import { type InFlightHandle, InFlightRequests } from '../../src/gateway/in-flight.ts';
import { jsonShape } from '../../src/gateway/json-endpoint.ts';
import { ModelRewriter } from '../../src/gateway/model-rewrite.ts';
import { readMultipart } from '../../src/gateway/multipart.ts';
import type { RequestContext } from '../../src/gateway/request-context.ts';
import { FileSnapshotSource } from '../../src/gateway/snapshot-source.ts';
import { SseUsageTap, usageFromJsonTail } from '../../src/gateway/sse.ts';
import { encodeSnapshot } from '../../src/snapshot/codec.ts';
import { propertyRun } from '../support/property.ts';
import { snapshot } from './helpers.ts';

const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const STREAM =
  ev({ id: 'a', choices: [{ index: 0, delta: { content: 'Hel' } }], usage: null }) +
  ev({ id: 'a', choices: [{ index: 0, delta: { content: 'lo "usage" ü' } }] }) +
  ev({ id: 'a', choices: [], usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 } }) +
  'data: [DONE]\n\n';
const WITHOUT_USAGE = STREAM.replace(/data: \{"id":"a","choices":\[\],"usage".*?\n\n/, '');

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out.filter((b) => b.length > 0);
}

describe('SSE usage tap', () => {
  it('counts usage and hides the usage chunk, whatever the chunk boundaries', () => {
    const bytes = Buffer.from(STREAM);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (cuts, hide) => {
        const tap = new SseUsageTap({ hideUsage: hide });
        const out = Buffer.concat([...splitAt(bytes, cuts).map((c) => tap.push(c)), tap.flush()]).toString();
        expect(out).toBe(hide ? WITHOUT_USAGE : STREAM);
        expect(tap.usage).toEqual({ promptTokens: 3, completionTokens: 5 });
      }),
      propertyRun('SSE usage tap across chunk boundaries', 300),
    );
  });

  it('handles CRLF event separators', () => {
    const crlf = STREAM.replaceAll('\n\n', '\r\n\r\n');
    const tap = new SseUsageTap({ hideUsage: true });
    const out = Buffer.concat([tap.push(Buffer.from(crlf)), tap.flush()]).toString();
    expect(out).not.toContain('"choices":[]');
    expect(out).toContain('[DONE]');
  });
});

describe('usage of a JSON reply', () => {
  it('reads the usage object after the content, nested details included, and nothing from a broken tail', () => {
    const reply = JSON.stringify({
      choices: [{ message: { content: 'a "usage": {"prompt_tokens": 999} lookalike }{' } }],
      usage: { prompt_tokens: 9, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 2 } },
    });
    // the gateway decodes from the last "usage" key on; the whole reply still finds the real one last
    const tail = reply.slice(reply.lastIndexOf('"usage"'));
    expect(usageFromJsonTail(tail)).toEqual({ promptTokens: 9, completionTokens: 7 });
    expect(usageFromJsonTail('{"output":[],"usage":{"input_tokens":4,"output_tokens":2}}')).toEqual({
      promptTokens: 4,
      completionTokens: 2,
    });
    expect(usageFromJsonTail('{"usage": {"prompt_tokens": 3')).toBeUndefined();
    expect(usageFromJsonTail('{"usage": null}')).toBeUndefined();
    expect(usageFromJsonTail('{"choices":[]}')).toBeUndefined();
    // a hostile upstream's counts: negative ones would make a Prometheus counter go down and break /metrics
    expect(usageFromJsonTail('{"usage":{"prompt_tokens":-5,"completion_tokens":1.5}}')).toBeUndefined();
    expect(usageFromJsonTail('{"usage":{"prompt_tokens":1e300,"completion_tokens":2}}')).toEqual({
      promptTokens: undefined,
      completionTokens: 2,
    });
  });
});

describe('in-flight requests (what drain waits for and ends)', () => {
  it('tracks any order of starts and ends, and terminates exactly the unfinished ones', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat()), { maxLength: 60 }), (steps) => {
        const list = new InFlightRequests();
        const live = new Map<number, InFlightHandle>();
        const terminated: number[] = [];
        let next = 0;
        for (const [start, pick] of steps) {
          if (start || live.size === 0) {
            const id = next++;
            live.set(id, list.add({ terminate: () => terminated.push(id) }));
          } else {
            const id = [...live.keys()][pick % live.size] as number;
            list.remove(live.get(id) as InFlightHandle);
            list.remove(live.get(id) as InFlightHandle); // a second end changes nothing
            live.delete(id);
          }
          expect(list.size).toBe(live.size);
        }
        list.terminateAll();
        expect(terminated.sort((a, b) => a - b)).toEqual([...live.keys()].sort((a, b) => a - b));
      }),
      propertyRun('in-flight requests in any order', 100),
    );
  });

  it('lets a request end itself while all are being terminated', () => {
    const list = new InFlightRequests();
    const handles: InFlightHandle[] = [];
    let calls = 0;
    for (let i = 0; i < 3; i++)
      handles.push(
        list.add({
          terminate: () => {
            calls++;
            for (const h of handles) list.remove(h);
          },
        }),
      );
    list.terminateAll();
    expect(calls).toBe(1);
    expect(list.size).toBe(0);
  });
});

describe('multipart upload', () => {
  const boundary = '----b0undary';
  const read = (stream: Readable, limit: number) =>
    readMultipart(stream, { contentType: `multipart/form-data; boundary=${boundary}`, limit });
  const form = (fields: [string, string, string?][]) =>
    Buffer.from(
      `${fields
        .map(
          ([name, value, filename]) =>
            `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n${value}\r\n`,
        )
        .join('')}--${boundary}--\r\n`,
    );

  it('finds model before or after the file with any chunking, and rewrites it', async () => {
    const file = 'x'.repeat(3000);
    for (const body of [
      form([
        ['model', 'eu.whisper-1'],
        ['file', file, 'a.wav'],
      ]),
      form([
        ['file', file, 'a.wav'],
        ['language', 'en'],
        ['model', 'eu.whisper-1'],
      ]),
    ]) {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.nat(), { maxLength: 8 }), async (cuts) => {
          const upload = await read(Readable.from(splitAt(body, cuts)), 1 << 20);
          expect(upload.model).toBe('eu.whisper-1');
          const out: Buffer[] = [];
          for await (const c of upload.body('whisper-1').data) out.push(c as Buffer);
          expect(Buffer.concat(out).toString()).toBe(body.toString().replace('eu.whisper-1', 'whisper-1'));
        }),
        propertyRun('multipart model before or after the file', 40),
      );
    }
  });

  it('reports a missing model and a body over the limit', async () => {
    await expect(read(Readable.from([form([['file', 'abc', 'a.wav']])]), 1 << 20)).rejects.toMatchObject({
      kind: 'no_model',
    });
    await expect(
      read(
        Readable.from([
          form([
            ['file', 'y'.repeat(5000), 'a.wav'],
            ['model', 'm'],
          ]),
        ]),
        1000,
      ),
    ).rejects.toMatchObject({ kind: 'too_large' });
  });
});

describe('client keys', () => {
  it('authenticates by key or sha256 and rejects others', () => {
    const set = parseClientKeys(`
- name: team-a
  key: pb-team-a-secret
  models: ["gpt-*"]
- name: ci
  sha256: ${createHash('sha256').update('pb-ci-secret').digest('hex')}
`);
    expect(set.authenticate('Bearer pb-team-a-secret')?.name).toBe('team-a');
    expect(set.authenticate('Bearer pb-ci-secret')?.name).toBe('ci');
    expect(set.authenticate('Bearer nope')).toBeUndefined();
    expect(set.authenticate(undefined)).toBeUndefined();
    expect(() => parseClientKeys('[{name: x}]')).toThrow(/exactly one of key or sha256/);
  });
});

/** Waits for a watcher to see a change (event-driven with a poll as safety net; generous bound). */
async function until(cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('not within the time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('FileSnapshotSource', () => {
  it('loads YAML or the gzipped wire format, keeps the last good snapshot on a broken file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-snap-'));
    const path = join(dir, 'snapshot.yaml');
    try {
      const s1 = snapshot([]);
      writeFileSync(path, JSON.stringify(s1));
      const src = new FileSnapshotSource(path, { pollMs: 100 });
      const seen: number[] = [];
      src.subscribe((s) => s && seen.push(s.generation));
      await src.start();
      expect(src.current()?.generation).toBe(s1.generation);
      writeFileSync(path, 'format: 1\ngeneration: [broken');
      await until(() => src.status().lastError !== undefined);
      expect(src.status().state).toBe('stale');
      expect(src.status().lastError).toMatch(/YAML syntax error at line 2, column \d+|does not match/);
      expect(src.current()?.generation).toBe(s1.generation);
      const s2 = snapshot([]);
      writeFileSync(path, encodeSnapshot(s2));
      await until(() => src.current()?.generation === s2.generation);
      expect(src.status().lastError).toBeUndefined();
      await src.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ModelRewriter', () => {
  const map = (v: string) => (v === 'gpt-4o' ? 'eu.gpt-4o' : `eu.${v}`);
  const whole = (text: string) => {
    const r = new ModelRewriter(map);
    return Buffer.concat([r.push(Buffer.from(text)), r.flush()]).toString();
  };

  it('rewrites model members, and only those', () => {
    expect(whole('{"id":"x","model":"gpt-4o","o":{"model" : "gpt-4o-2024"}}')).toBe(
      '{"id":"x","model":"eu.gpt-4o","o":{"model" : "eu.gpt-4o-2024"}}',
    );
    // a value "model", an escaped key, a non-string value and an escaped value stay
    for (const t of [
      '{"role":"model"}',
      '{"c":"say \\"model\\": \\"x\\""}',
      '{"model":1}',
      '{"model":"a\\"b"}',
    ])
      expect(whole(t)).toBe(t);
  });

  it('gives the same bytes however the body is cut into chunks', () => {
    const body =
      'data: {"id":"1","model":"gpt-4o","choices":[]}\n\ndata: {"model":  "gpt-4o-mini","x":"model"}\n\ndata: [DONE]\n\n';
    const expected = whole(body);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: body.length - 1 }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const r = new ModelRewriter(map);
        const parts: Buffer[] = [];
        let from = 0;
        for (const p of [...points, body.length]) {
          parts.push(r.push(Buffer.from(body.slice(from, p))));
          from = p;
        }
        parts.push(r.flush());
        expect(Buffer.concat(parts).toString()).toBe(expected);
      }),
      propertyRun('model rewrite across chunks', 500),
    );
  });
});

describe('jsonShape', () => {
  const containersOf = (v: unknown): number =>
    v !== null && typeof v === 'object'
      ? 1 + Object.values(v as Record<string, unknown>).reduce<number>((n, x) => n + containersOf(x), 0)
      : 0;
  const depthOf = (v: unknown): number =>
    v !== null && typeof v === 'object'
      ? 1 + Math.max(0, ...Object.values(v as Record<string, unknown>).map(depthOf))
      : 0;

  it('counts the top-level members as written and finds the nesting depth, strings and escapes included', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.boolean(), (value, spaced) => {
        const text = JSON.stringify(value, null, spaced ? 1 : undefined);
        const depth = depthOf(value) || 1;
        const shape = jsonShape(Buffer.from(text), depth);
        expect(shape).toMatchObject({ tooDeep: false, members: Object.keys(value).length });
        expect(shape.containers).toBe(containersOf(value));
        if (depth > 1) expect(jsonShape(Buffer.from(text), depth - 1).tooDeep).toBe(true);
      }),
      propertyRun('jsonShape', 1000),
    );
  });

  it('sees a repeated name, also when one is escaped', () => {
    expect(jsonShape(Buffer.from('{"model":"a","mod\\u0065l":"b"}'), 8).members).toBe(2);
    expect(jsonShape(Buffer.from('{"a":"x\\\\","b":"y\\"z","c":[{"d":1,"e":2}]}'), 8)).toMatchObject({
      tooDeep: false,
      members: 3,
      containers: 3,
    });
  });
});

describe('BodyBudget', () => {
  it('gives each client a share, so one client cannot hold every body the gateway may hold', () => {
    const budget = new BodyBudget(100, 10); // share: a quarter, 25
    const owner = (k: string) => budget.ownerOf(`key:${k}`);
    const [a, b, c, d, e] = [owner('a'), owner('b'), owner('c'), owner('d'), owner('e')];
    expect(budget.share).toBe(25);
    expect(budget.ownerOf('key:a')).toBe(a); // one record per owner
    expect(budget.take(20, a)).toBe(true);
    expect(budget.take(10, a)).toBe(false);
    expect(budget.take(20, b)).toBe(true);
    expect(budget.take(20, c)).toBe(true);
    expect(budget.take(20, d)).toBe(true);
    expect(budget.take(25, e)).toBe(false); // the whole budget is held
    budget.give(20, a);
    expect(budget.take(25, a)).toBe(true);
    expect(budget.inUse).toBe(85);
    // a body larger than a quarter is still possible when the largest allowed body says so
    expect(new BodyBudget(100, 60).share).toBe(60);
  });

  it('never prunes the record of a body being watched, so a client cannot get a second share', () => {
    const budget = new BodyBudget(400, 0); // share 100
    const limits = { max: 1000, idleMs: 60_000, budget };
    const request = (address: string) =>
      ({
        req: { headers: {}, socket: { remoteAddress: address } },
        clientKey: undefined,
        release: () => undefined,
      }) as unknown as RequestContext;
    const a1 = request('10.0.0.1');
    const upload = watchBody(a1, limits, () => undefined); // chunked, nothing sent yet: holds 0
    for (let i = 0; i < 5000; i++) budget.ownerOf(`addr:10.1.${i >> 8}.${i & 255}`); // past the pruning bound
    upload.chunk(100);
    const a2 = request('10.0.0.1'); // the same client on another connection
    const second = watchBody(a2, limits, () => undefined);
    expect(() => second.chunk(1)).toThrow(/busy|capacity|retry/i);
    a1.release();
    a2.release();
    expect(budget.inUse).toBe(0);
  });
});
