import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MOCK_PROFILES, type MockProfileName, startMockProvider } from '../mock-provider/index.ts';
import { shutdownOnSignals } from './shutdown.ts';

export const MOCK_PROVIDER_USAGE = `Usage: plugboard mock-provider --profile <name> [options]

Runs a simulated upstream provider (deterministic replies, streamed or not) until SIGTERM or SIGINT, for tests
and demos. Prints "mock-provider <profile> listening on <base URL>" once it serves.

  --profile NAME         ${MOCK_PROFILES.join(' | ')}
  --listen HOST:PORT     Default 127.0.0.1:0 (a free port)
  --api-key K            Require this key in the profile's auth header (else that provider's 401)
  --latency-ms N         Delay before response headers
  --chunk-delay-ms N     Delay between streamed chunks
  --fail-status N        Answer every request with this HTTP status and the provider's error body
  --model-count N        List N generated model IDs instead of the profile's own
  --tls                  Serve HTTPS with a fresh self-signed certificate
  --ca-out FILE          With --tls: write that certificate (PEM) to FILE, for clients to trust`;

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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(MOCK_PROVIDER_USAGE);
    return 0;
  }
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
  // Lines on stderr: stdout's first line is the URL, which scripts read.
  const line = (fields: object, msg: string) =>
    console.error(`mock-provider: ${msg}${Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : ''}`);
  return shutdownOnSignals({
    log: { info: line, warn: line, error: line },
    stop: () => mock.close(),
  }).finished;
}
