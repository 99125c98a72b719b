/**
 * Issue 14, "revocation revokes", for a keys file (`--client-keys-file`, what standalone and a mounted Secret
 * use): rotation, removal, a malformed edit that keeps the keys in use, and deletion, which refuses every key.
 */
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileClientKeys } from '../../src/gateway/client-keys.ts';
import { conn, mock, startGateway } from './helpers.ts';

const A = 'pb-file-a-0123456789';
const A2 = 'pb-file-a2-0123456789';
const B = 'pb-file-b-0123456789';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  while (cleanup.length) await cleanup.pop()?.();
});

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('client keys from a file', () => {
  it('rotation, removal, a malformed edit, deletion and return', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugboard-keys-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'keys.yaml');
    writeFileSync(file, `- {name: a, key: ${A}}\n- {name: b, key: ${B}}\n`);
    const up = await mock({ profile: 'openai' });
    cleanup.push(() => up.close());
    const h = await startGateway([conn(up, { name: 'o', models: ['gpt-4o'] })], {
      clientKeys: new FileClientKeys(file),
    });
    cleanup.push(() => h.close());
    const status = async (key: string) =>
      (await fetch(`${h.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;
    const keysState = async () =>
      ((await (await fetch(`${h.url}/readyz`)).json()) as { clientKeys: { state: string } }).clientKeys.state;

    expect(await status(A)).toBe(200);
    writeFileSync(file, `- {name: a, key: ${A2}}\n- {name: b, key: ${B}}\n`);
    await until('rotation', async () => (await status(A)) === 401 && (await status(A2)) === 200);
    writeFileSync(file, `- {name: a, key: ${A2}}\n`);
    await until('removal', async () => (await status(B)) === 401);
    writeFileSync(file, '- {name: a, key: [');
    await until('malformed edit reported', async () => (await keysState()) === 'stale');
    expect(await status(A2)).toBe(200);
    unlinkSync(file);
    await until('deletion revokes', async () => (await status(A2)) === 401);
    const r = await fetch(`${h.url}/v1/models`, { headers: { authorization: `Bearer ${A2}` } });
    expect(((await r.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'client_keys_revoked',
      message: expect.stringContaining(`the client keys file ${file} does not exist`),
    });
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
    expect(await keysState()).toBe('revoked');
    writeFileSync(file, `- {name: a, key: ${A2}}\n`);
    await until('the file is back', async () => (await status(A2)) === 200);
    expect(await keysState()).toBe('loaded');
  }, 60_000);
});
