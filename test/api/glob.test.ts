/**
 * Model patterns (src/api/glob.ts): the linear matcher agrees with the obvious regular expression on every
 * pattern and ID, and stays linear where a regular expression would backtrack.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { modelPattern } from '../../src/api/glob.ts';
import { propertyRun } from '../support/property.ts';

const reference = (pattern: string, id: string) =>
  new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
      .join('.*')}$`,
    's',
  ).test(id);

describe('modelPattern', () => {
  it('matches exactly what the regular expression matches', () => {
    const alphabet = fc.constantFrom('a', 'b', '-', '.', '/', '*', 'gpt', '4o');
    fc.assert(
      fc.property(
        fc.array(alphabet, { maxLength: 8 }).map((a) => a.join('')),
        fc
          .array(fc.constantFrom('a', 'b', '-', '.', '/', 'gpt', '4o', 'x'), { maxLength: 12 })
          .map((a) => a.join('')),
        (pattern, id) => {
          expect(modelPattern(pattern).matches(id), `${pattern} ~ ${id}`).toBe(reference(pattern, id));
        },
      ),
      propertyRun('modelPattern agrees with the regex', 5000),
    );
  });

  it('stays linear on an ID built to make a regular expression backtrack', () => {
    const id = `${'a'.repeat(2_000_000)}c`;
    const started = process.cpuUsage();
    expect(modelPattern('*a*a*a*b*').matches(id)).toBe(false);
    expect(modelPattern('*a*a*c').matches(id)).toBe(true);
    const cpuMs = (process.cpuUsage(started).user + process.cpuUsage(started).system) / 1000;
    // a backtracking regex takes hours here; a generous bound that holds on a busy machine
    expect(cpuMs).toBeLessThan(5_000);
  });
});
