import { describe, expect, it } from 'vitest';
import { retryAfterMs } from '../../src/net/retry-after.ts';

describe('retryAfterMs', () => {
  const now = Date.parse('2026-12-02T10:00:00Z');
  it('reads seconds and HTTP dates, as milliseconds from now', () => {
    expect(retryAfterMs('120', now)).toBe(120_000);
    expect(retryAfterMs(' 1.5 ', now)).toBe(1500);
    expect(retryAfterMs('Wed, 02 Dec 2026 10:00:30 GMT', now)).toBe(30_000);
  });
  it('never answers more than a day, however far the date or large the number', () => {
    expect(retryAfterMs('9'.repeat(400), now)).toBe(86_400_000);
    expect(retryAfterMs('3000000', now)).toBe(86_400_000);
    expect(retryAfterMs('Fri, 31 Dec 9999 23:59:59 GMT', now)).toBe(86_400_000);
  });
  it('never answers a negative wait: a past date means now', () => {
    expect(retryAfterMs('Wed, 02 Dec 2026 09:00:00 GMT', now)).toBe(0);
  });
  it('takes the first of repeated headers and ignores what it cannot read', () => {
    expect(retryAfterMs(['2', '900'], now)).toBe(2000);
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs('', now)).toBeUndefined();
    expect(retryAfterMs([], now)).toBeUndefined();
    for (const v of ['soon', '-5', '0x10', '1e3', 'Infinity', '12 34'])
      expect(retryAfterMs(v, now), v).toBeUndefined();
  });
});
