/**
 * Status written only when it changed (API conventions: no writes in steady state), for any kind. Statuses are
 * compared after normalising, so field order, `undefined` fields and the order of conditions never cause a
 * write; a status is written as a JSON merge patch of its top-level fields.
 */

type Status = object;

/** Sorted keys, no undefined fields, conditions sorted by type. */
export function normaliseStatus(s: Status): unknown {
  const sortKeys = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sortKeys)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>)
              .filter(([, x]) => x !== undefined)
              .sort(([a], [b]) => (a < b ? -1 : 1))
              .map(([k, x]) => [k, sortKeys(x)]),
          )
        : v;
  const conditions = (s as { conditions?: { type: string }[] }).conditions;
  return sortKeys(
    conditions ? { ...s, conditions: [...conditions].sort((a, b) => (a.type < b.type ? -1 : 1)) } : s,
  );
}

export function sameStatus(a: Status | undefined, b: Status | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return JSON.stringify(normaliseStatus(a)) === JSON.stringify(normaliseStatus(b));
}

/** The merge patch from `current` to `desired`: every field of `desired`, and null for fields it no longer has. */
export function statusMergePatch(current: Status | undefined, desired: Status): Record<string, unknown> {
  const removed = Object.keys(current ?? {}).filter((k) => !(k in desired));
  return { ...Object.fromEntries(removed.map((k) => [k, null])), ...desired };
}

/**
 * Writes `desired` with `write` when it differs from `current` and says whether it wrote. The caller's one
 * status exit per object: nothing else writes that object's status.
 */
export async function patchStatusIfChanged(
  current: Status | undefined,
  desired: Status,
  write: (patch: Record<string, unknown>) => Promise<void>,
): Promise<boolean> {
  if (sameStatus(current, desired)) return false;
  await write(statusMergePatch(current, desired));
  return true;
}
