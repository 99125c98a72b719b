import type { z } from 'zod';

/**
 * A validation rule written once and enforced twice: as a CEL `x-kubernetes-validations` entry in the CRD
 * (so the API server rejects bad resources) and as a zod refinement (so `plugboard verify`, standalone mode
 * and the operator reject the same input offline, with the same message).
 */
export interface Rule<T> {
  /** CEL expression evaluated by the API server against `self`; omit where the schema enforces it natively. */
  cel?: string;
  /** What the person applying the resource reads. Same text on both sides. */
  message: string;
  /** Equivalent check in TypeScript. */
  check: (value: T) => boolean;
  /** JSON path (relative to `self`) the API server and zod attribute the error to. */
  fieldPath?: string;
}

/** Attaches rules (and optionally a description) to a schema; call once per schema, as `.meta()` replaces. */
export function withRules<S extends z.ZodType>(
  schema: S,
  rules: Rule<z.output<S>>[],
  description?: string,
): S {
  let refined: z.ZodType = schema;
  for (const r of rules) {
    const path = r.fieldPath ? r.fieldPath.replace(/^\./, '').split('.') : [];
    refined = refined.refine((v) => r.check(v as z.output<S>), { message: r.message, path });
  }
  const validations = rules.flatMap((r) =>
    r.cel === undefined
      ? []
      : [
          {
            rule: r.cel,
            message: r.message,
            ...(r.fieldPath ? { fieldPath: r.fieldPath } : {}),
          },
        ],
  );
  return refined.meta({
    ...(description ? { description } : {}),
    'x-kubernetes-validations': validations,
  }) as unknown as S;
}

/** Characters allowed in CEL single-quoted string literals are escaped here once. */
export function celString(s: string): string {
  return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}
