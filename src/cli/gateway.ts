import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { buildGateway } from '../gateway/app.ts';
import { type ClientKeysSource, FileClientKeys, StaticClientKeys } from '../gateway/client-keys.ts';
import { FileSnapshotSource, type SnapshotSource } from '../gateway/snapshot-source.ts';
import {
  ADDRESS_POLICY_FLAGS,
  ADDRESS_POLICY_USAGE,
  policyFromFlags,
  setAddressPolicy,
} from '../net/address-policy.ts';
import { parseBytes, parseDurationMs, parseListen } from './args.ts';
import { SERVER_FLAGS, SERVER_USAGE, serverOptions } from './server-flags.ts';
import { shutdownOnSignals } from './shutdown.ts';

export const GATEWAY_USAGE = `Usage: plugboard gateway [options]

Serves the OpenAI-compatible API from a routing snapshot.

  --config-file F              Snapshot file: JSON/YAML of the snapshot schema or the gzipped wire format (watched)
  --snapshot-secret NS/NAME    Watch the operator's snapshot Secret (default name plugboard-snapshot)
  --listen HOST:PORT           Default 0.0.0.0:8080
  --metrics-listen HOST:PORT   Also serve /metrics on a separate listener
  --client-keys-file F         Gateway API keys [{name, key | sha256, models?}] (watched)
  --client-keys-secret NS/NAME Gateway API keys from a Secret (data key keys.yaml)
                               (or PLUGBOARD_CLIENT_KEYS: the same list inline)
  --ui-dir D                   Serve the built UI from D at / (default: the package's dist/ui when built)
  --drain-timeout 30s          On SIGTERM/SIGINT, how long in-flight requests may finish
                               (then exit 0; a second signal exits at once, 143 or 130)
  --max-json-body 8MiB         --max-multipart-body 25MiB
  --log-level info             trace | debug | info | warn | error
${SERVER_USAGE}
${ADDRESS_POLICY_USAGE}
In cluster (KUBERNETES_SERVICE_HOST set) the service account is used, else KUBECONFIG.`;

export async function runGateway(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'config-file': { type: 'string' },
      'snapshot-secret': { type: 'string' },
      listen: { type: 'string', default: '0.0.0.0:8080' },
      'metrics-listen': { type: 'string' },
      'client-keys-file': { type: 'string' },
      'client-keys-secret': { type: 'string' },
      'ui-dir': { type: 'string' },
      'drain-timeout': { type: 'string', default: '30s' },
      'max-json-body': { type: 'string', default: '8MiB' },
      'max-multipart-body': { type: 'string', default: '25MiB' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
      ...SERVER_FLAGS,
      ...ADDRESS_POLICY_FLAGS,
    },
  });
  if (values.help) {
    console.log(GATEWAY_USAGE);
    return 0;
  }
  if (!values['config-file'] === !values['snapshot-secret']) {
    console.error(
      `plugboard gateway: give exactly one of --config-file or --snapshot-secret\n\n${GATEWAY_USAGE}`,
    );
    return 2;
  }
  // Which upstream addresses the gateway may connect to (src/net/address-policy.ts); set before any pool exists.
  const policy = policyFromFlags(values);
  setAddressPolicy(policy);
  let snapshots: SnapshotSource;
  if (values['config-file']) snapshots = new FileSnapshotSource(values['config-file']);
  else {
    // @kubernetes/client-node is large: load it only in cluster mode
    const { KubernetesSnapshotSource } = await import('../gateway/snapshot-source.ts');
    const { parseSecretRef } = await import('../gateway/secret-feed.ts');
    const { loadKubeAuth } = await import('../kube/auth.ts');
    const ref = parseSecretRef(values['snapshot-secret'] as string, 'plugboard-snapshot');
    snapshots = new KubernetesSnapshotSource(await loadKubeAuth(), ref.namespace, ref.name);
  }
  let clientKeys: ClientKeysSource | undefined;
  if (values['client-keys-file']) clientKeys = new FileClientKeys(values['client-keys-file']);
  else if (values['client-keys-secret']) {
    const { SecretClientKeys } = await import('../gateway/client-keys.ts');
    const { parseSecretRef } = await import('../gateway/secret-feed.ts');
    const { loadKubeAuth } = await import('../kube/auth.ts');
    const ref = parseSecretRef(values['client-keys-secret']);
    clientKeys = new SecretClientKeys(await loadKubeAuth(), ref.namespace, ref.name);
  } else if (process.env.PLUGBOARD_CLIENT_KEYS !== undefined)
    // set, even to nothing, means keys are wanted: an empty list refuses every request rather than none
    clientKeys = new StaticClientKeys(process.env.PLUGBOARD_CLIENT_KEYS, 'PLUGBOARD_CLIENT_KEYS');

  // Buffered, asynchronous log writes: one write per 8 KiB (sonic-boom needs less than its 16 KiB maxWrite)
  // instead of one per access line, and at least every 250 ms, so a quiet gateway's lines still show up at once.
  // At most 4 MiB wait: when lines come faster than they leave (a flood of refused requests), the excess is
  // dropped and counted (plugboard_gateway_log_lines_dropped_total) rather than kept until the heap is gone.
  const logDestination = pino.destination({
    dest: 1,
    sync: false,
    minLength: 8 * 1024,
    maxLength: 4 * 1024 * 1024,
  });
  const logFlusher = setInterval(() => {
    try {
      logDestination.flush();
    } catch {
      // destroyed at exit
    }
  }, 250);
  logFlusher.unref();
  const gateway = await buildGateway({
    snapshots,
    clientKeys,
    uiDir: values['ui-dir'] ?? defaultUiDir(),
    drainTimeoutMs: parseDurationMs(values['drain-timeout'] as string),
    maxJsonBody: parseBytes(values['max-json-body'] as string),
    maxMultipartBody: parseBytes(values['max-multipart-body'] as string),
    logger: { level: values['log-level'] as string, stream: logDestination },
    ...serverOptions(values),
  });
  logDestination.on('drop', () => gateway.metrics.logLinesDropped.inc());
  gateway.app.log.info({ addressPolicy: policy.describe() }, 'upstream address policy');
  const { host, port } = parseListen(values.listen as string);
  const url = await gateway.listen(host, port);
  if (values['metrics-listen']) {
    const m = parseListen(values['metrics-listen']);
    await gateway.listenMetrics(m.host, m.port);
  }
  gateway.app.log.info({ url, snapshot: snapshots.status().source }, 'gateway listening');

  return shutdownOnSignals({
    log: gateway.app.log,
    stop: async () => {
      try {
        await gateway.drain();
      } finally {
        clearInterval(logFlusher);
      }
    },
    flush: () => logDestination.flushSync(),
  }).finished;
}

/** The UI that `npm run build` put next to the code, if any. */
function defaultUiDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../dist/ui', import.meta.url));
  return existsSync(join(dir, 'index.html')) ? dir : undefined;
}
