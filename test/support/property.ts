/**
 * Settings for fast-check properties: a new seed each run (so runs explore new cases), printed so a failure can
 * be replayed with `PLUGBOARD_SEED=<seed> npx vitest run <file>`; fast-check's own failure report repeats it.
 */
import type { Parameters } from 'fast-check';

export function propertyRun<T>(name: string, numRuns: number): Parameters<T> {
  const fixed = process.env.PLUGBOARD_SEED;
  const seed = fixed !== undefined ? Number(fixed) : (Math.random() * 0x7fffffff) | 0;
  console.log(`property "${name}": seed ${seed} (replay with PLUGBOARD_SEED=${seed})`);
  return { seed, numRuns, endOnFailure: true };
}
