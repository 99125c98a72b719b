import { createHash } from 'node:crypto';
import { SNAPSHOT_DATA_KEY, SNAPSHOT_MAX_BYTES } from './codec.ts';

/**
 * A snapshot too big for one Secret is split, as gzip bytes, over the root Secret (chunk 0, under the usual data
 * key) and shard Secrets `<root>-1` … `<root>-<n>`. Fixed names let RBAC grant them by resourceNames. The root
 * says how many shards there are and the sha256 of the whole stream, so a reader that caught shards of a newer
 * generation (written before their root) notices and retries instead of decoding a mix.
 */

/** On the root: number of shard Secrets besides it. Absent (the single-Secret layout) means 0. */
export const SHARDS_ANNOTATION = 'plugboard.dev/snapshot-shards';
/** On the root of a sharded snapshot: sha256 (hex) of the whole gzip stream. */
export const SHA256_ANNOTATION = 'plugboard.dev/snapshot-sha256';
/** On each shard Secret: its index (1-based). */
export const SHARD_LABEL = 'plugboard.dev/snapshot-shard';
/** The chart grants `<root>-1` … `<root>-64`; with the root that holds 65 × SNAPSHOT_MAX_BYTES (about 62 MiB). */
export const MAX_SHARDS = 64;

export class SnapshotShardError extends Error {}

export function shardSecretName(root: string, index: number): string {
  return `${root}-${index}`;
}

/** The chunk a shard Secret holds: its data key, base64-decoded (the operator and the gateway read shards alike). */
export function shardChunk(secret: { data?: Record<string, string> }, name: string): Buffer {
  const data = secret.data?.[SNAPSHOT_DATA_KEY];
  if (!data) throw new SnapshotShardError(`shard Secret ${name} has no ${SNAPSHOT_DATA_KEY}`);
  return Buffer.from(data, 'base64');
}

/** Bytes a snapshot may have when split into chunks of `chunkBytes`: the root plus MAX_SHARDS shards. */
export function shardedCapacity(chunkBytes = SNAPSHOT_MAX_BYTES): number {
  return (MAX_SHARDS + 1) * chunkBytes;
}

/** Splits the gzip stream into chunks of at most `chunkBytes`; always at least one (chunk 0 goes in the root). */
export function splitSnapshot(bytes: Buffer, chunkBytes = SNAPSHOT_MAX_BYTES): Buffer[] {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`bad chunk size ${chunkBytes}`);
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length || chunks.length === 0; at += chunkBytes) {
    chunks.push(bytes.subarray(at, at + chunkBytes));
  }
  return chunks;
}

export function snapshotSha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Concatenates the chunks and checks them against the root's sha256; a mismatch means a torn read. */
export function joinShards(chunks: Buffer[], sha256: string): Buffer {
  const bytes = Buffer.concat(chunks);
  const actual = snapshotSha256(bytes);
  if (actual !== sha256.toLowerCase()) {
    throw new SnapshotShardError(
      `the ${chunks.length} parts do not match the root's sha256 (a newer snapshot is being written, or a shard was edited)`,
    );
  }
  return bytes;
}

export interface ShardLayout {
  /** Shard Secrets besides the root; 0 for the single-Secret layout. */
  shards: number;
  /** sha256 (hex) of the whole gzip stream; set when there are shards. */
  sha256?: string;
}

/** What the root's annotations say about shards (throws on values no writer produces). */
export function readShardAnnotations(annotations: Record<string, string> | undefined): ShardLayout {
  const raw = annotations?.[SHARDS_ANNOTATION];
  if (raw === undefined || raw === '0') return { shards: 0 };
  const shards = Number(raw);
  if (!/^[1-9][0-9]*$/.test(raw) || shards > MAX_SHARDS)
    throw new SnapshotShardError(
      `annotation ${SHARDS_ANNOTATION} is ${JSON.stringify(raw)}, not 0..${MAX_SHARDS}`,
    );
  const sha256 = annotations?.[SHA256_ANNOTATION];
  if (!sha256 || !/^[0-9a-fA-F]{64}$/.test(sha256))
    throw new SnapshotShardError(`annotation ${SHA256_ANNOTATION} is missing or not a sha256`);
  return { shards, sha256: sha256.toLowerCase() };
}

/**
 * The gzip stream of a snapshot whose root holds `first` (chunk 0) and `annotations`: the root's bytes alone, or
 * those joined with every shard (fetched in parallel) and verified.
 */
export async function assembleSnapshot(
  first: Buffer,
  annotations: Record<string, string> | undefined,
  fetchShard: (index: number) => Promise<Buffer>,
): Promise<Buffer> {
  const layout = readShardAnnotations(annotations);
  if (!layout.sha256) return first;
  const rest = await Promise.all(Array.from({ length: layout.shards }, (_, i) => fetchShard(i + 1)));
  return joinShards([first, ...rest], layout.sha256);
}
