import { promisify } from 'node:util';
import { gunzipSync, gzip, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { Snapshot, SnapshotConnection, SnapshotModel } from './schema.ts';

/** Name of the Secret (in the operator's namespace) and the data key that hold the snapshot. */
export const SNAPSHOT_SECRET_NAME = 'plugboard-snapshot';
export const SNAPSHOT_DATA_KEY = 'snapshot.json.gz';
export const GENERATION_ANNOTATION = 'plugboard.dev/snapshot-generation';
/** Kubernetes refuses objects over 1 MiB; leave room for metadata. */
export const SNAPSHOT_MAX_BYTES = 1_000_000;

/**
 * On the wire, identical model lists are stored once (1,000 connections to the same aggregator share one list),
 * then the JSON is gzipped. Decoding shares the list objects too, so gateway memory gets the same saving.
 */
const Wire = Snapshot.omit({ connections: true }).extend({
  modelLists: z.array(z.array(SnapshotModel)),
  connections: z.array(SnapshotConnection.omit({ models: true }).extend({ models: z.int().min(0) })),
});

function toWire(snapshot: Snapshot): string {
  const index = new Map<string, number>();
  const modelLists: Snapshot['connections'][number]['models'][] = [];
  const connections = snapshot.connections.map((c) => {
    const key = JSON.stringify(c.models);
    let i = index.get(key);
    if (i === undefined) {
      i = modelLists.length;
      index.set(key, i);
      modelLists.push(c.models);
    }
    return { ...c, models: i };
  });
  // The bulky, stable part first and what changes on every write last: deflate output is a function of the input
  // so far, so the leading bytes (and the shard Secrets holding them) stay identical when only a status, a key or
  // the generation changed, and the writer skips rewriting those shards.
  const { connections: _, generation, generatedAt, ...head } = snapshot;
  return JSON.stringify({ ...head, modelLists, connections, generation, generatedAt });
}

const GZIP = { level: 9 };
const gzipAsync = promisify(gzip);

export function encodeSnapshot(snapshot: Snapshot): Buffer {
  return gzipSync(toWire(snapshot), GZIP);
}

/**
 * The same bytes as encodeSnapshot, compressed on the libuv thread pool: tens of MiB take seconds, which must
 * not stall the operator's event loop (lease renewals, reconciles).
 */
export function encodeSnapshotAsync(snapshot: Snapshot): Promise<Buffer> {
  return gzipAsync(toWire(snapshot), GZIP);
}

export class SnapshotDecodeError extends Error {}

export function decodeSnapshot(data: Buffer): Snapshot {
  let wire: z.output<typeof Wire>;
  try {
    wire = Wire.parse(JSON.parse(gunzipSync(data).toString('utf8')));
  } catch (err) {
    throw new SnapshotDecodeError(
      `snapshot is unreadable: ${err instanceof Error ? err.message.slice(0, 300) : err}`,
    );
  }
  const connections = wire.connections.map((c) => {
    const models = wire.modelLists[c.models];
    if (!models)
      throw new SnapshotDecodeError(`snapshot refers to model list ${c.models}, which it does not hold`);
    return { ...c, models };
  });
  const { modelLists: _, ...rest } = wire;
  return { ...rest, connections };
}
