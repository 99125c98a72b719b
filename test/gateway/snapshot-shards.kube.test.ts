import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesSnapshotSource } from '../../src/gateway/snapshot-source.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { SnapshotWriter } from '../../src/operator/snapshot-writer.ts';
import {
  encodeSnapshot,
  GENERATION_ANNOTATION,
  SHA256_ANNOTATION,
  SHARD_LABEL,
  SHARDS_ANNOTATION,
  SNAPSHOT_DATA_KEY,
  SNAPSHOT_SECRET_NAME,
  shardSecretName,
  snapshotSha256,
  splitSnapshot,
} from '../../src/snapshot/index.ts';
import { Api, log } from '../operator/harness.ts';
import { bigConnection, snap } from '../snapshot/fixtures.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';

const CHUNK = 16 * 1024;

/** Polls until `cond` holds; the deadline allows for a busy machine (a watch event normally takes ms). */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('a snapshot sharded over several Secrets (operator writer → gateway source)', () => {
  const kc = testKubeConfig();
  const client = new KubeClient(kc);
  const cleanups: (() => unknown)[] = [];
  let ns: string;
  let api: Api;
  let writer: SnapshotWriter;
  let src: KubernetesSnapshotSource;
  let written = { generation: 0, bytes: 0, secrets: 0 };
  /** What the writer loaded from the new namespace before its first write. */
  let loadedAtStart: unknown;
  const a = bigConnection('a', 3000);
  const b = bigConnection('b', 3000, 'sk-b');
  const secretPath = (name: string) => `/api/v1/namespaces/${ns}/secrets/${name}`;
  const shardVersions = async (n: number) =>
    Promise.all(
      Array.from(
        { length: n },
        async (_, i) => (await api.secretMeta(shardSecretName(SNAPSHOT_SECRET_NAME, i + 1)))?.resourceVersion,
      ),
    );

  beforeAll(async () => {
    ns = await createNamespace(kc, 'gw-shards');
    api = new Api(kc, ns);
    writer = new SnapshotWriter({
      client,
      namespace: ns,
      name: SNAPSHOT_SECRET_NAME,
      log,
      chunkBytes: CHUNK,
      debounceMs: 1,
      minIntervalMs: 1,
      onWritten: (generation, bytes, secrets) => {
        written = { generation, bytes, secrets };
      },
    });
    cleanups.push(() => writer.stop());
    loadedAtStart = await writer.load();
    src = new KubernetesSnapshotSource(kc, ns);
    src.backoff.initial = 50;
    cleanups.push(() => src.stop());
    await src.start();
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    client.close();
  });

  /**
   * The state each test starts from, whatever ran before it: connections a and b, sharded, applied by the
   * gateway. Returns the number of shard Secrets.
   */
  async function sharded(): Promise<number> {
    writer.delete('ai/c');
    writer.set('ai/a', a);
    writer.set('ai/b', b);
    await writer.flush();
    await until(() => src.current()?.generation === writer.currentGeneration, 'the sharded snapshot');
    return Number((await api.secretMeta(SNAPSHOT_SECRET_NAME))?.annotations?.[SHARDS_ANNOTATION]);
  }

  it('splits a snapshot bigger than a chunk over the root and shard Secrets; the gateway serves it whole', async () => {
    expect(loadedAtStart).toBeUndefined();
    const shards = await sharded();
    expect(writer.lastError).toBeUndefined();

    const root = await api.secretMeta(SNAPSHOT_SECRET_NAME);
    expect(shards).toBeGreaterThanOrEqual(4);
    expect(written).toEqual({
      generation: writer.currentGeneration,
      bytes: expect.any(Number),
      secrets: shards + 1,
    });
    expect(written.bytes).toBeGreaterThan(shards * CHUNK);
    expect(written.bytes).toBeLessThanOrEqual((shards + 1) * CHUNK);
    expect(root?.annotations?.[SHA256_ANNOTATION]).toMatch(/^[0-9a-f]{64}$/);
    for (let i = 1; i <= shards; i++) {
      expect((await api.secretMeta(shardSecretName(SNAPSHOT_SECRET_NAME, i)))?.labels).toEqual({
        'app.kubernetes.io/managed-by': 'plugboard-operator',
        'app.kubernetes.io/name': 'plugboard',
        [SHARD_LABEL]: String(i),
      });
    }
    expect(await api.secretMeta(shardSecretName(SNAPSHOT_SECRET_NAME, shards + 1))).toBeUndefined();

    await until(() => src.current()?.generation === writer.currentGeneration, 'the sharded snapshot');
    expect(src.current()?.connections).toEqual([a, b]);
    expect(src.status().lastError).toBeUndefined();

    // A root event with the same content (a label added by hand) is not fetched and decoded again.
    const reloadedAt = src.status().lastReloadAt;
    await api.must(
      'PATCH',
      secretPath(SNAPSHOT_SECRET_NAME),
      { metadata: { labels: { touched: 'yes' } } },
      'application/merge-patch+json',
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(src.status().lastReloadAt).toBe(reloadedAt);
  });

  it('a rotated key rewrites the root and at most the last two shards; the gateway applies it', async () => {
    const shards = await sharded();
    const before = await shardVersions(shards);
    writer.set('ai/b', { ...b, apiKey: 'sk-b-rotated' });
    await writer.flush();
    const after = await shardVersions(shards);
    // The model lists come first in the stream and did not change, so neither did the shards holding them.
    expect(after.slice(0, -2)).toEqual(before.slice(0, -2));
    expect(after).not.toEqual(before);
    await until(
      () => src.current()?.connections.find((c) => c.name === 'b')?.apiKey === 'sk-b-rotated',
      'the rotated key',
    );
    expect(src.current()?.generation).toBe(writer.currentGeneration);
  });

  it('shrinking back to one Secret deletes the shard Secrets; the gateway follows', async () => {
    const shards = await sharded();
    const small = bigConnection('b', 5, 'sk-b');
    writer.delete('ai/a');
    writer.set('ai/b', small);
    await writer.flush();
    expect(written.secrets).toBe(1);
    const root = await api.secretMeta(SNAPSHOT_SECRET_NAME);
    expect(root?.annotations).toEqual({ [GENERATION_ANNOTATION]: String(writer.currentGeneration) });
    for (let i = 1; i <= shards; i++)
      expect(await api.secretMeta(shardSecretName(SNAPSHOT_SECRET_NAME, i)), `shard ${i}`).toBeUndefined();
    await until(() => src.current()?.generation === writer.currentGeneration, 'the single-Secret snapshot');
    expect(src.current()?.connections).toEqual([small]);
  });

  it('a torn read (root and shards disagree) keeps the last good snapshot and reports it; a consistent root recovers', async () => {
    await sharded();
    const good = writer.currentGeneration;
    src.shardRetry.attempts = 3;
    src.shardRetry.delayMs = 20;

    // A root from a generation whose shards are not (or no longer) there, as a crash mid-write would leave it.
    const root = (await api.must('GET', secretPath(SNAPSHOT_SECRET_NAME))) as {
      metadata: { annotations: Record<string, string> };
    };
    root.metadata.annotations[GENERATION_ANNOTATION] = String(good + 1);
    root.metadata.annotations[SHA256_ANNOTATION] = snapshotSha256(Buffer.from('another generation'));
    await api.must('PUT', secretPath(SNAPSHOT_SECRET_NAME), root);
    await until(() => /do not match the root's sha256/.test(src.status().lastError ?? ''), 'the error');
    expect(src.status().lastError).toMatch(/after 3 reads/);
    expect(src.current()?.generation).toBe(good);
    expect(src.current()?.connections.map((c) => c.name)).toEqual(['a', 'b']);

    // The next write is consistent again.
    const c = bigConnection('c', 10);
    writer.set('ai/c', c);
    await writer.flush();
    await until(() => src.current()?.generation === writer.currentGeneration, 'recovery');
    expect(src.status().lastError).toBeUndefined();
    expect(src.current()?.connections.map((x) => x.name)).toEqual(['a', 'b', 'c']);
  });

  it('refuses a snapshot over the root plus 64 shards, with a clear error, and writes nothing', async () => {
    const tiny = new SnapshotWriter({ client, namespace: ns, name: 'tiny-snapshot', log, chunkBytes: 1024 });
    cleanups.push(() => tiny.stop());
    tiny.set('ai/huge', bigConnection('huge', 8000));
    await tiny.flush();
    expect(tiny.lastError).toMatch(
      /^snapshot is \d+ bytes compressed, over the 66560 that 65 Secrets can hold/,
    );
    expect(await api.secretMeta('tiny-snapshot')).toBeUndefined();
    expect(await api.secretMeta('tiny-snapshot-1')).toBeUndefined();
  });
});

describe('sharded reads racing newer roots', () => {
  it('an assembly started for an older root never replaces the newer snapshot that arrived meanwhile', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'gw-race');
    const api = new Api(kc, ns);
    const secrets = `/api/v1/namespaces/${ns}/secrets`;
    const src = new KubernetesSnapshotSource(kc, ns, 'race');
    src.backoff.initial = 50;
    src.shardRetry.attempts = 8;
    src.shardRetry.delayMs = 100;
    try {
      await src.start();
      // Old root: names shards that are not there yet, so its assembly keeps retrying.
      const old = encodeSnapshot(snap(10, [bigConnection('old', 3000)]));
      const chunks = splitSnapshot(old, CHUNK);
      await api.must('POST', secrets, {
        metadata: {
          name: 'race',
          annotations: {
            [SHARDS_ANNOTATION]: String(chunks.length - 1),
            [SHA256_ANNOTATION]: snapshotSha256(old),
          },
        },
        data: { [SNAPSHOT_DATA_KEY]: chunks[0]?.toString('base64') },
      });
      await new Promise((r) => setTimeout(r, 50));
      // The newer root, in one Secret, applies at once.
      const newer = snap(11, [bigConnection('new', 3)]);
      await api.must('PUT', `${secrets}/race`, {
        metadata: { name: 'race' },
        data: { [SNAPSHOT_DATA_KEY]: encodeSnapshot(newer).toString('base64') },
      });
      await until(() => src.current()?.generation === 11, 'the newer snapshot');
      // Now the old root's shards appear: its assembly would succeed on its next try, but it is superseded.
      for (let i = 1; i < chunks.length; i++) {
        await api.must('POST', secrets, {
          metadata: { name: shardSecretName('race', i) },
          data: { [SNAPSHOT_DATA_KEY]: chunks[i]?.toString('base64') },
        });
      }
      await new Promise((r) => setTimeout(r, 1700));
      expect(src.current()?.generation).toBe(11);
      expect(src.current()?.connections.map((c) => c.name)).toEqual(['new']);
      expect(src.status().lastError).toBeUndefined();
    } finally {
      await src.stop();
    }
  });
});
