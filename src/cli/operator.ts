import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadKubeAuth } from '../kube/auth.ts';
import { ADDRESS_POLICY_FLAGS, policyFromFlags, setAddressPolicy } from '../net/address-policy.ts';
import { Operator } from '../operator/operator.ts';
import { parseListen } from './args.ts';

const SA_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

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
      ...ADDRESS_POLICY_FLAGS,
    },
  });
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

  let exitCode = 0;
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
      exitCode = 1;
      void shutdown();
    },
  });
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const shutdown = async () => {
    await operator.stop();
    done();
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  await operator.start();
  log.info({ namespace, probes: operator.probeAddress, auth: kubeConfig.source }, 'operator running');
  await finished;
  return exitCode;
}
