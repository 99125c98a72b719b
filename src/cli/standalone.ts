import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildGateway, type Gateway } from '../gateway/app.ts';
import { type ClientKeysSource, FileClientKeys, StaticClientKeys } from '../gateway/client-keys.ts';
import { watchFiles } from '../gateway/file-feed.ts';
import { MemorySnapshotSource } from '../gateway/snapshot-source.ts';
import { ControlLoop } from '../operator/control-loop.ts';
import type { Verifier } from '../operator/logic/reconcile.ts';
import { OperatorMetrics } from '../operator/metrics.ts';
import type { Log } from '../operator/runtime/controller.ts';
import { SnapshotCompiler } from '../operator/snapshot-compiler.ts';
import { parseDurationMs, parseListen } from './args.ts';
import { eventsToLog, ManifestStore, snapshotsToGateway } from './local-adapters.ts';
import { formatError, loadManifests, type ManifestSet } from './manifests.ts';
import { localHosts, SERVER_FLAGS, SERVER_USAGE, serverOptions } from './server-flags.ts';
import { shutdownOnSignals } from './shutdown.ts';

export const STANDALONE_USAGE = `Usage: plugboard standalone -f <file|dir> [-f ...] [options]

Runs the operator's verification and snapshot compilation on manifests in files, and the gateway, the UI,
/api/connections and /metrics on one port. No cluster needed.

  -f, --filename PATH          ProviderConnection, ModelAllowlist and Secret manifests (multi-document YAML);
                               a directory means its *.yaml, *.yml and *.json. Repeatable. Watched: edits apply
                               without a restart; a broken edit keeps the last good config and is reported.
                               No namespace means "default". Secret values may say \${ENV_VAR}.
  --listen HOST:PORT           Default 127.0.0.1:8080 (loopback; use 0.0.0.0:8080 to share it)
  --client-keys-file F         Gateway API keys [{name, key | sha256, models?}] (watched)
                               (or PLUGBOARD_CLIENT_KEYS: the same list inline)
  --ui-dir D                   Serve the built UI from D at / (default: the package's dist/ui when built)
  --drain-timeout 5s           On SIGTERM/SIGINT, how long in-flight requests may finish
                               (then exit 0; a second signal exits at once, 143 or 130)
  --log-level info             trace | debug | info | warn | error
${SERVER_USAGE}
                               (standalone always serves localhost and the --listen name too)`;

export interface StandaloneOptions {
  paths: string[];
  host: string;
  port: number;
  clientKeys?: ClientKeysSource;
  uiDir?: string;
  logLevel?: string;
  drainTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  verify?: Verifier;
  /** How often files are re-read in case a change event was missed. Default 2 s. */
  pollMs?: number;
  /** The HTTP server's limits (server-flags.ts); the allowed hosts default to localHosts(host). */
  server?: ReturnType<typeof serverOptions>;
}

export interface Standalone {
  url: string;
  gateway: Gateway;
  /** Re-reads the files now (the watcher calls this). */
  reload(): Promise<void>;
  drain(): Promise<void>;
}

export class ConfigError extends Error {
  readonly lines: string[];
  constructor(lines: string[]) {
    super(`the manifests are invalid:\n  ${lines.join('\n  ')}`);
    this.lines = lines;
  }
}

/** The UI that `npm run build` put next to the code, if any. */
export function defaultUiDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../dist/ui', import.meta.url));
  return existsSync(join(dir, 'index.html')) ? dir : undefined;
}

export async function startStandalone(o: StandaloneOptions): Promise<Standalone> {
  const first = await loadManifests(o.paths);
  if (first.errors.length > 0) throw new ConfigError(first.errors.map(formatError));

  const source = new MemorySnapshotSource();
  const gateway = await buildGateway({
    snapshots: source,
    clientKeys: o.clientKeys,
    uiDir: o.uiDir,
    drainTimeoutMs: o.drainTimeoutMs ?? 5000,
    logger: { level: o.logLevel ?? 'info' },
    allowedHosts: localHosts(o.host),
    ...o.server,
  });
  const log = gateway.app.log.child({ component: 'standalone' }) as Log;

  // The operator's control loop on files: the same queues, controllers, snapshot compiler and metrics, with the
  // manifests as objects, the environment for ${ENV} keys, status in memory and Events as log lines.
  // A config error stays reported (in /readyz and the log) while the last good config keeps serving, also
  // across the snapshots that later verifications publish.
  let configError: string | undefined;
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  for (const { name } of metrics.registry.getMetricsAsArray()) {
    const m = metrics.registry.getSingleMetric(name);
    if (m) gateway.metrics.registry.registerMetric(m);
  }
  metrics.isLeader.set(1); // the only replica
  const snapshots = new SnapshotCompiler({
    sink: snapshotsToGateway(source, () => {
      if (configError) source.reportError(configError);
    }),
    log,
    // Published only after the first full round, so the gateway starts with every connection verified.
    held: true,
    onWritten: (generation) => {
      metrics.snapshotGeneration.set(generation);
      metrics.snapshotLastSync.set(Date.now() / 1000);
    },
  });
  const store = new ManifestStore(o.env);
  const loop = new ControlLoop({
    objects: store,
    secrets: store,
    status: store,
    events: eventsToLog(log),
    snapshot: snapshots,
    metrics,
    log,
    ...(o.verify ? { verify: o.verify } : {}),
  });
  loop.start();
  /** Hands the manifests to the loop and waits until it has reconciled what changed and published the result. */
  const apply = async (set: ManifestSet) => {
    store.apply(set, loop);
    await loop.idle();
    snapshots.sync();
    await snapshots.flush();
  };
  const summary = () => {
    const all = snapshots.values();
    return { connections: all.length, ready: all.filter((c) => c.status.ready.status === 'True').length };
  };
  const stopLoop = async () => {
    await loop.stop();
    snapshots.stop();
  };

  let applied: ManifestSet = first;
  let lastSeen = first.fingerprint;
  const describe = (set: ManifestSet) => ({
    files: set.files.length,
    connections: set.connections.length,
    allowlists: set.allowlists.length,
    secrets: set.secrets.length,
  });
  for (const s of first.skipped)
    log.info(
      { file: `${s.origin.file}#${s.origin.doc}`, kind: s.kind },
      'ignoring a document of another kind',
    );
  await apply(first);
  log.info({ ...describe(first), ...summary() }, 'manifests loaded');

  let reloading: Promise<void> | undefined;
  let pending = false;
  const reloadOnce = async () => {
    const set = await loadManifests(o.paths);
    if (set.fingerprint === lastSeen) return;
    lastSeen = set.fingerprint;
    if (set.errors.length > 0) {
      const lines = set.errors.map(formatError);
      configError = `${lines.join('; ')} (the last good config keeps serving)`;
      for (const e of set.errors)
        log.error(
          { file: e.doc > 0 ? `${e.file}#${e.doc}` : e.file, field: e.field, error: e.message },
          `invalid manifest: ${formatError(e)}; keeping the last good config`,
        );
      source.reportError(configError);
      return;
    }
    const recovered = configError !== undefined;
    configError = undefined;
    applied = set;
    await apply(set);
    // An unchanged snapshot publishes nothing; clear the reported error explicitly.
    const current = source.current();
    if (recovered && current) source.set(current);
    log.info({ ...describe(applied), ...summary() }, 'manifests reloaded');
  };
  const reload = async (): Promise<void> => {
    if (reloading) {
      pending = true;
      return reloading;
    }
    reloading = (async () => {
      do {
        pending = false;
        try {
          await reloadOnce();
        } catch (err) {
          log.error({ err: (err as Error).message }, 'reload failed');
        }
      } while (pending);
    })().finally(() => {
      reloading = undefined;
    });
    return reloading;
  };

  const stopWatching = watchFiles(o.paths, () => void reload(), o.pollMs ?? 2000);
  let url: string;
  try {
    url = await gateway.listen(o.host, o.port);
  } catch (err) {
    stopWatching();
    await stopLoop();
    await gateway.close();
    throw err;
  }

  return {
    url,
    gateway,
    reload,
    drain: async () => {
      stopWatching();
      await stopLoop();
      await gateway.drain();
    },
  };
}

/** Parses the flags shared by `standalone` and `start`. */
export function clientKeysFrom(file: string | undefined): ClientKeysSource | undefined {
  if (file) return new FileClientKeys(file);
  // Set, even to nothing, means keys are wanted: an empty list refuses every request rather than none.
  if (process.env.PLUGBOARD_CLIENT_KEYS !== undefined)
    return new StaticClientKeys(process.env.PLUGBOARD_CLIENT_KEYS, 'PLUGBOARD_CLIENT_KEYS');
  return undefined;
}

/** Resolves on SIGINT/SIGTERM after draining (then `onStop`); see shutdownOnSignals for a second signal. */
export function untilSignal(app: Standalone, onStop?: () => Promise<void>): Promise<number> {
  return shutdownOnSignals({
    log: app.gateway.app.log,
    stop: async () => {
      try {
        await app.drain();
      } finally {
        await onStop?.();
      }
    },
  }).finished;
}

/** Turns "address in use" into advice. */
export function listenAdvice(err: unknown, host: string, port: number): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE')
    return new Error(
      `${host}:${port} is already in use (another plugboard?); stop it or pass --listen ${host}:<other port>`,
    );
  return err instanceof Error ? err : new Error(String(err));
}

export async function runStandalone(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      listen: { type: 'string', default: '127.0.0.1:8080' },
      'client-keys-file': { type: 'string' },
      'ui-dir': { type: 'string' },
      'drain-timeout': { type: 'string', default: '5s' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
      ...SERVER_FLAGS,
    },
  });
  if (values.help) {
    console.log(STANDALONE_USAGE);
    return 0;
  }
  if (!values.filename?.length) {
    console.error(`plugboard standalone: name the manifests with -f <file|dir>\n\n${STANDALONE_USAGE}`);
    return 2;
  }
  const { host, port } = parseListen(values.listen as string);
  let app: Standalone;
  try {
    app = await startStandalone({
      paths: values.filename,
      host,
      port,
      clientKeys: clientKeysFrom(values['client-keys-file']),
      uiDir: values['ui-dir'] ?? defaultUiDir(),
      logLevel: values['log-level'],
      drainTimeoutMs: parseDurationMs(values['drain-timeout'] as string),
      server: serverOptions(values, localHosts(host)),
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`plugboard standalone: ${err.message}`);
      return 1;
    }
    throw listenAdvice(err, host, port);
  }
  app.gateway.app.log.info({ url: app.url }, `plugboard standalone is serving on ${app.url}`);
  return untilSignal(app);
}
