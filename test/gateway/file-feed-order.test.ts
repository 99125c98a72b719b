/**
 * A keys file's reads may finish out of order (each is several steps on libuv's thread pool, shared with DNS
 * lookups and other file I/O): a read that started before the file was deleted must not bring its keys back
 * after the deletion was seen. readFile is held here so that the order is the one an unlucky thread pool gives.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const reads = vi.hoisted(() => ({
  /** What each readFile call does, in order; past the end, ENOENT. */
  plan: [] as (() => Promise<Buffer>)[],
  calls: 0,
}));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    readFile: () => {
      const step = reads.plan[reads.calls++];
      if (step) return step();
      return Promise.reject(Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' }));
    },
  };
});

const { FileClientKeys } = await import('../../src/gateway/client-keys.ts');

const KEYS = Buffer.from('- {name: a, key: pb-order-client-key-0123456789}\n');

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('client keys file: reads that finish out of order', () => {
  it('a read that started before the deletion does not bring the keys back after it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugboard-order-'));
    dirs.push(dir);
    const file = join(dir, 'keys.yaml');
    writeFileSync(file, KEYS);
    let release: (b: Buffer) => void = () => undefined;
    reads.calls = 0;
    reads.plan = [
      // the first read: the keys
      () => Promise.resolve(KEYS),
      // a read started while the file still existed, that finishes late
      () => new Promise<Buffer>((r) => (release = r)),
      // after the deletion: ENOENT (the default)
    ];
    const keys = new FileClientKeys(file, { pollMs: 600_000 });
    await keys.start();
    try {
      expect(keys.status()).toMatchObject({ state: 'loaded', keys: 1 });
      // a change: the second read starts and stalls
      writeFileSync(file, KEYS);
      await until('the second read to start', () => reads.calls >= 2);
      // the deletion: the third read finds no file, and every key is revoked
      rmSync(file);
      await until('the deletion to revoke the keys', () => keys.status().state === 'revoked');
      // the stalled read finishes with what the file held before
      release(KEYS);
      await new Promise((r) => setTimeout(r, 50));
      expect(keys.status().state).toBe('revoked');
      expect(keys.current()?.authenticate('Bearer pb-order-client-key-0123456789')).toBeUndefined();
    } finally {
      await keys.stop();
    }
  });
});
