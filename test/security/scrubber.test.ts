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

  it('finds any 12-character piece of the key in a short value (a header) and in a long one (a body)', () => {
    const key = `sk-proj-${'Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9'.repeat(5)}`; // 143 characters: 132 pieces
    const long = new SecretScrubber(key);
    for (let i = 0; i + 12 <= key.length; i += 7) {
      const piece = key.slice(i, i + 12);
      expect(long.finds(`x=${piece};`), piece).toBe(true); // fewer windows than pieces: looked up
      expect(long.finds(`${'.'.repeat(400)}${piece}${'.'.repeat(400)}`), piece).toBe(true); // searched
      expect(long.finds(`x=${piece.slice(1)};`), piece).toBe(false); // 11 characters are not the key
    }
    expect(long.finds('application/json; charset=utf-8')).toBe(false);
  });
});
