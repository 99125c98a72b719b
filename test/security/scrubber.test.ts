/** SecretScrubber (src/providers/upstream-errors.ts): the key in every spelling, whole or in part, never leaves. */
import { describe, expect, it } from 'vitest';
import { SecretScrubber } from '../../src/providers/upstream-errors.ts';

const KEY = 'sk-proj-Zq8vXw3Lm5Np7Rt9Hk2Jd4Fg6Bc1';

describe('SecretScrubber', () => {
  const s = new SecretScrubber(KEY);

  it('masks a key an upstream echoed without its last characters, or only its middle', () => {
    for (const echoed of [KEY.slice(0, -2), KEY.slice(0, -6), KEY.slice(5), KEY.slice(6, 30)]) {
      const out = s.scrub(`{"error":{"message":"Incorrect API key provided: ${echoed}."}}`);
      expect(out, echoed).not.toContain(echoed.slice(0, 12));
      expect(out, echoed).not.toContain(echoed.slice(-12));
      expect(s.finds(echoed)).toBe(true);
    }
  });

  it("leaves what is not the key: OpenAI's own masked echo, and short pieces", () => {
    const masked = `Incorrect API key provided: sk-proj-************************Bc1.`;
    expect(s.scrub(masked)).toBe(masked);
    expect(s.scrub('the model sk-proj-abc is unknown')).toBe('the model sk-proj-abc is unknown');
  });
});
