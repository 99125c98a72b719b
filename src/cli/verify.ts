import { parseArgs } from 'node:util';
import { isAllowlistFault } from '../api/model-allowlist.ts';
import {
  ADDRESS_POLICY_FLAGS,
  type AddressPolicy,
  InvalidCidrError,
  policyFromFlags,
  setAddressPolicy,
} from '../net/address-policy.ts';
import { type Minter, tokenMinter } from '../operator/credentials/mint.ts';
import { planAllowlist } from '../operator/logic/allowlist-status.ts';
import { refreshTokenIfDue, type Verifier, verifyIfDueAndPlan } from '../operator/logic/reconcile.ts';
import { verifyConnection } from '../operator/verification/verify.ts';
import type { ConditionSummary } from '../snapshot/schema.ts';
import { allowlistRefsFor } from './local-adapters.ts';
import { formatError, loadManifests, type ManifestSet } from './manifests.ts';
import { resolveSecretFromManifests } from './secrets.ts';

export const VERIFY_USAGE = `Usage: plugboard verify -f <file|dir> [-f ...] [--connect [--policy local|cluster] [policy flags]]
                        [--output text|json]

Validates ProviderConnection, ModelAllowlist and Secret manifests offline with the CRDs' own schemas and prints
every problem as file#document field: message. Exits 1 when any manifest is invalid.

  -f, --filename PATH   A file or a directory (its *.yaml, *.yml, *.json). Repeatable.
  --connect             Also verify each connection from this machine, exactly as the operator does, and print
                        the Ready reason and message the operator would write. API keys come from Secret
                        manifests among the files (values may say \${ENV_VAR}). Exits 1 when any enabled
                        connection or allowlist is not Ready.
  --policy local|cluster
                        The address policy --connect applies. local (default): loopback allowed, as standalone
                        mode does. cluster: the operator's in a pod (loopback refused), so PASS means the
                        operator will connect too.
  --allow-loopback true|false, --deny-cidrs A,B, --allow-cidrs A,B, --nat64-prefixes A,B
                        The operator's address policy flags, to verify with its settings (--connect only).
                        Always refused: link-local and cloud metadata, 0.0.0.0/8, ::, multicast, 240.0.0.0/4.
  --output text|json    text (default): one line per problem or connection; json: one document for machines`;

export const VERIFY_POLICIES = ['local', 'cluster'] as const;
export type VerifyPolicy = (typeof VERIFY_POLICIES)[number];

type Result = 'pass' | 'fail' | 'skip';

interface ConnectionReport {
  namespace: string;
  name: string;
  file: string;
  provider: string;
  url: string;
  result: Result;
  ready: ConditionSummary;
  verified: ConditionSummary;
  secret: ConditionSummary;
  discoveredModelCount?: number;
  exposedModelCount: number;
  models: string[];
}

interface AllowlistReport {
  namespace: string;
  name: string;
  file: string;
  connection: string;
  result: Result;
  ready: ConditionSummary;
  missingModels: string[];
}

const summary = (c: { status: string; reason: string; message: string } | undefined): ConditionSummary => ({
  status: (c?.status ?? 'Unknown') as ConditionSummary['status'],
  reason: c?.reason ?? '',
  message: c?.message ?? '',
});

/** Runs one reconcile per connection (no memory, so each is verified now), in parallel. */
export async function checkConnections(
  set: ManifestSet,
  verify: Verifier = verifyConnection,
  env: NodeJS.ProcessEnv = process.env,
  // No TokenRequest API on a workstation: workload identity reports WorkloadIdentityUnavailable.
  mint: Minter = tokenMinter(),
): Promise<{ connections: ConnectionReport[]; allowlists: AllowlistReport[] }> {
  const connections: ConnectionReport[] = [];
  const allowlists: AllowlistReport[] = [];
  const steps = await Promise.all(
    set.connections.map(async (c) => {
      const secret = resolveSecretFromManifests(c.namespace, c.value.spec, set.secrets, env);
      const { token } = await refreshTokenIfDue(
        { namespace: c.namespace, spec: c.value.spec, secret, token: undefined },
        mint,
      );
      const step = await verifyIfDueAndPlan(
        {
          namespace: c.namespace,
          name: c.name,
          generation: c.value.metadata.generation ?? 1,
          spec: c.value.spec,
          secret,
          token,
          allowlists: allowlistRefsFor(set, c.namespace, c.name),
          memory: undefined,
          previousStatus: undefined,
        },
        verify,
      );
      return { c, step };
    }),
  );
  for (const { c, step } of steps) {
    const { plan } = step;
    const cond = (type: string) => summary(plan.status.conditions?.find((x) => x.type === type));
    const disabled = !c.value.spec.enabled;
    connections.push({
      namespace: c.namespace,
      name: c.name,
      file: `${c.origin.file}#${c.origin.doc}`,
      provider: c.value.spec.provider,
      url: c.value.spec.url,
      result: disabled ? 'skip' : plan.ready.status === 'True' ? 'pass' : 'fail',
      ready: summary(plan.ready),
      verified: cond('Verified'),
      secret: cond('SecretResolved'),
      ...(plan.status.discoveredModelCount !== undefined
        ? { discoveredModelCount: plan.status.discoveredModelCount }
        : {}),
      exposedModelCount: plan.status.exposedModelCount ?? 0,
      models: plan.snapshot.models.map((m) => m.id),
    });
    for (const loaded of set.allowlists) {
      if (loaded.namespace !== c.namespace || loaded.value.spec.connectionRef.name !== c.name) continue;
      const a = planAllowlist({
        namespace: c.namespace,
        name: loaded.name,
        generation: loaded.value.metadata.generation ?? 1,
        connectionName: c.name,
        connection: plan.view,
        previousStatus: undefined,
        now: new Date(),
      });
      const ready = summary(a.ready);
      allowlists.push({
        namespace: c.namespace,
        name: loaded.name,
        file: `${loaded.origin.file}#${loaded.origin.doc}`,
        connection: c.name,
        // A disabled or failing connection is reported on its own line; the allowlist fails for its own faults.
        result: disabled ? 'skip' : isAllowlistFault(ready.reason) ? 'fail' : 'pass',
        ready,
        missingModels: a.exposure.missingModels,
      });
    }
  }
  return { connections, allowlists };
}

/** Allowlists that name a connection absent from the files: in a cluster they would be ConnectionNotFound. */
function orphanAllowlists(set: ManifestSet): string[] {
  return set.allowlists
    .filter(
      (a) =>
        !set.connections.some(
          (c) => c.namespace === a.namespace && c.name === a.value.spec.connectionRef.name,
        ),
    )
    .map(
      (a) =>
        `${a.origin.file}#${a.origin.doc} spec.connectionRef.name: ProviderConnection "${a.value.spec.connectionRef.name}" is not among the files (namespace ${a.namespace})`,
    );
}

export async function runVerify(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      connect: { type: 'boolean' },
      policy: { type: 'string' },
      ...ADDRESS_POLICY_FLAGS,
      output: { type: 'string', short: 'o', default: 'text' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(VERIFY_USAGE);
    return 0;
  }
  const usageError = (problem: string) => {
    console.error(`plugboard verify: ${problem}\n\n${VERIFY_USAGE}`);
    return 2;
  };
  if (!values.filename?.length) return usageError('name the manifests with -f <file|dir>');
  if (values.output !== 'text' && values.output !== 'json')
    return usageError('--output must be text or json');
  const mode = values.policy ?? 'local';
  if (!(VERIFY_POLICIES as readonly string[]).includes(mode))
    return usageError(`--policy must be local or cluster, not ${JSON.stringify(mode)}`);
  const policyFlags = ['policy', ...Object.keys(ADDRESS_POLICY_FLAGS)].filter(
    (f) => values[f as keyof typeof values] !== undefined,
  );
  if (policyFlags.length > 0 && !values.connect)
    return usageError(
      `${policyFlags.map((f) => `--${f}`).join(', ')} ${policyFlags.length > 1 ? 'apply' : 'applies'} only with --connect`,
    );
  let policy: AddressPolicy;
  try {
    // The operator's own flags and defaults; the mode stands in for KUBERNETES_SERVICE_HOST.
    policy = policyFromFlags(values, process.env, mode === 'cluster');
  } catch (err) {
    if (err instanceof InvalidCidrError) return usageError(err.message);
    throw err;
  }
  if (values.connect) setAddressPolicy(policy);
  const json = values.output === 'json';
  const set = await loadManifests(values.filename);
  const warnings = orphanAllowlists(set);
  const counts = {
    files: set.files.length,
    connections: set.connections.length,
    allowlists: set.allowlists.length,
    secrets: set.secrets.length,
  };
  const valid = set.errors.length === 0;
  // Connections are verified only when every manifest is valid: a partial config is not what would be applied.
  const checked = valid && values.connect ? await checkConnections(set) : undefined;
  const failing =
    (checked?.connections.filter((c) => c.result === 'fail').length ?? 0) +
    (checked?.allowlists.filter((a) => a.result === 'fail').length ?? 0);
  const ok = valid && failing === 0;

  const policyReport = { mode, description: policy.describe() };
  if (json) {
    const out = {
      ok,
      valid,
      ...counts,
      errors: set.errors.map((e) => ({ ...e, text: formatError(e) })),
      warnings,
      ...(checked ? { policy: policyReport, ...checked } : {}),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return ok ? 0 : 1;
  }

  for (const e of set.errors) console.log(`ERROR ${formatError(e)}`);
  for (const w of warnings) console.log(`WARN  ${w}`);
  const what = `${counts.connections} connection(s), ${counts.allowlists} allowlist(s), ${counts.secrets} secret(s) in ${counts.files} file(s)`;
  if (!valid) {
    console.log(`FAIL  ${set.errors.length} invalid: ${what}`);
    return 1;
  }
  console.log(`OK    valid: ${what}`);
  if (!checked) return 0;
  console.log(`INFO  address policy ${mode}: ${policyReport.description}`);
  const label = { pass: 'PASS ', fail: 'FAIL ', skip: 'SKIP ' } as const;
  for (const c of checked.connections) {
    console.log(
      `${label[c.result]} ${c.namespace}/${c.name} ${c.ready.reason}: ${c.ready.message} (${c.url})`,
    );
  }
  for (const a of checked.allowlists.filter((x) => x.result === 'fail')) {
    console.log(
      `${label[a.result]} allowlist ${a.namespace}/${a.name} ${a.ready.reason}: ${a.ready.message}`,
    );
  }
  const passed = checked.connections.filter((c) => c.result === 'pass').length;
  console.log(
    failing === 0
      ? `OK    ${passed} connection(s) ready`
      : `FAIL  ${failing} not ready (${passed} of ${checked.connections.length} connection(s) ready)`,
  );
  return ok ? 0 : 1;
}
