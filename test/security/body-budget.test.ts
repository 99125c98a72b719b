/**
 * The buffer budget's shares, attacked with raw sockets: one client key's stalled bodies cannot take another
 * key's share, a kept-alive connection that changes keys counts each request against its own key, and a
 * stalled body's bytes come back when its client goes away.
 */
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { conn, type Harness, metricValue, mock, startGateway } from '../gateway/helpers.ts';
import { closed, openSocket, parseResponse, type RawResponse } from '../support/raw-http.ts';

const MiB = 1024 * 1024;
const ALICE = 'sk-client-alice-0123456789abcdef';
const BOB = 'sk-client-bob-0123456789abcdef01';

let up: MockProvider;
let h: Harness;

beforeAll(async () => {
  up = await mock({ profile: 'openai', models: ['gpt-4o'] });
  h = await startGateway([conn(up, { name: 'up', models: ['gpt-4o'] })], {
    clientKeys: new StaticClientKeys(
      JSON.stringify([
        { name: 'alice', key: ALICE },
        { name: 'bob', key: BOB },
      ]),
    ),
    // a share is a quarter of the budget, or the largest body if that is more: 1 MiB each here
    bodyBudget: 4 * MiB,
    maxJsonBody: 1 * MiB,
    maxMultipartBody: 1 * MiB,
  });
});

afterAll(async () => {
  await h?.close();
  await up?.close();
});

const held = async () =>
  metricValue(await h.gateway.metrics.registry.metrics(), 'plugboard_gateway_buffered_body_bytes', {
    kind: 'held',
  });

/** Polls until `cond` holds (generous deadline: a shared 2-core machine). */
async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function head(key: string, length: number, keepAlive = false): string {
  return (
    `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
    `authorization: Bearer ${key}\r\ncontent-length: ${length}\r\n${keepAlive ? '' : 'connection: close\r\n'}\r\n`
  );
}

const chat = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });

/** Sends one request on a kept-alive socket and reads its whole answer (content-length framing). */
function exchangeOn(socket: Socket, text: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const raw = buf.toString('latin1');
      const end = raw.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(raw.slice(0, end))?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(parseResponse(raw));
    };
    const onClose = () => {
      socket.off('data', onData);
      const raw = buf.toString('latin1');
      raw ? resolve(parseResponse(raw)) : reject(new Error('closed without an answer'));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(text);
  });
}

describe('buffer budget shares', () => {
  it("one key's stalled bodies do not take another key's share, also on a connection that changes keys", async () => {
    expect(await held()).toBe(0);
    // alice declares 900 KB and stalls: her share (1 MiB) is nearly gone
    const stalled = await openSocket(h.url);
    const stalledDone = closed(stalled);
    stalled.write(`${head(ALICE, 900_000)}{"model":"gpt-4o","pad":"`);
    await until(async () => (await held()) >= 900_000, 'the stalled body to be counted');

    // a kept-alive connection: bob first (served), then alice on the same connection (her share is taken)
    const kept = await openSocket(h.url);
    const first = await exchangeOn(kept, head(BOB, Buffer.byteLength(chat), true) + chat);
    expect(first.status).toBe(200);
    const second = await exchangeOn(kept, `${head(ALICE, 200_000, true)}{"model":"gpt-4o"`);
    expect(second.status).toBe(503);
    expect(second.headers['retry-after']?.[0]).toBe('1');
    kept.destroy();

    // bob can still hold a body as large as alice's
    const bobBig = await openSocket(h.url);
    const bobDone = closed(bobBig);
    bobBig.write(`${head(BOB, 900_000)}{"model":"gpt-4o","pad":"`);
    await until(async () => (await held()) >= 1_800_000, "bob's body to be counted beside alice's");
    bobBig.destroy();
    await bobDone;

    // alice goes away: her bytes come back, and her next request is served
    stalled.destroy();
    await stalledDone;
    await until(async () => (await held()) === 0, 'the budget to come back');
    const again = await openSocket(h.url);
    const answer = await exchangeOn(again, head(ALICE, Buffer.byteLength(chat)) + chat);
    expect(answer.status).toBe(200);
    again.destroy();
  });
});
