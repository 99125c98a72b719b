import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MOCK_PROFILES, type MockProfileName, startMockProvider } from '../mock-provider/index.ts';

export async function runMockProvider(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      profile: { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      'api-key': { type: 'string' },
      'latency-ms': { type: 'string' },
      'chunk-delay-ms': { type: 'string' },
      'fail-status': { type: 'string' },
      'model-count': { type: 'string' },
      tls: { type: 'boolean' },
      'ca-out': { type: 'string' },
    },
  });
  const profile = values.profile as MockProfileName | undefined;
  if (!profile || !MOCK_PROFILES.includes(profile)) {
    console.error(
      `${profile ? `unknown profile ${JSON.stringify(profile)}` : 'name a profile with --profile'}; one of: ${MOCK_PROFILES.join(', ')}`,
    );
    return 2;
  }
  const listen = /^(.*):(\d+)$/.exec(values.listen);
  if (!listen) throw new Error(`--listen must be host:port, not ${JSON.stringify(values.listen)}`);
  const int = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`--${name} must be a non-negative integer, not ${JSON.stringify(v)}`);
    return n;
  };
  const failStatus = int('fail-status', values['fail-status']);
  const mock = await startMockProvider({
    profile,
    host: (listen[1] as string).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: int('listen port', listen[2]),
    apiKey: values['api-key'],
    latencyMs: int('latency-ms', values['latency-ms']),
    chunkDelayMs: int('chunk-delay-ms', values['chunk-delay-ms']),
    modelCount: int('model-count', values['model-count']),
    failure: failStatus === undefined ? undefined : { kind: 'status', status: failStatus },
    tls: values.tls,
  });
  if (mock.caCert && values['ca-out']) writeFileSync(values['ca-out'], mock.caCert);
  console.log(`mock-provider ${profile} listening on ${mock.url}`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await mock.close();
  return 0;
}
