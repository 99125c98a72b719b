/** Kubernetes metav1.Condition handling by API conventions. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export type DesiredCondition = Omit<Condition, 'lastTransitionTime'>;

const MAX_MESSAGE = 32_768;

/** RFC 3339 at second precision, as the API server stores metav1.Time. */
export function kubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * Returns the new condition list: each desired condition replaces the one of its type, keeping
 * lastTransitionTime unless the status flips. Conditions of types not given are kept as they were.
 */
export function mergeConditions(
  existing: Condition[] | undefined,
  desired: DesiredCondition[],
  now: Date,
): Condition[] {
  const byType = new Map((existing ?? []).map((c) => [c.type, c]));
  for (const d of desired) {
    const old = byType.get(d.type);
    const message = d.message.length > MAX_MESSAGE ? `${d.message.slice(0, MAX_MESSAGE - 3)}...` : d.message;
    byType.set(d.type, {
      ...d,
      message,
      lastTransitionTime: old && old.status === d.status ? old.lastTransitionTime : kubeTime(now),
    });
  }
  return [...byType.values()];
}

export function findCondition(list: Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}

/**
 * Whether `after` reports something new compared with `before` (its status or reason differs): the rule for when
 * a condition's change is recorded as an Event (or, in standalone mode, logged).
 */
export function transitioned(
  before: Pick<Condition, 'status' | 'reason'> | undefined,
  after: Pick<Condition, 'status' | 'reason'>,
): boolean {
  return before?.status !== after.status || before?.reason !== after.reason;
}
