/**
 * The simulated upstream for bench/load.ts, in its own process: `node bench/load-upstream.ts <latencyMs>`.
 * It is the mock provider (openai profile) that every test uses; its request log is cleared every second so a
 * long soak measures the gateway, not the mock's memory. Prints `ready <url>`; on SIGTERM prints `served <n>`.
 */
import { startMockProvider } from '../src/mock-provider/index.ts';

const latencyMs = Number(process.argv[2] ?? 0);
const mock = await startMockProvider({ profile: 'openai', latencyMs, models: ['gpt-4o', 'gpt-4o-mini'] });
let served = 0;
const timer = setInterval(() => {
  served += mock.requests.length;
  mock.reset();
}, 1000);
console.log(`ready ${mock.url}`);
process.once('SIGTERM', () => {
  clearInterval(timer);
  served += mock.requests.length;
  console.log(`served ${served}`);
  void mock.close().then(() => process.exit(0));
});
