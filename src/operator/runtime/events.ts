import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { kubeTime } from './conditions.ts';

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

/** Writes core/v1 Events. Callers emit only on transitions; a failed event write is logged, never fatal. */
export class EventRecorder {
  private readonly client: KubeClient;
  private readonly component: string;
  private readonly log: Logger;

  constructor(client: KubeClient, component: string, log: Logger) {
    this.client = client;
    this.component = component;
    this.log = log;
  }

  async record(
    obj: InvolvedObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const now = kubeTime(new Date());
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${obj.name}.${randomBytes(8).toString('hex')}`, namespace: obj.namespace },
      involvedObject: obj,
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: process.env.HOSTNAME ?? this.component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await this.client.request('POST', `/api/v1/namespaces/${obj.namespace}/events`, { body });
    } catch (err) {
      this.log.warn({ err: (err as Error).message, reason }, 'could not record event');
    }
  }
}
