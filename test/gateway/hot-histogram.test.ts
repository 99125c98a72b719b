import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotHistogram } from '../../src/gateway/hot-histogram.ts';

describe('HotHistogram', () => {
  const spec = {
    name: 'x_seconds',
    help: 'A help text with "quotes" and \\ backslashes.',
    buckets: [0.1, 1, 10],
  };
  const observations: [Record<'c' | 'm', string>, number][] = [
    [{ c: 'a"b', m: 'line\nbreak' }, 0.05],
    [{ c: 'a"b', m: 'line\nbreak' }, 1], // on a bound: counted in it (le is "less or equal")
    [{ c: 'a"b', m: 'line\nbreak' }, 5],
    [{ c: 'z', m: 'y\\' }, 100], // above every bound: only +Inf
    [{ c: 'z', m: 'y\\' }, 0],
  ];

  const pair = <
    T extends
      | 'text/plain; version=0.0.4; charset=utf-8'
      | 'application/openmetrics-text; version=1.0.0; charset=utf-8',
  >(
    contentType: T,
  ) => {
    const theirs = new Registry<T>();
    const ours = new Registry<T>();
    theirs.setContentType(contentType);
    ours.setContentType(contentType);
    const h = new Histogram({ ...spec, labelNames: ['c', 'm'], registers: [theirs as unknown as Registry] });
    const hot = new HotHistogram({ ...spec, labelNames: ['c', 'm'] as const, registers: [ours] });
    for (const [labels, v] of observations) {
      h.observe(labels, v);
      hot.labels(labels).observe(v);
    }
    return { theirs, ours };
  };

  it("exposes the same lines as prom-client's Histogram, in both text formats and as JSON", async () => {
    const text = pair(Registry.PROMETHEUS_CONTENT_TYPE);
    expect(await text.ours.metrics()).toBe(await text.theirs.metrics());
    const open = pair(Registry.OPENMETRICS_CONTENT_TYPE);
    expect(await open.ours.metrics()).toBe(await open.theirs.metrics());
    const strip = (v: unknown) => JSON.parse(JSON.stringify(v, (k, x) => (k === 'exemplar' ? undefined : x)));
    expect(strip(await text.ours.getMetricsAsJSON())).toEqual(strip(await text.theirs.getMetricsAsJSON()));
  });

  it('keeps one cell per label set, ignores values that are not finite, and resets to zero in place', async () => {
    const reg = new Registry();
    const hot = new HotHistogram({ ...spec, labelNames: ['c'] as const, registers: [reg] });
    const cell = hot.labels({ c: 'a' });
    expect(hot.labels({ c: 'a' })).toBe(cell);
    cell.observe(Number.NaN);
    cell.observe(Number.POSITIVE_INFINITY);
    cell.observe(2);
    expect(await reg.metrics()).toContain('x_seconds_count{c="a"} 1');
    reg.resetMetrics();
    expect(await reg.metrics()).toContain('x_seconds_count{c="a"} 0');
    cell.observe(0.5); // a cell kept across the reset still counts
    expect(await reg.metrics()).toContain('x_seconds_bucket{le="1",c="a"} 1');
  });

  it('sorts its buckets (prom-client does not, and then counts wrongly)', async () => {
    const reg = new Registry();
    const hot = new HotHistogram({
      ...spec,
      buckets: [10, 0.1, 1],
      labelNames: [] as const,
      registers: [reg],
    });
    hot.labels({}).observe(0.5);
    const lines = (await reg.metrics()).split('\n').filter((l) => l.startsWith('x_seconds_bucket'));
    expect(lines).toEqual([
      'x_seconds_bucket{le="0.1"} 0',
      'x_seconds_bucket{le="1"} 1',
      'x_seconds_bucket{le="10"} 1',
      'x_seconds_bucket{le="+Inf"} 1',
    ]);
  });
});
