/**
 * One Prometheus for the cluster suite, run on the node (inside the cluster's network namespace, where pod IPs are
 * reachable) with the cluster's Kubernetes service discovery, configured the way the Prometheus Operator would
 * configure it from the chart's ServiceMonitor and PrometheusRule objects as the API server stores them
 * (test/support/prometheus-operator.ts). The one difference: Prometheus reaches the API server through the suite's
 * kubeconfig (`kubeconfig_file`), as it runs on the node and not in a pod with a ServiceAccount.
 *
 * Its HTTP API listens on the namespace's loopback; a forwarder (test/cluster/client.ts `forward`) makes it
 * reachable from the test process through a Unix socket, which network namespaces do not separate.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import { stringify } from 'yaml';
import { prometheusBinaries } from '../support/prometheus.ts';
import {
  type PrometheusRule,
  ruleFile,
  type ServiceMonitor,
  scrapeConfigs,
  substituteEnv,
} from '../support/prometheus-operator.ts';
import { cluster, startClient, until } from './support.ts';

export interface PromOptions {
  serviceMonitors: ServiceMonitor[];
  rules: PrometheusRule[];
  /** The Prometheus resource's evaluationInterval (the operator's default is 30s). */
  evaluationInterval: string;
}

export interface Target {
  labels: Record<string, string>;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
  scrapeUrl: string;
}

export interface Alert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** Loopback port inside the cluster's namespace (nothing else of the cluster listens there). */
const PORT = 19090;

export class Prometheus {
  readonly dir: string;
  private readonly proc: ChildProcess;
  private readonly forwarder: ReturnType<typeof startClient>;
  private readonly agent: Agent;

  private constructor(
    dir: string,
    proc: ChildProcess,
    forwarder: ReturnType<typeof startClient>,
    agent: Agent,
  ) {
    this.dir = dir;
    this.proc = proc;
    this.forwarder = forwarder;
    this.agent = agent;
  }

  static async start(o: PromOptions): Promise<Prometheus> {
    const bin = join(prometheusBinaries(), 'prometheus');
    const dir = mkdtempSync(join(tmpdir(), 'plugboard-prometheus-'));
    mkdirSync(join(dir, 'rules'));
    for (const r of o.rules) {
      const f = ruleFile(r);
      writeFileSync(join(dir, 'rules', f.name), stringify(f.content));
    }
    const jobs = o.serviceMonitors.flatMap((sm) => scrapeConfigs(sm));
    for (const j of jobs)
      for (const sd of j.kubernetes_sd_configs as Record<string, unknown>[])
        sd.kubeconfig_file = cluster.kubeconfig;
    const config = {
      global: {
        scrape_interval: '30s',
        evaluation_interval: o.evaluationInterval,
        external_labels: { prometheus: 'plugboard-system/e2e', prometheus_replica: '$(POD_NAME)' },
      },
      rule_files: [join(dir, 'rules', '*.yaml')],
      scrape_configs: jobs,
    };
    // What the operator's config reloader does before Prometheus reads the file.
    writeFileSync(
      join(dir, 'prometheus.yml'),
      substituteEnv(stringify(config), { SHARD: '0', POD_NAME: 'prometheus-e2e-0' }),
    );
    const log = openSync(join(dir, 'prometheus.log'), 'a');
    const proc = spawn(
      'nsenter',
      [
        `--net=/run/netns/${cluster.netns}`,
        bin,
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${PORT}`,
        '--storage.tsdb.retention.time=2h',
      ],
      { stdio: ['ignore', log, log] },
    );
    const socket = join(dir, 'api.sock');
    const forwarder = startClient<unknown>('forward', { socket, port: PORT });
    await forwarder.stderrHas('ready');
    const agent = new Agent({ connect: { socketPath: socket } });
    const p = new Prometheus(dir, proc, forwarder, agent);
    await until(
      'Prometheus ready',
      async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}:\n${p.log()}`);
        const r = await fetch('http://prometheus/-/ready', { dispatcher: agent });
        await r.arrayBuffer();
        return r.status === 200;
      },
      60_000,
    );
    return p;
  }

  log(lines = 30): string {
    return readFileSync(join(this.dir, 'prometheus.log'), 'utf8')
      .trimEnd()
      .split('\n')
      .slice(-lines)
      .join('\n');
  }

  /** The file Prometheus reads, for a failure message. */
  config(): string {
    return readFileSync(join(this.dir, 'prometheus.yml'), 'utf8');
  }

  private async api<T>(path: string): Promise<T> {
    const r = await fetch(`http://prometheus/api/v1/${path}`, { dispatcher: this.agent });
    const body = (await r.json()) as { status: string; data: T; error?: string; errorType?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.errorType}: ${body.error}`);
    return body.data;
  }

  /** An instant query; throws with Prometheus' error for a query it refuses. */
  async query(expr: string): Promise<Sample[]> {
    const data = await this.api<{ resultType: string; result: Sample[] | [number, string] }>(
      `query?query=${encodeURIComponent(expr)}`,
    );
    // a scalar result is one unlabelled value
    return data.resultType === 'scalar'
      ? [{ metric: {}, value: data.result as [number, string] }]
      : (data.result as Sample[]);
  }

  async targets(): Promise<Target[]> {
    return (await this.api<{ activeTargets: Target[] }>('targets?state=active')).activeTargets;
  }

  async alerts(): Promise<Alert[]> {
    return (await this.api<{ alerts: Alert[] }>('alerts')).alerts;
  }

  async ruleState(alert: string): Promise<string | undefined> {
    const data = await this.api<{ groups: { rules: { name: string; state?: string }[] }[] }>(
      'rules?type=alert',
    );
    return data.groups.flatMap((g) => g.rules).find((r) => r.name === alert)?.state;
  }

  async labelValues(label: string, match: string): Promise<string[]> {
    return this.api<string[]>(`label/${label}/values?match[]=${encodeURIComponent(match)}`);
  }

  async stop(): Promise<void> {
    this.proc.kill('SIGTERM');
    await new Promise((r) => (this.proc.exitCode !== null ? r(null) : this.proc.once('exit', r)));
    this.forwarder.kill();
    await this.agent.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
