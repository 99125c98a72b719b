import { z } from 'zod';
import { withRules } from './rules.ts';

export const GROUP = 'plugboard.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

// --- Durations: Go-style strings (`30s`, `5m`, `1h30m`, `250ms`), what kubectl users already write. ---

const DURATION_RE = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const DURATION_CEL_RE = '^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$';
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a validated duration string into milliseconds. Throws on malformed input. */
export function parseDuration(value: string): number {
  if (!DURATION_RE.test(value)) throw new Error(`invalid duration ${JSON.stringify(value)}`);
  let total = 0;
  for (const m of value.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return Math.round(total);
}

/** A positive duration field with a default, bounded below by `min`. */
export function duration(opts: { default: string; min: string; max?: string; description: string }) {
  const minMs = parseDuration(opts.min);
  const maxMs = opts.max ? parseDuration(opts.max) : undefined;
  const wellFormed = `self.matches('${DURATION_CEL_RE}')`;
  const rules = [
    {
      cel: wellFormed,
      message: 'must be a duration such as 30s, 5m or 1h30m (digits and a unit of ms, s, m or h; no sign)',
      check: (s: string) => DURATION_RE.test(s),
    },
    {
      // Guarded so a malformed value reports only the message above, not a CEL evaluation error.
      cel: `!${wellFormed} || duration(self) >= duration('${opts.min}')`,
      message: `must be at least ${opts.min}`,
      check: (s: string) => !DURATION_RE.test(s) || parseDuration(s) >= minMs,
    },
  ];
  if (opts.max) {
    rules.push({
      cel: `!${wellFormed} || duration(self) <= duration('${opts.max}')`,
      message: `must be at most ${opts.max}`,
      check: (s: string) => !DURATION_RE.test(s) || parseDuration(s) <= (maxMs as number),
    });
  }
  return withRules(z.string().max(32), rules, `${opts.description} Default ${opts.default}.`).default(
    opts.default,
  );
}

// --- Names ---

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const objectName = z
  .string()
  .min(1)
  .max(253)
  .regex(DNS_SUBDOMAIN, 'must be a lowercase DNS subdomain name (a-z, 0-9, "-" and ".")');

// --- Conditions: the metav1.Condition shape, so kubectl wait, kstatus, Flux and Argo CD understand them. ---

export const ConditionStatus = z.enum(['True', 'False', 'Unknown']);

export const Condition = z.object({
  type: z
    .string()
    .max(316)
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
    ),
  status: ConditionStatus,
  observedGeneration: z.int().min(0).optional(),
  lastTransitionTime: z.iso.datetime({ offset: true }),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
});
export type Condition = z.output<typeof Condition>;

export const conditions = z
  .array(Condition)
  .max(16)
  .meta({
    description: 'Current state, one entry per condition type (positive polarity).',
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  })
  .optional();

/** The slice of ObjectMeta that Plugboard reads; everything else passes through untouched. */
export const ObjectMeta = z.looseObject({
  name: objectName,
  namespace: objectName.optional(),
  uid: z.string().optional(),
  generation: z.int().optional(),
  resourceVersion: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
  deletionTimestamp: z.union([z.string(), z.date()]).optional(),
});
export type ObjectMeta = z.output<typeof ObjectMeta>;
