import { isAllowlistFault } from '../../api/model-allowlist.ts';
import { connectionHasSeen, planAllowlist } from '../logic/allowlist-status.ts';
import type { ConnectionView } from '../logic/readiness.ts';
import type { ObjectSource } from '../ports.ts';
import type { ReconcileContext, ReconcileResult } from '../runtime/controller.ts';
import { commitStatus, type StatusExit } from './status.ts';

export interface AllowlistControllerOptions extends StatusExit {
  objects: ObjectSource;
  /** What a connection's last reconcile decided for its allowlists (ConnectionController.view). */
  viewOf(connectionKey: string): ConnectionView | undefined;
}

/**
 * ModelAllowlist: the only writer of an allowlist's status. Its status follows from what its connection's last
 * reconcile decided for it, so it is written after that reconcile (which enqueues the connection's allowlists);
 * a list whose connection does not exist is ConnectionNotFound. A change of Ready to one of the list's own
 * faults (ModelsMissing, GlobNeedsModelList) is recorded as a Warning Event.
 */
export class AllowlistController {
  private readonly o: AllowlistControllerOptions;

  constructor(o: AllowlistControllerOptions) {
    this.o = o;
  }

  async reconcile(key: string, ctx: ReconcileContext): Promise<ReconcileResult | undefined> {
    const a = this.o.objects.allowlist(key);
    if (!a || a.metadata.deletionTimestamp) return undefined;
    const namespace = a.metadata.namespace ?? '';
    const generation = a.metadata.generation ?? 0;
    const connectionName = a.spec.connectionRef.name;
    const connectionKey = `${namespace}/${connectionName}`;
    let view: ConnectionView | undefined;
    if (this.o.objects.connection(connectionKey)) {
      view = this.o.viewOf(connectionKey);
      // The connection has not planned with this generation of the list yet; its reconcile enqueues the list.
      if (!view || !connectionHasSeen(view, a.metadata.name, generation)) return undefined;
    }
    const plan = planAllowlist({
      namespace,
      name: a.metadata.name,
      generation,
      connectionName,
      connection: view,
      previousStatus: a.status,
      now: new Date(),
    });
    const fault = plan.ready.status !== 'True' && isAllowlistFault(plan.ready.reason);
    const wrote = await commitStatus(this.o, 'ModelAllowlist', a, plan.status, {
      condition: plan.ready,
      eventType: fault ? 'Warning' : undefined,
    });
    if (wrote) ctx.log.debug({ ready: plan.ready.reason }, 'allowlist status written');
    return undefined;
  }
}
