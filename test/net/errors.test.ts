/**
 * One reading of network failures for both planes (src/net/errors.ts): real failures from real sockets, as
 * undici reports them, classify the same way wherever they come from.
 */
import { createServer } from 'node:net';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startMockProvider } from '../../src/mock-provider/index.ts';
import { BlockedAddressError } from '../../src/net/address-policy.ts';
import { classifyNetworkError } from '../../src/net/errors.ts';

async function failure(url: string, opts: Parameters<typeof request>[1] = {}): Promise<unknown> {
  try {
    const r = await request(url, opts);
    await r.body.dump();
  } catch (err) {
    return err;
  }
  throw new Error(`${url} answered`);
}

describe('classifyNetworkError', () => {
  it('reads real failures', async () => {
    // nothing listens on a port just freed
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
    expect(classifyNetworkError(await failure(`http://127.0.0.1:${port}/`))).toBe('refused');
    expect(classifyNetworkError(await failure('http://plugboard-test.invalid/'))).toBe('dns');

    // a TLS server whose certificate nobody trusts
    const tls = await startMockProvider({ profile: 'openai', tls: true });
    try {
      expect(classifyNetworkError(await failure(`${tls.url}/models`))).toBe('tls');
    } finally {
      await tls.close();
    }

    // a server that accepts and never answers: the first-byte timeout
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}/`;
      expect(classifyNetworkError(await failure(url, { headersTimeout: 200 }))).toBe('first_byte_timeout');
      expect(classifyNetworkError(await failure(url, { signal: AbortSignal.timeout(200) }))).toBe('timeout');
    } finally {
      silent.close();
    }
  });

  it('reads codes and the address policy', () => {
    expect(classifyNetworkError(Object.assign(new Error('x'), { code: 'UND_ERR_CONNECT_TIMEOUT' }))).toBe(
      'connect_timeout',
    );
    expect(classifyNetworkError(Object.assign(new Error('x'), { code: 'UND_ERR_BODY_TIMEOUT' }))).toBe(
      'idle_timeout',
    );
    expect(classifyNetworkError(Object.assign(new Error('x'), { cause: { code: 'EHOSTUNREACH' } }))).toBe(
      'unreachable',
    );
    expect(
      classifyNetworkError(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' })),
    ).toBe('reset');
    expect(
      classifyNetworkError(
        new BlockedAddressError('metadata.test', '169.254.169.254', {
          allowed: false,
          rule: 'link-local',
          explanation: 'link-local',
        }),
      ),
    ).toBe('blocked_address');
  });
});
