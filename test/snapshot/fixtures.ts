import { randomBytes } from 'node:crypto';
import { SNAPSHOT_FORMAT, type Snapshot, type SnapshotConnection } from '../../src/snapshot/index.ts';

/** A connection whose random model IDs gzip poorly (~40 bytes each), so a few hundred fill several small chunks. */
export function bigConnection(name: string, models: number, apiKey = 'sk-test'): SnapshotConnection {
  const ok = { status: 'True' as const, reason: 'Verified', message: `${models} models exposed` };
  return {
    namespace: 'ai',
    name,
    provider: 'OpenAI',
    url: 'https://openrouter.ai/api/v1',
    apiKey,
    headers: {},
    dropParams: [],
    tags: [],
    timeouts: { connectMs: 10_000, firstByteMs: 300_000, idleMs: 300_000, totalMs: 3_600_000 },
    serving: true,
    status: { ready: ok, verified: ok },
    models: Array.from({ length: models }, () => {
      const id = `vendor/${randomBytes(12).toString('hex')}`;
      return { id, upstreamId: id, created: 1_700_000_000 };
    }),
  };
}

export const snap = (generation: number, connections: SnapshotConnection[]): Snapshot => ({
  format: SNAPSHOT_FORMAT,
  generation,
  generatedAt: new Date(generation * 1000).toISOString(),
  connections,
});
