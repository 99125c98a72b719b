interface Command {
  /** One line for `plugboard help`. */
  summary: string;
  /** The command's usage, kept next to its parser; printed with a parse error. */
  usage(): Promise<string>;
  /** Answers `--help` and `-h` with the usage on stdout (exit 0), as every command must. */
  run(args: string[]): Promise<number> | number;
}

// Commands load their modules on use, so `plugboard gateway` does not carry the CRD and manifest tooling.
const COMMANDS: Record<string, Command> = {
  operator: {
    summary: 'Run the operator (in cluster, or with KUBECONFIG)',
    usage: async () => (await import('./operator.ts')).OPERATOR_USAGE,
    run: async (args) => (await import('./operator.ts')).runOperator(args),
  },
  gateway: {
    summary: 'Serve the OpenAI-compatible API from a routing snapshot (file or Secret)',
    usage: async () => (await import('./gateway.ts')).GATEWAY_USAGE,
    run: async (args) => (await import('./gateway.ts')).runGateway(args),
  },
  standalone: {
    summary: 'Verify connections and serve the gateway on manifests in files, no cluster (watched)',
    usage: async () => (await import('./standalone.ts')).STANDALONE_USAGE,
    run: async (args) => (await import('./standalone.ts')).runStandalone(args),
  },
  start: {
    summary: 'What npm start runs: a simulated provider and standalone on examples/local/',
    usage: async () => (await import('./start.ts')).START_USAGE,
    run: async (args) => (await import('./start.ts')).runStart(args),
  },
  verify: {
    summary: 'Validate manifests offline; --connect also verifies each connection',
    usage: async () => (await import('./verify.ts')).VERIFY_USAGE,
    run: async (args) => (await import('./verify.ts')).runVerify(args),
  },
  init: {
    summary: 'Print a ready-to-edit manifest set for a provider (--list names them)',
    usage: async () => (await import('./init.ts')).INIT_USAGE,
    run: async (args) => (await import('./init.ts')).runInit(args),
  },
  crds: {
    summary: 'Print the CustomResourceDefinitions (kubectl apply -f -)',
    usage: async () => (await import('./crds.ts')).CRDS_USAGE,
    run: async (args) => (await import('./crds.ts')).runCrds(args),
  },
  'mock-provider': {
    summary: 'Run a simulated upstream provider, for tests and demos',
    usage: async () => (await import('./mock-provider.ts')).MOCK_PROVIDER_USAGE,
    run: async (args) => (await import('./mock-provider.ts')).runMockProvider(args),
  },
  help: {
    summary: "Show this help; 'plugboard help <command>' shows a command's",
    usage: async () => usage(),
    run: async (args) => {
      const { parseArgs } = await import('node:util');
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: { help: { type: 'boolean', short: 'h' } },
      });
      const name = positionals[0];
      if (name === undefined || values.help) {
        console.log(usage());
        return 0;
      }
      const command = COMMANDS[name];
      if (!command) return unknownCommand(name);
      console.log(await command.usage());
      return 0;
    },
  },
};

/** The names `plugboard` accepts, in the order `plugboard help` lists them. */
export const COMMAND_NAMES: readonly string[] = Object.keys(COMMANDS);

function usage(): string {
  const width = Math.max(...COMMAND_NAMES.map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: plugboard <command> [options]

Commands:
${lines.join('\n')}

Every command answers --help (-h) with its options. The long-running ones (operator, gateway, standalone,
start, mock-provider) stop on SIGTERM or SIGINT after draining and exit 0; a second signal exits at once
with 143 (SIGTERM) or 130 (SIGINT).`;
}

function unknownCommand(name: string): number {
  console.error(`plugboard: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
  return 2;
}

/** Errors node:util parseArgs throws for an invocation it cannot read (unknown option, missing value, ...). */
function isArgsError(err: unknown): err is Error {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

export async function main(argv: string[]): Promise<number> {
  const [first = 'help', ...rest] = argv;
  const name = first === '--help' || first === '-h' ? 'help' : first;
  const command = COMMANDS[name];
  if (!command) return unknownCommand(name);
  try {
    return await command.run(rest);
  } catch (err) {
    let message = err instanceof Error ? err.message : String(err);
    // parseArgs' advice on positionals that start with '-' fits no plugboard command: keep its first sentence.
    if (isArgsError(err)) message = message.replace(/\. To specify a positional argument .*$/s, '');
    // A bad invocation gets the command's usage too; other errors are one line (no stack trace) either way.
    if (isArgsError(err)) console.error(`plugboard ${name}: ${message}\n\n${await command.usage()}`);
    else console.error(`plugboard ${name}: ${message}`);
    return 2;
  }
}
