import { CONDITION_READY, CONDITION_STALLED, REASON_INVALID_SPEC } from '../../api/conditions.ts';
import { type Condition, type DesiredCondition, mergeConditions } from '../runtime/conditions.ts';
import { sameStatus } from '../runtime/status.ts';

/** Validation errors shown in a condition message; the rest are counted. */
const MAX_ISSUES = 10;

export interface InvalidSpecObservation<S> {
  generation: number;
  /** `field: message` lines (describeIssues), relative to spec. */
  issues: string[];
  /** The routing snapshot still holds the object's last valid spec. */
  serving: boolean;
  previousStatus: S | undefined;
  now: Date;
}

export interface InvalidSpecPlan<S> {
  status: S;
  statusChanged: boolean;
  ready: DesiredCondition;
}

/**
 * Pure: the status of an object whose spec the API server admitted but Plugboard's validation refuses. Ready is
 * False and Stalled True (kstatus: failed, not in progress), both with reason InvalidSpec and the validation
 * errors; the other conditions and fields stay as they were, describing the last valid generation.
 */
export function planInvalidSpec<S extends { observedGeneration?: number; conditions?: Condition[] }>(
  o: InvalidSpecObservation<S>,
): InvalidSpecPlan<S> {
  const shown = o.issues.slice(0, MAX_ISSUES).map((i) => `spec.${i}`);
  const more = o.issues.length > MAX_ISSUES ? `; and ${o.issues.length - MAX_ISSUES} more` : '';
  const message =
    `the spec fails validation: ${shown.join('; ')}${more}. Fix the spec; the operator acts on it again when ` +
    `it changes${o.serving ? ' (until then the gateway serves the last valid spec)' : ''}`;
  const cond = (type: string): DesiredCondition => ({
    type,
    status: type === CONDITION_READY ? 'False' : 'True',
    reason: REASON_INVALID_SPEC,
    message,
    observedGeneration: o.generation,
  });
  const ready = cond(CONDITION_READY);
  const prev = o.previousStatus;
  const status = {
    ...prev,
    observedGeneration: o.generation,
    conditions: mergeConditions(prev?.conditions, [ready, cond(CONDITION_STALLED)], o.now),
  } as S;
  const statusChanged = !sameStatus(status, prev);
  return { status, statusChanged, ready };
}
