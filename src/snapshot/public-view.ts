import type { Snapshot } from './schema.ts';

/** What /api/connections serves and the status page shows: the snapshot without keys or header values. */
export interface PublicConnection {
  namespace: string;
  name: string;
  provider: string;
  url: string;
  serving: boolean;
  tags: string[];
  modelPrefix?: string;
  ready: { status: string; reason: string; message: string };
  verified: { status: string; reason: string; message: string };
  lastVerifiedTime?: string;
  discoveredModelCount?: number;
  exposedModelCount: number;
  models: string[];
}

export interface PublicConnections {
  generation: number;
  generatedAt: string;
  connections: PublicConnection[];
}

/**
 * The public view of a snapshot. `visible`: a client key's model scope; the view then shows only the models it
 * may use, and only the connections that serve at least one of them (a scoped key learns nothing of the rest).
 */
export function publicConnections(
  snapshot: Snapshot,
  visible?: (model: string) => boolean,
): PublicConnections {
  const connections = visible
    ? snapshot.connections
        .map((c) => ({ ...c, models: c.models.filter((m) => visible(m.id)) }))
        .filter((c) => c.models.length > 0)
    : snapshot.connections;
  return {
    generation: snapshot.generation,
    generatedAt: snapshot.generatedAt,
    connections: connections.map((c) => ({
      namespace: c.namespace,
      name: c.name,
      provider: c.provider,
      url: c.url,
      serving: c.serving,
      tags: c.tags,
      ...(c.modelPrefix ? { modelPrefix: c.modelPrefix } : {}),
      ready: c.status.ready,
      verified: c.status.verified,
      ...(c.status.lastVerifiedTime ? { lastVerifiedTime: c.status.lastVerifiedTime } : {}),
      ...(c.status.discoveredModelCount !== undefined
        ? { discoveredModelCount: c.status.discoveredModelCount }
        : {}),
      exposedModelCount: c.models.length,
      models: c.models.map((m) => m.id),
    })),
  };
}
