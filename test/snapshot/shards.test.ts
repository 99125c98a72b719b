import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  assembleSnapshot,
  decodeSnapshot,
  encodeSnapshot,
  joinShards,
  MAX_SHARDS,
  readShardAnnotations,
  SHA256_ANNOTATION,
  SHARDS_ANNOTATION,
  SnapshotShardError,
  shardedCapacity,
  shardSecretName,
  snapshotSha256,
  splitSnapshot,
} from '../../src/snapshot/index.ts';
import { bigConnection, snap } from './fixtures.ts';

describe('snapshot shards', () => {
  const a = bigConnection('a', 1500);
  const b = bigConnection('b', 1500);
  const bytes = encodeSnapshot(snap(7, [a, b]));

  it('splits the gzip stream into chunks of at most the chunk size and joins them back to the same snapshot', () => {
    const chunks = splitSnapshot(bytes, 16 * 1024);
    expect(chunks.length).toBe(Math.ceil(bytes.length / (16 * 1024)));
    expect(chunks.length).toBeGreaterThan(3);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(16 * 1024);
    const joined = joinShards(chunks, snapshotSha256(bytes));
    expect(joined.equals(bytes)).toBe(true);
    expect(decodeSnapshot(joined)).toEqual(snap(7, [a, b]));
  });

  it('keeps a snapshot that fits in one piece (the single-Secret layout)', () => {
    const small = encodeSnapshot(snap(1, []));
    expect(splitSnapshot(small)).toEqual([small]);
    expect(splitSnapshot(Buffer.alloc(0))).toHaveLength(1);
  });

  it('refuses a torn read: a shard from another generation, a missing or reordered shard', () => {
    const chunks = splitSnapshot(bytes, 16 * 1024);
    const sha = snapshotSha256(bytes);
    const newer = splitSnapshot(encodeSnapshot(snap(8, [bigConnection('a', 1500), b])), 16 * 1024);
    const mixed = chunks.map((c, i) => (i === 1 ? (newer[1] as Buffer) : c));
    expect(() => joinShards(mixed, sha)).toThrow(SnapshotShardError);
    expect(() => joinShards(chunks.slice(0, -1), sha)).toThrow(/do not match the root's sha256/);
    expect(() => joinShards([...chunks].reverse(), sha)).toThrow(SnapshotShardError);
  });

  it('reads the layout from the root annotations and rejects values no writer produces', () => {
    const sha = snapshotSha256(bytes);
    expect(readShardAnnotations(undefined)).toEqual({ shards: 0 });
    expect(readShardAnnotations({ 'plugboard.dev/snapshot-generation': '3' })).toEqual({ shards: 0 });
    expect(readShardAnnotations({ [SHARDS_ANNOTATION]: '3', [SHA256_ANNOTATION]: sha })).toEqual({
      shards: 3,
      sha256: sha,
    });
    for (const bad of ['-1', '1.5', 'x', '', String(MAX_SHARDS + 1), '007'])
      expect(() => readShardAnnotations({ [SHARDS_ANNOTATION]: bad, [SHA256_ANNOTATION]: sha }), bad).toThrow(
        SnapshotShardError,
      );
    expect(() => readShardAnnotations({ [SHARDS_ANNOTATION]: '2' })).toThrow(/sha256/);
    expect(() => readShardAnnotations({ [SHARDS_ANNOTATION]: '2', [SHA256_ANNOTATION]: 'abc' })).toThrow(
      /sha256/,
    );
  });

  it('assembles from the root and the shards it names, fetching each once', async () => {
    const chunks = splitSnapshot(bytes, 16 * 1024);
    const fetched: number[] = [];
    const out = await assembleSnapshot(
      chunks[0] as Buffer,
      { [SHARDS_ANNOTATION]: String(chunks.length - 1), [SHA256_ANNOTATION]: snapshotSha256(bytes) },
      async (i) => {
        fetched.push(i);
        return chunks[i] as Buffer;
      },
    );
    expect(out.equals(bytes)).toBe(true);
    expect(fetched.sort((x, y) => x - y)).toEqual(Array.from({ length: chunks.length - 1 }, (_, i) => i + 1));
    // No shards: the root's bytes alone, nothing fetched.
    const one = encodeSnapshot(snap(1, []));
    expect(
      await assembleSnapshot(one, {}, async () => {
        throw new Error('must not fetch');
      }),
    ).toBe(one);
  });

  it('names shards after the root and holds the root plus MAX_SHARDS chunks', () => {
    expect(shardSecretName('plugboard-snapshot', 1)).toBe('plugboard-snapshot-1');
    expect(MAX_SHARDS).toBe(64);
    expect(shardedCapacity()).toBe(65 * 1_000_000);
    expect(shardedCapacity(1024)).toBe(65 * 1024);
  });

  it('a change of a key, a status or the generation leaves the leading chunks byte-identical', () => {
    const before = splitSnapshot(encodeSnapshot(snap(7, [a, b])), 16 * 1024);
    const rotated = { ...b, apiKey: 'sk-rotated', status: { ...b.status, lastVerifiedTime: 'now' } };
    const after = splitSnapshot(encodeSnapshot(snap(8, [a, rotated])), 16 * 1024);
    expect(after.length).toBe(before.length);
    const same = after.filter((c, i) => c.equals(before[i] as Buffer)).length;
    // Only the tail (connections, generation) moves; the model lists before it do not.
    expect(same).toBeGreaterThanOrEqual(before.length - 2);
    expect(after.at(-1)?.equals(before.at(-1) as Buffer)).toBe(false);
  });

  it('still decodes snapshots written with the earlier key order (generation first)', () => {
    const s = snap(3, [bigConnection('c', 2)]);
    const old = gzipSync(
      JSON.stringify({
        ...s,
        modelLists: [s.connections[0]?.models],
        connections: s.connections.map((c) => ({ ...c, models: 0 })),
      }),
    );
    expect(decodeSnapshot(old)).toEqual(s);
  });
});
