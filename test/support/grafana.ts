/**
 * The chart's Grafana dashboard as the tests read it: its JSON checked against Grafana's dashboard model, and its
 * panel queries with the template variables substituted the way Grafana's Prometheus data source does.
 */
import { z } from 'zod';

/**
 * Grafana's classic dashboard JSON model: what the Grafana sidecar that `grafana_dashboard: "1"` targets hands to
 * Grafana's file provisioning. Written from Grafana's documented dashboard schema (the Dashboard kind's schema
 * reference: spec, Panel, RowPanel, GridPos, FieldConfigSource, DataSourceRef, VariableModel), not copied from it.
 * Objects whose every property the reference lists are strict, so a misspelt key fails here instead of being
 * ignored by Grafana; plugin-defined parts (a panel's `options`, a field's `custom`, a query's data source fields)
 * are open, as in the reference.
 */
const uint = z.number().int().nonnegative();
const DataSourceRef = z.strictObject({ type: z.string().optional(), uid: z.string().optional() });
const GridPos = z.strictObject({
  h: uint.positive(),
  w: uint.positive().max(24),
  x: uint.max(23),
  y: uint,
  static: z.boolean().optional(),
});
const FieldConfigSource = z.strictObject({
  defaults: z.looseObject({
    unit: z.string().optional(),
    decimals: z.number().optional(),
    min: z.number().optional(),
    max: z.number().optional(),
    displayName: z.string().optional(),
    custom: z.record(z.string(), z.unknown()).optional(),
  }),
  overrides: z.array(
    z.strictObject({
      matcher: z.strictObject({ id: z.string(), options: z.unknown().optional() }),
      properties: z.array(z.strictObject({ id: z.string(), value: z.unknown().optional() })),
    }),
  ),
});
/** A query; the data source plugin defines everything but refId (Prometheus: expr, legendFormat, ...). */
const Target = z.looseObject({
  refId: z.string().min(1),
  datasource: DataSourceRef.optional(),
  hide: z.boolean().optional(),
});
const PANEL_FIELDS = {
  type: z
    .string()
    .min(1)
    .refine((t) => t !== 'row', 'a panel of type row is a RowPanel'),
  id: uint,
  title: z.string().optional(),
  description: z.string().optional(),
  pluginVersion: z.string().optional(),
  transparent: z.boolean().optional(),
  datasource: DataSourceRef.optional(),
  gridPos: GridPos,
  targets: z.array(Target).optional(),
  links: z.array(z.record(z.string(), z.unknown())).optional(),
  repeat: z.string().optional(),
  repeatDirection: z.enum(['h', 'v']).optional(),
  maxPerRow: z.number().optional(),
  maxDataPoints: z.number().optional(),
  transformations: z.array(z.looseObject({ id: z.string(), options: z.unknown() })).optional(),
  interval: z.string().optional(),
  timeFrom: z.string().optional(),
  timeShift: z.string().optional(),
  hideTimeOverride: z.boolean().optional(),
  libraryPanel: z.strictObject({ name: z.string(), uid: z.string() }).optional(),
  options: z.record(z.string(), z.unknown()).optional(),
  fieldConfig: FieldConfigSource.optional(),
};
const Panel = z.strictObject(PANEL_FIELDS);
const RowPanel = z.strictObject({
  type: z.literal('row'),
  collapsed: z.boolean(),
  id: uint,
  title: z.string().optional(),
  datasource: DataSourceRef.optional(),
  gridPos: GridPos.optional(),
  panels: z.array(Panel),
  repeat: z.string().optional(),
});
const VariableOption = z.strictObject({
  text: z.union([z.string(), z.array(z.string())]),
  value: z.union([z.string(), z.array(z.string())]),
  selected: z.boolean().optional(),
});
const VariableModel = z.strictObject({
  type: z.enum([
    'query',
    'adhoc',
    'groupby',
    'constant',
    'datasource',
    'interval',
    'textbox',
    'custom',
    'system',
  ]),
  name: z.string().regex(/^\w+$/, 'a variable name is letters, digits and _'),
  label: z.string().optional(),
  description: z.string().nullable().optional(),
  hide: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
  skipUrlSync: z.boolean().optional(),
  query: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  datasource: DataSourceRef.nullable().optional(),
  current: VariableOption.partial().optional(),
  options: z.array(VariableOption).optional(),
  multi: z.boolean().optional(),
  includeAll: z.boolean().optional(),
  allValue: z.string().optional(),
  refresh: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
  regex: z.string().optional(),
  sort: z.number().int().min(0).max(8).optional(),
});
export const Dashboard = z.strictObject({
  id: z.number().int().nullable().optional(),
  uid: z.string().min(8).max(40).optional(),
  title: z.string().optional(),
  description: z.string().optional(),
  revision: z.number().int().optional(),
  gnetId: z.string().optional(),
  tags: z.array(z.string()).optional(),
  timezone: z.string().optional(),
  editable: z.boolean().optional(),
  graphTooltip: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
  time: z.strictObject({ from: z.string(), to: z.string() }).optional(),
  timepicker: z
    .strictObject({
      hidden: z.boolean().optional(),
      nowDelay: z.string().optional(),
      refresh_intervals: z.array(z.string()).optional(),
      time_options: z.array(z.string()).optional(),
    })
    .optional(),
  fiscalYearStartMonth: z.number().int().min(0).max(11).optional(),
  liveNow: z.boolean().optional(),
  weekStart: z.string().optional(),
  refresh: z.string().optional(),
  schemaVersion: z.number().int().min(0).max(65535),
  version: uint.optional(),
  panels: z.array(z.union([RowPanel, Panel])).optional(),
  templating: z.strictObject({ list: z.array(VariableModel).optional() }).optional(),
  annotations: z
    .strictObject({
      list: z
        .array(
          z.looseObject({
            name: z.string(),
            datasource: DataSourceRef,
            enable: z.boolean(),
            iconColor: z.string(),
          }),
        )
        .optional(),
    })
    .optional(),
  links: z.array(z.record(z.string(), z.unknown())).optional(),
});
export type Dashboard = z.output<typeof Dashboard>;
type PanelT = z.output<typeof Panel>;
type RowPanelT = z.output<typeof RowPanel>;
export const isRow = (p: PanelT | RowPanelT): p is RowPanelT => p.type === 'row';

/** Every panel that is not a row, rows' own panels included. */
export function leafPanels(d: Dashboard): PanelT[] {
  return (d.panels ?? []).flatMap((p) => (isRow(p) ? p.panels : [p]));
}

export interface PanelQuery {
  panel: string;
  refId: string;
  expr: string;
}

/** Grafana's escaping of a multi-value or All variable's values in a Prometheus query (a regex alternation). */
const regexEscape = (v: string) => v.replace(/\\/g, '\\\\\\\\').replace(/[$^*{}[\]'+?.()|]/g, '\\\\$&');

/**
 * Every panel query with the template variables substituted. `values` gives each query variable's values (All:
 * every value); a multi-value or All variable becomes a regex alternation `(a|b)`, a single value itself, as
 * Grafana's Prometheus data source formats them. `builtins` gives Grafana's own variables a query uses
 * (`__rate_interval`, `__range`, ...). A variable that is neither fails, so no query is sent with a `$` in it.
 */
export function panelQueries(
  d: Dashboard,
  values: Record<string, string[]>,
  builtins: Record<string, string> = {},
): PanelQuery[] {
  const vars = new Map((d.templating?.list ?? []).map((v) => [v.name, v]));
  const substitute = (expr: string, panel: string) =>
    expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (_all, a, b, c) => {
      const name = (a ?? b ?? c) as string;
      if (name in builtins) return builtins[name] as string;
      const v = vars.get(name);
      const vals = values[name];
      if (!v || !vals) throw new Error(`panel "${panel}": no value for $${name}`);
      if (!v.multi && !v.includeAll) return vals[0] ?? '';
      const escaped = vals.map(regexEscape);
      return escaped.length === 1 ? (escaped[0] as string) : `(${escaped.join('|')})`;
    });
  return leafPanels(d).flatMap((p) =>
    (p.targets ?? [])
      .filter((t) => !t.hide)
      .map((t) => ({
        panel: p.title ?? `#${p.id}`,
        refId: t.refId,
        expr: substitute(String(t.expr ?? ''), p.title ?? `#${p.id}`),
      })),
  );
}
