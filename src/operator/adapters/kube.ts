import { API_VERSION, GROUP, VERSION } from '../../api/common.ts';
import { credentialSecretRef } from '../../api/credentials.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';
import { type KubeClient, KubeError, resourcePath } from '../../kube/client.ts';
import type { Informer, ObjectWithMeta } from '../../kube/informer.ts';
import { ServiceAccountTokenError, type ServiceAccountTokenSource } from '../credentials/mint.ts';
import type { SecretState } from '../logic/connection-status.ts';
import type {
  AllowlistObject,
  ConnectionObject,
  EventSink,
  Kind,
  ObjectEvent,
  ObjectSource,
  SecretSource,
  StatusSink,
} from '../ports.ts';
import type { EventRecorder } from '../runtime/events.ts';

/** The control loop's ports on the API server. */

export const PLURALS: Record<Kind, string> = {
  ProviderConnection: 'providerconnections',
  ModelAllowlist: 'modelallowlists',
};

export type CachedConnection = ConnectionObject & ObjectWithMeta;
export type CachedAllowlist = AllowlistObject & ObjectWithMeta;

/** Objects in: the informers' caches (one informer per watched namespace, or one for all). */
export class InformerObjects implements ObjectSource {
  readonly connections: Informer<CachedConnection>[] = [];
  readonly allowlists: Informer<CachedAllowlist>[] = [];

  connection(key: string): ConnectionObject | undefined {
    return first(this.connections, key);
  }

  allowlist(key: string): AllowlistObject | undefined {
    return first(this.allowlists, key);
  }

  /** Every connection in the caches (start-up only: steady-state lookups go by key or index). */
  allConnections(): CachedConnection[] {
    return this.connections.flatMap((i) => i.list());
  }
}

function first<T extends ObjectWithMeta>(informers: Informer<T>[], key: string): T | undefined {
  for (const i of informers) {
    const o = i.get(key);
    if (o) return o;
  }
  return undefined;
}

interface Secret {
  metadata: { resourceVersion?: string };
  data?: Record<string, string>;
}

/** Secret lookup: a GET of the Secret at every reconcile (the Secret informer caches metadata only, no keys). */
export function secretsFromApi(client: KubeClient): SecretSource {
  return {
    async secret(namespace: string, spec: ProviderConnectionSpec, signal: AbortSignal): Promise<SecretState> {
      const ref = credentialSecretRef(spec);
      if (!ref) return { kind: 'none' };
      try {
        const s = await client.get<Secret>(`/api/v1/namespaces/${namespace}/secrets/${ref.name}`, { signal });
        const raw = s.data?.[ref.key];
        if (raw === undefined) return { kind: 'keyMissing', secretName: ref.name, key: ref.key };
        return {
          kind: 'resolved',
          value: Buffer.from(raw, 'base64').toString('utf8').trim(),
          version: s.metadata.resourceVersion ?? '',
        };
      } catch (err) {
        // 403 is reported like 404 so the message never reveals what exists where the operator may not look.
        if (KubeError.is(err, 404) || KubeError.is(err, 403))
          return { kind: 'notFound', secretName: ref.name };
        throw err;
      }
    },
  };
}

/** Short enough to be little use if it leaked; the TokenRequest API refuses less than 10 minutes. */
const SERVICE_ACCOUNT_TOKEN_SECONDS = 600;

/**
 * Service account tokens from the TokenRequest API (create on serviceaccounts/token in the connection's
 * namespace), one per exchange: the identity provider checks it at once, and it is never stored.
 */
export function serviceAccountTokensFromApi(client: KubeClient): ServiceAccountTokenSource {
  return {
    async request(namespace, name, audience, signal) {
      try {
        const res = await client.request<{ status?: { token?: string } }>(
          'POST',
          `/api/v1/namespaces/${namespace}/serviceaccounts/${encodeURIComponent(name)}/token`,
          {
            body: {
              apiVersion: 'authentication.k8s.io/v1',
              kind: 'TokenRequest',
              spec: { audiences: [audience], expirationSeconds: SERVICE_ACCOUNT_TOKEN_SECONDS },
            },
            ...(signal ? { signal } : {}),
          },
        );
        const token = res.status?.token;
        if (!token) throw new Error('the TokenRequest API answered without a token');
        return token;
      } catch (err) {
        if (KubeError.is(err, 404)) {
          throw new ServiceAccountTokenError(
            'ServiceAccountNotFound',
            `ServiceAccount "${name}" was not found in namespace ${namespace}; create it (kubectl -n ${namespace} create serviceaccount ${name}) and name system:serviceaccount:${namespace}:${name} in the federated credential`,
          );
        }
        if (KubeError.is(err, 403)) {
          throw new ServiceAccountTokenError(
            'TokenRequestForbidden',
            `the operator may not request tokens for ServiceAccount "${name}" in namespace ${namespace} (it needs create on serviceaccounts/token for it; with the Helm chart, add {namespace: ${namespace}, name: ${name}} to workloadIdentity.serviceAccounts)`,
          );
        }
        throw err;
      }
    },
  };
}

/** Status out: a merge patch of the status subresource; an object deleted meanwhile is left to its delete event. */
export function statusToApi(client: KubeClient): StatusSink {
  return {
    async patch(kind, namespace, name, patch) {
      try {
        await client.request(
          'PATCH',
          resourcePath({
            group: GROUP,
            version: VERSION,
            plural: PLURALS[kind],
            namespace,
            name,
            subresource: 'status',
          }),
          { body: { status: patch }, contentType: 'application/merge-patch+json' },
        );
      } catch (err) {
        if (KubeError.is(err, 404)) return;
        throw err;
      }
    },
  };
}

/** Events out: core/v1 Events on the object (EventRecorder logs a failed write). */
export function eventsToApi(recorder: EventRecorder): EventSink {
  return {
    record: (e: ObjectEvent) =>
      recorder.record(
        { apiVersion: API_VERSION, kind: e.kind, namespace: e.namespace, name: e.name, uid: e.uid },
        e.type,
        e.reason,
        e.message,
      ),
  };
}
