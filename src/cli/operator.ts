import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadKubeAuth } from '../kube/auth.ts';
import {
  ADDRESS_POLICY_FLAGS,
  ADDRESS_POLICY_USAGE,
  policyFromFlags,
  setAddressPolicy,
} from '../net/address-policy.ts';
import { Operator } from '../operator/operator.ts';
import { parseListen } from './args.ts';
import { type Shutdown, shutdownOnSignals } from './shutdown.ts';

const SA_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export const OPERATOR_USAGE = `Usage: plugboard operator [options]

Runs the operator: verifies each ProviderConnection, keeps its status and the ModelAllowlists' current, and
writes the gateway's routing snapshot Secret. In cluster (KUBERNETES_SERVICE_HOST set) it uses the pod's
service account, else KUBECONFIG or ~/.kube/config.

  --namespace NS               Where the Lease and the snapshot Secret live (default: POD_NAMESPACE, the
                               service account's namespace, else plugboard-system)
  --watch-namespaces a,b       Watch only these namespaces (default: all)
  --listen HOST:PORT           Probes (/healthz, /readyz) and /metrics, default 0.0.0.0:8081
  --leader-elect true|false    Take a Lease before reconciling (default true; one active replica at a time)
  --concurrency 16             ProviderConnections reconciled at once
  --log-level info             trace | debug | info | warn | error
${ADDRESS_POLICY_USAGE}
SIGTERM or SIGINT stops it (controllers stop, the snapshot is written, the Lease released), exit 0; a second
signal exits at once. A replica that loses its Lease exits 1 so that it restarts as a standby.`;

export async function runOperator(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      namespace: { type: 'string' },
      'watch-namespaces': { type: 'string' },
      listen: { type: 'string', default: '0.0.0.0:8081' },
      'leader-elect': { type: 'string', default: 'true' },
      concurrency: { type: 'string', default: '16' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
      ...ADDRESS_POLICY_FLAGS,
    },
  });
  if (values.help) {
    console.log(OPERATOR_USAGE);
    return 0;
  }
  const log = pino({ level: values['log-level'], base: { component: 'operator' } });
  // Which upstream addresses verification may connect to (src/net/address-policy.ts).
  const policy = policyFromFlags(values);
  setAddressPolicy(policy);
  log.info({ addressPolicy: policy.describe() }, 'upstream address policy');
  const namespace =
    values.namespace ??
    process.env.POD_NAMESPACE ??
    (existsSync(SA_NAMESPACE) ? readFileSync(SA_NAMESPACE, 'utf8').trim() : 'plugboard-system');
  const kubeConfig = await loadKubeAuth(); // the pod's service account, else KUBECONFIG / ~/.kube/config
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new Error('--concurrency must be a positive integer');

  // Assigned before the operator starts: a lost lease ends the process through the same shutdown as a signal.
  let shutdown: Shutdown | undefined;
  const operator = new Operator({
    kubeConfig,
    namespace,
    watchNamespaces: values['watch-namespaces']
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    identity: `${hostname()}-${process.pid}`,
    log,
    leaderElection: values['leader-elect'] !== 'false',
    concurrency,
    probeListen: parseListen(values.listen),
    onLostLeadership: () => {
      // A clean restart is the safe way back to standby (client-go's controllers do the same).
      log.error('lost leadership; exiting');
      shutdown?.begin('lost leadership', 1);
    },
  });
  shutdown = shutdownOnSignals({ log, stop: () => operator.stop() });
  await operator.start();
  log.info({ namespace, probes: operator.probeAddress, auth: kubeConfig.source }, 'operator running');
  return shutdown.finished;
}
