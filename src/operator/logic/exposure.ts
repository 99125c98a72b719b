import { isGlob, modelPattern } from '../../api/glob.ts';
import type { ProviderType } from '../../api/provider-connection.ts';
import { dialect } from '../../providers/dialects.ts';
import type { DiscoveredModel } from '../verification/verify.ts';

export interface AllowlistRef {
  name: string;
  generation?: number;
  models: string[];
}

/** What one allowlist contributes. */
export interface AllowlistExposure {
  exposed: string[];
  /** Exact IDs, and globs matching nothing, that the upstream's list does not offer. */
  missing: string[];
  /** Globs on an upstream without a model list: they can never match anything. */
  unmatchable: string[];
}

export interface Exposure {
  /** Upstream models exposed through the gateway (before the connection's prefix). */
  exposed: DiscoveredModel[];
  perAllowlist: Map<string, AllowlistExposure>;
}

/**
 * Which models a connection exposes, from what the upstream listed (undefined when it could not list them)
 * and the allowlists naming it. Where requests name deployments the list does not show (the dialect's
 * `deployments`), allowlist entries are taken as deployment names; an upstream without /models exposes its
 * allowlists' exact IDs. In both cases a glob has no list to match and is reported as unmatchable.
 */
export function computeExposure(
  provider: ProviderType,
  discovered: DiscoveredModel[] | undefined,
  allowlists: AllowlistRef[],
): Exposure {
  const perAllowlist = new Map<string, AllowlistExposure>();
  const exposed = new Map<string, DiscoveredModel>();
  if (dialect(provider).deployments || discovered === undefined) {
    for (const a of allowlists) {
      const ids = a.models.filter((m) => !isGlob(m));
      for (const id of ids) exposed.set(id, { id });
      perAllowlist.set(a.name, { exposed: ids, missing: [], unmatchable: a.models.filter(isGlob) });
    }
    return { exposed: sortById([...exposed.values()]), perAllowlist };
  }
  if (allowlists.length === 0) return { exposed: sortById([...discovered]), perAllowlist };
  // An entry names a listed model by the ID it is exposed as, or by the ID the upstream listed it as.
  const byId = new Map<string, DiscoveredModel>();
  for (const m of discovered) {
    if (m.upstreamId !== undefined && !byId.has(m.upstreamId)) byId.set(m.upstreamId, m);
  }
  for (const m of discovered) byId.set(m.id, m);
  for (const a of allowlists) {
    const own: string[] = [];
    const missing: string[] = [];
    for (const pattern of a.models) {
      if (!isGlob(pattern)) {
        const m = byId.get(pattern);
        if (m) {
          exposed.set(m.id, m);
          own.push(m.id);
        } else missing.push(pattern);
        continue;
      }
      const re = modelPattern(pattern);
      let any = false;
      for (const m of discovered) {
        if (re.matches(m.id) || (m.upstreamId !== undefined && re.matches(m.upstreamId))) {
          exposed.set(m.id, m);
          own.push(m.id);
          any = true;
        }
      }
      if (!any) missing.push(pattern);
    }
    perAllowlist.set(a.name, { exposed: [...new Set(own)].sort(), missing, unmatchable: [] });
  }
  return { exposed: sortById([...exposed.values()]), perAllowlist };
}

function sortById(models: DiscoveredModel[]): DiscoveredModel[] {
  return models.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
