import type { OperatorMetrics } from '../metrics.ts';
import type { EventSink, Kind, StatusSink, StoredObject } from '../ports.ts';
import { type Condition, type DesiredCondition, findCondition, transitioned } from '../runtime/conditions.ts';
import { patchStatusIfChanged } from '../runtime/status.ts';

export interface StatusExit {
  status: StatusSink;
  events: EventSink;
  metrics: OperatorMetrics;
}

/**
 * The one status exit of an object: writes `desired` when it differs from what the object has, counts the write,
 * and records `report` as an Event when the write changes that condition's status or reason (`eventType` says
 * Normal or Warning; undefined: no Event for this change).
 */
export async function commitStatus<S extends { conditions?: unknown[] }>(
  x: StatusExit,
  kind: Kind,
  obj: StoredObject<unknown, S>,
  desired: S,
  report?: { condition: DesiredCondition; eventType: 'Normal' | 'Warning' | undefined },
): Promise<boolean> {
  const { namespace = '', name, uid } = obj.metadata;
  const wrote = await patchStatusIfChanged(obj.status, desired, (patch) =>
    x.status.patch(kind, namespace, name, patch),
  );
  if (!wrote) return false;
  x.metrics.statusWrites.inc({ kind });
  const c = report?.condition;
  const before = c && findCondition(obj.status?.conditions as Condition[] | undefined, c.type);
  if (c && report.eventType && transitioned(before, c)) {
    await x.events.record({
      kind,
      namespace,
      name,
      ...(uid ? { uid } : {}),
      type: report.eventType,
      condition: c.type,
      reason: c.reason,
      message: c.message,
    });
  }
  return true;
}
