import type { FastifyBaseLogger } from 'fastify';
import type { Snapshot } from '../snapshot/schema.ts';
import type { ClientKeysSource } from './client-keys.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { SnapshotSource } from './snapshot-source.ts';

/**
 * What the gateway does as its sources change, besides using the new value: metrics and one log line per change.
 * Each returns the function that stops following.
 */

/** A new snapshot is handed to `use` (which compiles it and says how many models it routes); failures are counted. */
export function followSnapshots(
  source: SnapshotSource,
  o: {
    metrics: GatewayMetrics;
    log: FastifyBaseLogger;
    use(s: Snapshot): { models: number };
    generation(): number | undefined;
  },
): () => void {
  let applied: Snapshot | undefined;
  const changed = (snapshot: Snapshot | undefined) => {
    const st = source.status();
    if (snapshot && snapshot !== applied) {
      applied = snapshot;
      const { models } = o.use(snapshot);
      o.metrics.snapshotGeneration.set(snapshot.generation);
      o.metrics.snapshotLastReload.set(Date.now() / 1000);
      o.log.info(
        { generation: snapshot.generation, connections: snapshot.connections.length, models },
        'routing snapshot applied',
      );
    }
    if (st.lastError) {
      o.metrics.snapshotErrors.inc();
      o.metrics.snapshotOk.set(0);
      o.log.error(
        { error: st.lastError, keptGeneration: o.generation() ?? null, source: st.source },
        'routing snapshot rejected; keeping the last good one',
      );
    } else {
      o.metrics.snapshotOk.set(1);
    }
  };
  const stop = source.subscribe(changed);
  const initial = source.current();
  if (initial) changed(initial);
  return stop;
}

/** Client keys: each change of state is logged once and shown in metrics (and /readyz reads the state). */
export function followClientKeys(
  keys: ClientKeysSource,
  o: { metrics: GatewayMetrics; log: FastifyBaseLogger },
): () => void {
  let last: string | undefined;
  const changed = () => {
    const k = keys.status();
    o.metrics.clientKeys.set(k.keys);
    for (const state of ['loading', 'loaded', 'stale', 'revoked'])
      o.metrics.clientKeysState.set({ state }, +(state === k.state));
    if (k.state === last && k.state !== 'stale') return;
    last = k.state;
    if (k.state === 'revoked')
      o.log.error(
        { clientKeys: k.message },
        'client keys revoked: every request is refused with 401 until they are back',
      );
    else if (k.state === 'stale')
      o.log.error(
        { clientKeys: k.message, keysInUse: k.keys },
        'client keys could not be read; keeping the keys in use',
      );
    else if (k.state === 'loaded') o.log.info({ keys: k.keys }, 'client keys loaded');
  };
  const stop = keys.subscribe(changed);
  changed();
  return stop;
}
