import { CONDITION_READY } from '../../api/conditions.ts';
import type { ModelAllowlistStatus } from '../../api/model-allowlist.ts';
import { type Condition, type DesiredCondition, mergeConditions } from '../runtime/conditions.ts';
import { type AllowlistExposureView, allowlistConditions, type ConnectionView } from './readiness.ts';

/** The status lists are bounded by the schema. */
const STATUS_LIST_MAX = 1000;

const NOTHING: AllowlistExposureView = {
  generation: undefined,
  exposedModels: [],
  missingModels: [],
  unmatchableGlobs: [],
};

export interface AllowlistObservation {
  namespace: string;
  name: string;
  generation: number;
  /** spec.connectionRef.name */
  connectionName: string;
  /** What that connection's last reconcile decided; undefined when the connection does not exist. */
  connection: ConnectionView | undefined;
  previousStatus: ModelAllowlistStatus | undefined;
  now: Date;
}

export interface AllowlistPlan {
  status: ModelAllowlistStatus;
  ready: DesiredCondition;
  exposure: AllowlistExposureView;
}

/**
 * Whether the connection's last reconcile has seen this generation of the list. Until it has, the list's
 * status would describe a spec the connection did not plan with, so the allowlist controller waits for it.
 */
export function connectionHasSeen(view: ConnectionView, name: string, generation: number): boolean {
  return view.allowlists.get(name)?.generation === generation;
}

/** Pure: an allowlist's status from what its connection decided for it. */
export function planAllowlist(o: AllowlistObservation): AllowlistPlan {
  const exposure = o.connection?.allowlists.get(o.name) ?? NOTHING;
  const desired = allowlistConditions(
    { namespace: o.namespace, connectionName: o.connectionName, connection: o.connection, exposure },
    o.generation,
  );
  const status: ModelAllowlistStatus = {
    observedGeneration: o.generation,
    conditions: mergeConditions(o.previousStatus?.conditions as Condition[] | undefined, desired, o.now),
    exposedModels: exposure.exposedModels.slice(0, STATUS_LIST_MAX),
    missingModels: exposure.missingModels.slice(0, STATUS_LIST_MAX),
  };
  const ready = desired.find((c) => c.type === CONDITION_READY) as DesiredCondition;
  return { status, ready, exposure };
}
