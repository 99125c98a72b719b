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

export function publicConnections(snapshot: Snapshot): PublicConnections {
  return {
    generation: snapshot.generation,
    generatedAt: snapshot.generatedAt,
    connections: snapshot.connections.map((c) => ({
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
