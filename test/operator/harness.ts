import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { GROUP, VERSION } from '../../src/api/common.ts';
import { Operator, type OperatorOptions } from '../../src/operator/operator.ts';
import {
  assembleSnapshot,
  decodeSnapshot,
  SNAPSHOT_DATA_KEY,
  SNAPSHOT_SECRET_NAME,
  type Snapshot,
  shardSecretName,
} from '../../src/snapshot/index.ts';
import { kubeRaw } from '../support/kube-raw.ts';

export const log = pino({ level: process.env.PLUGBOARD_TEST_LOG ?? 'silent' });

export function kubeConfigFrom(yaml: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return kc;
}

/** An operator watching one namespace, with short lease timings. */
export function startOperator(
  kc: KubeConfig,
  namespace: string,
  extra: Partial<OperatorOptions> = {},
): Operator {
  const op = new Operator({
    kubeConfig: kc,
    namespace,
    watchNamespaces: [namespace],
    identity: `test-${randomBytes(3).toString('hex')}`,
    log,
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    retryPeriodMs: 300,
    ...extra,
  });
  void op.start();
  return op;
}

export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface Obj {
  metadata: { name: string; generation: number; resourceVersion: string };
  spec: Record<string, unknown>;
  status?: { conditions?: Cond[]; [k: string]: unknown };
}

interface SecretBody {
  metadata: {
    resourceVersion: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  data: Record<string, string>;
}

export class Api {
  readonly kc: KubeConfig;
  readonly ns: string;
  constructor(kc: KubeConfig, ns: string) {
    this.kc = kc;
    this.ns = ns;
  }
  private path(plural: string, name?: string) {
    return `/apis/${GROUP}/${VERSION}/namespaces/${this.ns}/${plural}${name ? `/${name}` : ''}`;
  }
  async must(method: string, path: string, body?: unknown, contentType?: string) {
    const res = await kubeRaw(this.kc, method, path, {
      body,
      headers: contentType ? { 'content-type': contentType } : {},
    });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }
  secret(name: string, data: Record<string, string>) {
    return this.must('POST', `/api/v1/namespaces/${this.ns}/secrets`, {
      metadata: { name },
      stringData: data,
    });
  }
  updateSecret(name: string, data: Record<string, string>) {
    return this.must(
      'PATCH',
      `/api/v1/namespaces/${this.ns}/secrets/${name}`,
      { stringData: data },
      'application/merge-patch+json',
    );
  }
  deleteSecret(name: string) {
    return this.must('DELETE', `/api/v1/namespaces/${this.ns}/secrets/${name}`);
  }
  connection(name: string, spec: Record<string, unknown>) {
    return this.must('POST', this.path('providerconnections'), {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ProviderConnection',
      metadata: { name },
      spec,
    });
  }
  patchConnection(name: string, spec: Record<string, unknown>) {
    return this.must(
      'PATCH',
      this.path('providerconnections', name),
      { spec },
      'application/merge-patch+json',
    );
  }
  deleteConnection(name: string) {
    return this.must('DELETE', this.path('providerconnections', name));
  }
  allowlist(name: string, connection: string, models: string[]) {
    return this.must('POST', this.path('modelallowlists'), {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ModelAllowlist',
      metadata: { name },
      spec: { connectionRef: { name: connection }, models },
    });
  }
  deleteAllowlist(name: string) {
    return this.must('DELETE', this.path('modelallowlists', name));
  }
  async getConnection(name: string): Promise<Obj> {
    return (await this.must('GET', this.path('providerconnections', name))) as Obj;
  }
  async getAllowlist(name: string): Promise<Obj> {
    return (await this.must('GET', this.path('modelallowlists', name))) as Obj;
  }
  /** Waits until the connection's Ready condition has this reason for the current generation. */
  async waitReady(name: string, reason: string, timeoutMs?: number): Promise<Obj> {
    return eventually(
      async () => {
        const c = await this.getConnection(name);
        const ready = c.status?.conditions?.find((x) => x.type === 'Ready');
        return ready?.reason === reason && ready.observedGeneration === c.metadata.generation ? c : undefined;
      },
      `${name} Ready reason ${reason}`,
      timeoutMs,
    );
  }
  /** The snapshot as a gateway reads it: the root Secret, joined with its shard Secrets if it has any. */
  async snapshot(secretName = SNAPSHOT_SECRET_NAME): Promise<Snapshot | undefined> {
    const root = await kubeRaw(this.kc, 'GET', `/api/v1/namespaces/${this.ns}/secrets/${secretName}`);
    if (root.status === 404) return undefined;
    const data = async (name: string) => {
      const body = (await this.must('GET', `/api/v1/namespaces/${this.ns}/secrets/${name}`)) as SecretBody;
      return Buffer.from(body.data[SNAPSHOT_DATA_KEY] as string, 'base64');
    };
    const { metadata, data: rootData } = root.body as SecretBody;
    const first = Buffer.from(rootData[SNAPSHOT_DATA_KEY] as string, 'base64');
    return decodeSnapshot(
      await assembleSnapshot(first, metadata.annotations, (i) => data(shardSecretName(secretName, i))),
    );
  }
  /** The Secret's metadata (annotations, labels, resourceVersion); undefined when it does not exist. */
  async secretMeta(name: string): Promise<SecretBody['metadata'] | undefined> {
    const res = await kubeRaw(this.kc, 'GET', `/api/v1/namespaces/${this.ns}/secrets/${name}`);
    if (res.status === 404) return undefined;
    if (res.status >= 300) throw new Error(`GET Secret ${name}: ${res.status}`);
    return (res.body as SecretBody).metadata;
  }
  async events(involved: string): Promise<{ reason: string; type: string; message: string }[]> {
    const res = (await this.must('GET', `/api/v1/namespaces/${this.ns}/events`)) as {
      items: { involvedObject: { name: string }; reason: string; type: string; message: string }[];
    };
    return res.items.filter((e) => e.involvedObject.name === involved);
  }
}

export function cond(o: Obj, type: string): Cond | undefined {
  return o.status?.conditions?.find((c) => c.type === type);
}
