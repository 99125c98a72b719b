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

/**
 * Decodes the wire format. The snapshot holds keys, so errors say where and what, never the text: V8's JSON
 * messages quote a snippet, so only their position is kept; zod's name the field and the expected type.
 */
export function decodeSnapshot(data: Buffer): Snapshot {
  let json: unknown;
  try {
    json = JSON.parse(gunzipSync(data).toString('utf8'));
  } catch (err) {
    const message = err instanceof Error ? err.message : '';
    const what =
      err instanceof SyntaxError
        ? `not valid JSON${/ at position \d+/.exec(message)?.[0] ?? ''}`
        : `not gzip (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`;
    throw new SnapshotDecodeError(`snapshot is unreadable: ${what}`);
  }
  const parsed = Wire.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new SnapshotDecodeError(
      `snapshot does not match the schema: ${i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid'}`,
    );
  }
  const wire = parsed.data;
  const connections = wire.connections.map((c) => {
    const models = wire.modelLists[c.models];
    if (!models)
      throw new SnapshotDecodeError(`snapshot refers to model list ${c.models}, which it does not hold`);
    return { ...c, models };
  });
  const { modelLists: _, ...rest } = wire;
  return { ...rest, connections };
}
