import { parseArgs } from 'node:util';

const USAGE = `Usage: plugboard <command> [options]

Commands:
  crds                         Print the CustomResourceDefinitions (kubectl apply -f -)
  init <provider> [--name N] [--namespace NS]
                               Print a ready-to-edit manifest set for a provider
  init --list                  List the providers init knows
  mock-provider --profile <name> [--listen host:port] [--api-key K] [--latency-ms N] [--chunk-delay-ms N]
                [--fail-status N] [--model-count N] [--tls [--ca-out FILE]]
                               Run a simulated upstream provider until SIGINT/SIGTERM
  operator [--namespace NS] [--watch-namespaces a,b] [--listen 0.0.0.0:8081] [--leader-elect=false]
           [--concurrency 16] [--log-level info] [--allow-loopback true|false] [--deny-cidrs A,B] [--allow-cidrs A,B]
           [--nat64-prefixes A,B]
                               Run the operator (in cluster, or with KUBECONFIG)
  gateway (--config-file F | --snapshot-secret NS/NAME) [--listen 0.0.0.0:8080] [--client-keys-file F] ...
                               Run the OpenAI-compatible gateway ('plugboard gateway --help' for every option)
  standalone -f <file|dir> [-f ...] [--listen 127.0.0.1:8080] [--client-keys-file F] [--ui-dir D]
                               Run verification and the gateway on manifests in files, no cluster (watched)
  start [--listen 127.0.0.1:8080] [--mock-listen 127.0.0.1:8081] [-f examples/local]
                               What npm start runs: a simulated provider and standalone on examples/local/
  verify -f <file|dir> [-f ...] [--connect [--policy local|cluster]] [--output text|json]
                               Validate manifests offline; --connect also verifies each connection
  help                         Show this help

Run 'plugboard <command> --help' for a command's options.`;

type Command = (args: string[]) => Promise<number> | number;

const commands: Record<string, Command> = {
  operator: async (args) => (await import('./operator.ts')).runOperator(args),
  gateway: async (args) => (await import('./gateway.ts')).runGateway(args),
  crds: async () => {
    const { crdsYaml } = await import('../api/crds.ts');
    process.stdout.write(crdsYaml());
    return 0;
  },
  // Commands load their modules on use, so `plugboard gateway` does not carry the CRD and manifest tooling.
  init: async (args) => {
    const { profileYaml } = await import('../providers/manifests.ts');
    const { findProfile, PROVIDER_PROFILES } = await import('../providers/profiles.ts');
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { list: { type: 'boolean' }, name: { type: 'string' }, namespace: { type: 'string' } },
    });
    if (values.list) {
      const width = Math.max(...PROVIDER_PROFILES.map((p) => p.id.length));
      for (const p of PROVIDER_PROFILES) console.log(`${p.id.padEnd(width)}  ${p.displayName}  ${p.url}`);
      return 0;
    }
    const id = positionals[0];
    const profile = id ? findProfile(id) : undefined;
    if (!profile) {
      console.error(
        `${id ? `unknown provider ${JSON.stringify(id)}` : 'name a provider'}; one of: ${PROVIDER_PROFILES.map((p) => p.id).join(', ')}`,
      );
      return 2;
    }
    process.stdout.write(profileYaml(profile, { name: values.name, namespace: values.namespace }));
    return 0;
  },
  'mock-provider': async (args) => (await import('./mock-provider.ts')).runMockProvider(args),
  standalone: async (args) => (await import('./standalone.ts')).runStandalone(args),
  start: async (args) => (await import('./start.ts')).runStart(args),
  verify: async (args) => (await import('./verify.ts')).runVerify(args),

  help: () => {
    console.log(USAGE);
    return 0;
  },
};

export async function main(argv: string[]): Promise<number> {
  const [name = 'help', ...rest] = argv;
  const command = commands[name === '--help' || name === '-h' ? 'help' : name];
  if (!command) {
    console.error(`plugboard: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    console.error(`plugboard ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
}
