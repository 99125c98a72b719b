import type { Snapshot, SnapshotConnection, SnapshotModel } from '../snapshot/schema.ts';

/** One way to serve a model: a serving connection and the ID to send upstream. */
export interface Candidate {
  connection: SnapshotConnection;
  /** `namespace/name`: how logs, metrics and errors name the connection. */
  key: string;
  model: SnapshotModel;
}

export interface ModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  plugboard: { connection: string; provider: string; tags: string[] };
}

/**
 * The compiled form of one snapshot: model ID → candidates, and the /v1/models list. Built once per snapshot
 * generation; a request keeps the table it started with, so a reload never changes a request in flight.
 */
export interface RouteTable {
  generation: number;
  snapshot: Snapshot;
  routes: Map<string, Candidate[]>;
  models: ModelEntry[];
  /** The unfiltered /v1/models reply, serialised once. */
  modelsJson: string;
}

export function connectionKey(c: { namespace: string; name: string }): string {
  return `${c.namespace}/${c.name}`;
}

export function compileRoutes(snapshot: Snapshot): RouteTable {
  const routes = new Map<string, Candidate[]>();
  const models: ModelEntry[] = [];
  const created = Math.floor(Date.parse(snapshot.generatedAt) / 1000) || 0;
  for (const connection of snapshot.connections) {
    if (!connection.serving) continue;
    const key = connectionKey(connection);
    for (const model of connection.models) {
      let list = routes.get(model.id);
      if (!list) {
        list = [];
        routes.set(model.id, list);
        models.push({
          id: model.id,
          object: 'model',
          created: model.created ?? created,
          owned_by: model.ownedBy ?? connection.name,
          plugboard: { connection: key, provider: connection.provider, tags: connection.tags },
        });
      }
      list.push({ connection, key, model });
    }
  }
  models.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    generation: snapshot.generation,
    snapshot,
    routes,
    models,
    modelsJson: JSON.stringify({ object: 'list', data: models }),
  };
}

export interface HealthOptions {
  /** First cooldown after a failure; doubles per consecutive failure. */
  baseCooldownMs?: number;
  maxCooldownMs?: number;
  now?: () => number;
}

interface ConnectionHealth {
  inFlight: number;
  failures: number;
  cooldownUntil: number;
}

/**
 * Passive health and balancing across the connections that serve one model. State is keyed by connection name
 * and survives snapshot reloads. Least-in-flight with a rotating start for ties; connections in cooldown are
 * tried last (so a model whose only connections are all cooling down is still attempted, not refused).
 */
export class Balancer {
  private readonly health = new Map<string, ConnectionHealth>();
  private rotation = 0;
  private readonly base: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(opts: HealthOptions = {}) {
    this.base = opts.baseCooldownMs ?? 1000;
    this.max = opts.maxCooldownMs ?? 30_000;
    this.now = opts.now ?? Date.now;
  }

  private get(key: string): ConnectionHealth {
    let h = this.health.get(key);
    if (!h) {
      h = { inFlight: 0, failures: 0, cooldownUntil: 0 };
      this.health.set(key, h);
    }
    return h;
  }

  /** Candidates in the order to try them. */
  order(candidates: Candidate[]): Candidate[] {
    if (candidates.length === 1) return candidates;
    const now = this.now();
    const start = this.rotation++ % candidates.length;
    const rotated = candidates.map((_, i) => candidates[(start + i) % candidates.length] as Candidate);
    const score = (c: Candidate) => {
      const h = this.health.get(c.key);
      if (!h) return 0;
      return (h.cooldownUntil > now ? 1e9 + h.cooldownUntil - now : 0) + h.inFlight;
    };
    // stable sort keeps the rotation among equals
    return rotated
      .map((c) => ({ c, s: score(c) }))
      .sort((a, b) => a.s - b.s)
      .map((x) => x.c);
  }

  acquire(key: string): void {
    this.get(key).inFlight++;
  }

  release(key: string): void {
    const h = this.get(key);
    h.inFlight = Math.max(0, h.inFlight - 1);
  }

  success(key: string): void {
    const h = this.health.get(key);
    if (h?.failures) {
      h.failures = 0;
      h.cooldownUntil = 0;
    }
  }

  /** A failure that says the connection is unhealthy (connect error, 5xx, 429, timeout). */
  failure(key: string, retryAfterMs?: number): void {
    const h = this.get(key);
    h.failures++;
    const backoff = Math.min(this.max, this.base * 2 ** Math.min(h.failures - 1, 16));
    h.cooldownUntil = this.now() + Math.max(backoff, Math.min(retryAfterMs ?? 0, this.max));
  }

  inCooldown(key: string): boolean {
    return (this.health.get(key)?.cooldownUntil ?? 0) > this.now();
  }

  /** Drops state of connections no longer in the snapshot. */
  retain(keys: Set<string>): void {
    for (const k of this.health.keys())
      if (!keys.has(k) && !this.health.get(k)?.inFlight) this.health.delete(k);
  }
}
