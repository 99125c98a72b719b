import type { Metric } from 'prom-client';

/** One line's value as prom-client's registry reads it: `labels` first, then the series' own (`sharedLabels`). */
interface Value {
  labels: Record<string, string | number>;
  sharedLabels: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
}

/** One label set's series: what the proxy keeps and observes into. */
export interface HistogramCell {
  observe(value: number): void;
}

class Cell implements HistogramCell {
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  private readonly bounds: readonly number[];

  constructor(labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = { ...labels };
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/**
 * A Prometheus histogram for the proxy's path. prom-client's Histogram checks and hashes the label set on every
 * observation, through a child from labels() too: four histograms per request were 2.2% of the gateway's CPU.
 * Here a label set is a cell that the caller finds once and keeps, and an observation is a bucket search and
 * three additions. The registry exposes it in prom-client's own format (the same lines as its Histogram).
 */
export class HotHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly labelNames: readonly L[];
  private readonly bounds: readonly number[];
  private readonly cells = new Map<string, Cell>();

  constructor(o: {
    name: string;
    help: string;
    labelNames: readonly L[];
    buckets: readonly number[];
    registers: { registerMetric(metric: Metric): void }[];
  }) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames;
    this.bounds = [...o.buckets].sort((a, b) => a - b);
    // The registry takes any object with prom-client's metric shape (name, help, type, get, reset).
    for (const r of o.registers) r.registerMetric(this as unknown as Metric);
  }

  /** The cell of one label set (made on first use); keep it, and observe into it. */
  labels(labels: Record<L, string>): HistogramCell {
    const key = JSON.stringify(this.labelNames.map((n) => labels[n]));
    let c = this.cells.get(key);
    if (!c) {
      c = new Cell(labels, this.bounds);
      this.cells.set(key, c);
    }
    return c;
  }

  /** For the registry's text formats: each line's `le` first, then the series' labels. */
  async getForPromString(): Promise<{
    name: string;
    help: string;
    type: string;
    values: Value[];
    aggregator: string;
  }> {
    const values: Value[] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.cells.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += c.counts[i] as number;
        values.push(value({ le: this.bounds[i] as number }, acc, bucket, c.labels));
      }
      values.push(value({ le: '+Inf' }, c.count, bucket, c.labels));
      values.push(value({}, c.sum, `${this.name}_sum`, c.labels));
      values.push(value({}, c.count, `${this.name}_count`, c.labels));
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** As prom-client's Histogram.get(): each value with all its labels in `labels`. */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    values: Omit<Value, 'sharedLabels'>[];
    aggregator: string;
  }> {
    const m = await this.getForPromString();
    return {
      ...m,
      values: m.values.map(({ sharedLabels, labels, ...v }) => ({
        ...v,
        labels: { ...labels, ...sharedLabels },
      })),
    };
  }

  /** Zeroes every series; the cells callers keep stay valid. */
  reset(): void {
    for (const c of this.cells.values()) {
      c.counts.fill(0);
      c.sum = 0;
      c.count = 0;
    }
  }
}

function value(
  labels: Record<string, string | number>,
  v: number,
  metricName: string,
  sharedLabels: Readonly<Record<string, string>>,
): Value {
  return { labels, sharedLabels, value: v, metricName };
}
