import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startMockProvider } from '../mock-provider/index.ts';
import { parseDurationMs, parseListen } from './args.ts';
import { localHosts, SERVER_FLAGS, SERVER_USAGE, serverOptions } from './server-flags.ts';
import {
  ConfigError,
  clientKeysFrom,
  defaultUiDir,
  listenAdvice,
  type Standalone,
  startStandalone,
  untilSignal,
} from './standalone.ts';

/** The key examples/local/mock.yaml gives the simulated provider (a demo value, not a secret). */
export const LOCAL_MOCK_KEY = 'sk-plugboard-local-demo';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const START_USAGE = `Usage: plugboard start [options]     (what npm start runs)

Runs everything on this machine: a simulated OpenAI provider on 127.0.0.1:8081 (deterministic streamed
replies) and 'plugboard standalone' on examples/local/, serving the chat, the status page, the OpenAI API and
/metrics on http://127.0.0.1:8080. Edit the files in examples/local/ while it runs; see the README.

  -f, --filename PATH     Manifests (default: examples/local/); repeatable
  --listen HOST:PORT      Default 127.0.0.1:8080
  --mock-listen HOST:PORT The simulated provider, default 127.0.0.1:8081 (examples/local/mock.yaml points here)
  --client-keys-file F    Gateway API keys, as for 'plugboard standalone'
  --drain-timeout 5s      On SIGTERM/SIGINT, how long in-flight requests may finish
                          (then exit 0; a second signal exits at once, 143 or 130)
  --log-level info
${SERVER_USAGE}`;

/** Newest modification time under a directory (the UI sources are a few dozen files). */
function newest(dir: string): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    max = Math.max(max, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return max;
}

/** In a checkout, builds dist/ui with Vite (about a second) when it is missing or older than src/ui. */
function ensureUi(log: (msg: string) => void): string | undefined {
  const uiSrc = join(ROOT, 'src', 'ui');
  const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
  const index = join(ROOT, 'dist', 'ui', 'index.html');
  const canBuild = existsSync(uiSrc) && existsSync(vite) && existsSync(join(ROOT, 'vite.config.ts'));
  const stale = !existsSync(index) || (canBuild && newest(uiSrc) > statSync(index).mtimeMs);
  if (stale && canBuild) {
    log('building the chat UI (vite build)');
    // Built aside and swapped in, so a process serving dist/ui meanwhile never sees it half-written.
    const target = join(ROOT, 'dist', 'ui');
    const fresh = `${target}.building-${process.pid}`;
    const res = spawnSync(
      process.execPath,
      [vite, 'build', '--logLevel', 'warn', '--outDir', fresh, '--emptyOutDir'],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    if (res.status === 0) {
      const old = `${target}.old-${process.pid}`;
      if (existsSync(target)) renameSync(target, old);
      renameSync(fresh, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      rmSync(fresh, { recursive: true, force: true });
      log('the UI build failed; serving the API only (run npm run build to see why)');
    }
  }
  const dir = defaultUiDir();
  if (!dir) log('no built UI (dist/ui); serving the API only. Run npm run build to get the chat at /');
  return dir;
}

export async function runStart(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      listen: { type: 'string', default: '127.0.0.1:8080' },
      'mock-listen': { type: 'string', default: '127.0.0.1:8081' },
      'client-keys-file': { type: 'string' },
      'drain-timeout': { type: 'string', default: '5s' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
      ...SERVER_FLAGS,
    },
  });
  if (values.help) {
    console.log(START_USAGE);
    return 0;
  }
  const line = (msg: string, extra: object = {}) =>
    console.log(JSON.stringify({ level: 30, time: Date.now(), component: 'start', ...extra, msg }));
  const uiDir = ensureUi((msg) => line(msg));

  const drainTimeoutMs = parseDurationMs(values['drain-timeout'] as string);
  const m = parseListen(values['mock-listen'] as string, '--mock-listen');
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  try {
    mock = await startMockProvider({ profile: 'openai', host: m.host, port: m.port, apiKey: LOCAL_MOCK_KEY });
  } catch (err) {
    throw listenAdvice(err, m.host, m.port);
  }
  line('simulated OpenAI provider listening', { url: mock.url });

  const { host, port } = parseListen(values.listen as string);
  let app: Standalone;
  try {
    app = await startStandalone({
      paths: values.filename?.length ? values.filename : [join(ROOT, 'examples', 'local')],
      host,
      port,
      clientKeys: clientKeysFrom(values['client-keys-file']),
      uiDir,
      logLevel: values['log-level'],
      drainTimeoutMs,
      server: serverOptions(values, localHosts(host)),
    });
  } catch (err) {
    await mock.close();
    if (err instanceof ConfigError) {
      console.error(`plugboard start: ${err.message}`);
      return 1;
    }
    throw listenAdvice(err, host, port);
  }
  app.gateway.app.log.info(
    { url: app.url },
    `Plugboard is running: open ${app.url} for the chat and ${app.url}/#/status for the connections`,
  );
  return untilSignal(app, () => mock.close());
}
