import { z } from 'zod';
import { PROVIDER_TYPES } from '../api/provider-connection.ts';

/**
 * The routing snapshot: everything a gateway replica needs to serve, compiled by the operator (or standalone
 * mode) from ProviderConnections, ModelAllowlists and Secrets. It is the only thing the gateway reads, so the
 * data plane scales without any access to Plugboard's resources. It carries resolved API keys: it lives in a
 * Secret and is never logged or served whole.
 */

export const SNAPSHOT_FORMAT = 1;

export const ConditionSummary = z.object({
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string(),
  message: z.string(),
});
export type ConditionSummary = z.output<typeof ConditionSummary>;

export const SnapshotModel = z.object({
  /** ID clients use: the upstream ID, with `<modelPrefix>.` in front when the connection has a prefix. */
  id: z.string(),
  /** ID sent upstream (for Azure, the deployment name). */
  upstreamId: z.string(),
  /** Unix seconds, from the upstream's /models when it gave one. */
  created: z.int().optional(),
  ownedBy: z.string().optional(),
});
export type SnapshotModel = z.output<typeof SnapshotModel>;

export const SnapshotConnection = z.object({
  namespace: z.string(),
  name: z.string(),
  provider: z.enum(PROVIDER_TYPES),
  /** Normalised base URL (no trailing slash), e.g. https://api.openai.com/v1. */
  url: z.string(),
  /** Resolved API key; absent for servers that need none. Never leaves the gateway process. */
  apiKey: z.string().optional(),
  /**
   * An OAuth 2.0 access token the operator obtained (entraID, googleCloud), sent as `Authorization: Bearer`
   * instead of a key; replaced at about half its lifetime. Never leaves the gateway process.
   */
  accessToken: z.string().optional(),
  /** When accessToken expires (RFC 3339, milliseconds). */
  accessTokenExpiresAt: z.string().optional(),
  /**
   * A hash of the identity accessToken is for (the credential's spec and its Secret's value): a restarted operator
   * adopts a still-valid token of an unchanged identity, so an identity provider that is down at that moment does
   * not take the connection out of routing. Read by the operator only.
   */
  credentialFingerprint: z.string().optional(),
  azureApiVersion: z.string().optional(),
  headers: z.record(z.string(), z.string()).default({}),
  dropParams: z.array(z.string()).default([]),
  modelPrefix: z.string().optional(),
  tags: z.array(z.string()).default([]),
  timeouts: z.object({
    connectMs: z.int().positive(),
    firstByteMs: z.int().positive(),
    idleMs: z.int().positive(),
    totalMs: z.int().positive(),
  }),
  /** False when the connection is disabled or cannot serve (e.g. its Secret is missing): listed, not routed. */
  serving: z.boolean(),
  /** What the operator wrote in status, for /api/connections and the UI. */
  status: z.object({
    ready: ConditionSummary,
    verified: ConditionSummary,
    lastVerifiedTime: z.string().optional(),
    discoveredModelCount: z.int().optional(),
  }),
  models: z.array(SnapshotModel),
});
export type SnapshotConnection = z.output<typeof SnapshotConnection>;

export const Snapshot = z.object({
  format: z.literal(SNAPSHOT_FORMAT),
  /** Monotonic across operator restarts (the previous snapshot's generation + 1). */
  generation: z.int().min(0),
  generatedAt: z.string(),
  connections: z.array(SnapshotConnection),
});
export type Snapshot = z.output<typeof Snapshot>;

/** What the gateway sends upstream for a connection, and how its dialect sends it. */
export function upstreamSecret(
  c: Pick<SnapshotConnection, 'apiKey' | 'accessToken'>,
): { value: string; scheme: 'apiKey' | 'accessToken' } | undefined {
  if (c.accessToken) return { value: c.accessToken, scheme: 'accessToken' };
  return c.apiKey ? { value: c.apiKey, scheme: 'apiKey' } : undefined;
}

export function emptySnapshot(generation = 0): Snapshot {
  return { format: SNAPSHOT_FORMAT, generation, generatedAt: new Date(0).toISOString(), connections: [] };
}
