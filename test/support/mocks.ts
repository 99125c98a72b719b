import { afterAll, afterEach } from 'vitest';
import {
  type MockProvider,
  type MockProviderOptions,
  startMockProvider,
} from '../../src/mock-provider/index.ts';

/**
 * Returns a `mock(opts)` that starts a simulated upstream and closes it after each test (`'each'`) or after the
 * file (`'all'`). Call it at the top level of a test file.
 */
export function useMockProviders(
  scope: 'each' | 'all' = 'all',
): (opts: MockProviderOptions) => Promise<MockProvider> {
  const started: MockProvider[] = [];
  (scope === 'each' ? afterEach : afterAll)(async () => {
    await Promise.all(started.splice(0).map((m) => m.close()));
  });
  return async (opts) => {
    const m = await startMockProvider(opts);
    started.push(m);
    return m;
  };
}
