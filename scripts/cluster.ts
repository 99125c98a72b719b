/**
 * A real single-node Kubernetes cluster, for the end-to-end suite (test/cluster/) and for trying the chart by hand:
 *
 *   npm run cluster:up     builds what is missing, starts the cluster, loads the locally built image into the node
 *                          and prints, as its last line, {"kubeconfig": ..., "netns": ..., "image": ...}
 *   npm run cluster:down   stops everything cluster:up started and removes everything it made
 *
 * Everything is built from source or taken from Debian's archive: etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler, kubelet, kube-proxy and kubectl from the Go module proxy (scripts/build-control-plane.sh,
 * scripts/build-cluster.sh), CoreDNS from its Go module, the pause image from the pause.c in k8s.io/kubernetes,
 * and containerd, runc and the CNI plugins from Debian (scripts/install-container-tools.sh).
 *
 * Every cluster address lives inside one network namespace that `up` creates (NETNS): the node's address on a
 * bridge with no port, the pod bridge, Services (kube-proxy's iptables rules) and every component's listener.
 * Nothing binds or sends on the machine's own interfaces; reach the cluster with
 * `ip netns exec <netns> kubectl --kubeconfig <kubeconfig> ...` (or nsenter --net=/run/netns/<netns>).
 *
 * Needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN (network namespaces, mounts, cgroups). Failures print what
 * failed and why, with the component's last log lines; a failed `up` removes what it made, unless
 * PLUGBOARD_CLUSTER_KEEP=1 (then `cluster:down` does).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = join(import.meta.dirname, '..');

/** The cluster's fixed layout; one cluster per machine. */
export const CLUSTER = {
  netns: process.env.PLUGBOARD_CLUSTER_NETNS ?? 'plugboard',
  dir: process.env.PLUGBOARD_CLUSTER_DIR ?? '/var/lib/plugboard-cluster',
  nodeName: 'plugboard-node',
  /** The node's address, on a bridge inside the namespace; the default route points at .1, which never answers. */
  nodeIp: '172.30.0.2',
  nodeCidr: '172.30.0.2/24',
  nodeGateway: '172.30.0.1',
  podCidr: '10.244.0.0/16',
  nodePodCidr: '10.244.0.0/24',
  serviceCidr: '10.96.0.0/16',
  dnsIp: '10.96.0.10',
  apiPort: 6443,
  pauseImage: 'localhost/plugboard/pause:3.10.2',
  corednsImage: 'localhost/plugboard/coredns:v1.15.0',
};

const D = {
  state: join(CLUSTER.dir, 'state.json'),
  logs: join(CLUSTER.dir, 'logs'),
  pki: join(CLUSTER.dir, 'pki'),
  kubeconfigs: join(CLUSTER.dir, 'kubeconfigs'),
  etcd: join(CLUSTER.dir, 'etcd'),
  containerd: join(CLUSTER.dir, 'containerd'),
  cni: join(CLUSTER.dir, 'cni'),
  kubelet: join(CLUSTER.dir, 'kubelet'),
  podLogs: join(CLUSTER.dir, 'pod-logs'),
  images: join(CLUSTER.dir, 'images'),
  manifests: join(CLUSTER.dir, 'manifests'),
};
const CONTAINERD_SOCK = join(D.containerd, 'containerd.sock');
const ADMIN_KUBECONFIG = join(D.kubeconfigs, 'admin.kubeconfig');
const API = `https://${CLUSTER.nodeIp}:${CLUSTER.apiPort}`;

interface State {
  netns: string;
  kubeconfig: string;
  image: string;
  imageId: string;
  bins: { controlPlane: string; cluster: string };
  pids: Record<string, number>;
}

class ClusterError extends Error {}

const log = (msg: string) => process.stderr.write(`cluster: ${msg}\n`);

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Runs a command, returning stdout; on failure throws with its stderr. */
function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const res = spawnSync(cmd, args, {
    encoding: 'utf8',
    input: opts.input,
    env: opts.env ?? process.env,
    maxBuffer: 256 * 1024 * 1024,
  });
  if (res.error) throw new ClusterError(`${cmd} could not run: ${res.error.message}`);
  if (res.status !== 0)
    throw new ClusterError(
      `${cmd} ${args.join(' ')} exited ${res.status}:\n${(res.stderr || res.stdout).trim()}`,
    );
  return res.stdout;
}

/** A project script that prints a directory or reference as its last stdout line; its stderr is passed through. */
function script(name: string): string {
  const res = spawnSync('bash', [join(ROOT, 'scripts', name)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (res.status !== 0) throw new ClusterError(`scripts/${name} failed (exit ${res.status}); see above`);
  return res.stdout?.trim().split('\n').at(-1) ?? '';
}

function podman(args: string[]): string {
  return run('bash', [
    '-c',
    `source ${JSON.stringify(join(ROOT, 'scripts', 'podman-env.sh'))} && podman "$@"`,
    'podman',
    ...args,
  ]);
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Pre-flight: say exactly what is missing.

function preflight() {
  const problems: string[] = [];
  if (process.getuid?.() !== 0)
    problems.push('not root: the cluster needs root (network namespaces, mounts, cgroups)');
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  const caps = BigInt(`0x${capEff}`);
  for (const [bit, name] of [
    [12n, 'CAP_NET_ADMIN'],
    [21n, 'CAP_SYS_ADMIN'],
  ] as const)
    if (!(caps & (1n << bit))) problems.push(`missing capability ${name} (CapEff ${capEff})`);
  if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay'))
    problems.push("the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)");
  if (!existsSync('/sys/fs/cgroup/memory') && !existsSync('/sys/fs/cgroup/cgroup.controllers'))
    problems.push('no memory cgroup under /sys/fs/cgroup');
  if (problems.length) throw new ClusterError(`cannot start a cluster here:\n  - ${problems.join('\n  - ')}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Files: keys, tokens, kubeconfigs, component configurations.

function kubeconfig(user: string, token: string, ca: string): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: plugboard
  cluster:
    server: ${API}
    certificate-authority: ${ca}
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: plugboard
  context: {cluster: plugboard, user: ${user}}
current-context: plugboard
`;
}

/** The serving certificate kube-apiserver generates for itself (with its CA appended) in --cert-dir. */
const API_CERT = join(D.pki, 'apiserver', 'apiserver.crt');

function writeFiles() {
  for (const [k, d] of Object.entries(D)) if (k !== 'state') mkdirSync(d, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(D.pki, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(D.pki, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));

  // Static tokens, one identity per component, as kubeadm's certificates would give: the Node authorizer and
  // RBAC's bootstrap bindings (system:kube-proxy, system:kube-scheduler, ...) know these names.
  const identities: [string, string, string][] = [
    ['admin', 'admin', 'system:masters'],
    ['kubelet', `system:node:${CLUSTER.nodeName}`, 'system:nodes'],
    ['kube-controller-manager', 'system:kube-controller-manager', ''],
    ['kube-scheduler', 'system:kube-scheduler', ''],
    ['kube-proxy', 'system:kube-proxy', ''],
  ];
  const lines: string[] = [];
  for (const [file, user, group] of identities) {
    const token = randomBytes(24).toString('hex');
    lines.push(`${token},${user},${user}${group ? `,"${group}"` : ''}`);
    writeFileSync(join(D.kubeconfigs, `${file}.kubeconfig`), kubeconfig(user, token, API_CERT), {
      mode: 0o600,
    });
  }
  writeFileSync(join(D.pki, 'tokens.csv'), `${lines.join('\n')}\n`, { mode: 0o600 });

  const runcRoot = join(D.containerd, 'runc');
  writeFileSync(
    join(D.containerd, 'config.toml'),
    `version = 2
root = "${join(D.containerd, 'root')}"
state = "${join(D.containerd, 'state')}"
[grpc]
  address = "${CONTAINERD_SOCK}"
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(D.containerd, 'opt')}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${CLUSTER.pauseImage}"
  # root here lacks CAP_SYS_RESOURCE: without this, runc fails every sandbox ("can't get final child's PID").
  restrict_oom_score_adj = true
  # Pod network namespaces are mounted under the state directory, so cluster:down finds and removes them all.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${runcRoot}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${join(D.cni, 'net.d')}"
`,
  );
  mkdirSync(join(D.cni, 'net.d'), { recursive: true });
  writeFileSync(
    join(D.cni, 'net.d', '10-plugboard.conflist'),
    `${JSON.stringify(
      {
        cniVersion: '1.0.0',
        name: 'plugboard',
        plugins: [
          {
            type: 'bridge',
            bridge: 'cni0',
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              dataDir: join(D.cni, 'ipam'),
              ranges: [[{ subnet: CLUSTER.nodePodCidr }]],
              routes: [{ dst: '0.0.0.0/0' }],
            },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      },
      null,
      2,
    )}\n`,
  );

  // The kubelet API is reachable only inside the namespace; anonymous + AlwaysAllow spares a client-certificate
  // PKI for kube-apiserver -> kubelet (logs, exec, port-forward). A production node uses webhook authn/authz.
  writeFileSync(
    join(D.kubelet, 'config.yaml'),
    `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${CLUSTER.nodeIp}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
# These machines have cgroup v1 only; kubelet 1.35+ refuses it unless told.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
clusterDNS: [${CLUSTER.dnsIp}]
clusterDomain: cluster.local
# Pods get only the cluster's DNS: the namespace has no upstream resolver.
resolvConf: ""
podLogsDir: ${D.podLogs}
serializeImagePulls: false
# A shared test machine: never evict the suite's pods for another job's disk use, never collect images.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
`,
  );
  writeFileSync(
    join(CLUSTER.dir, 'kube-proxy.yaml'),
    `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${join(D.kubeconfigs, 'kube-proxy.kubeconfig')}}
hostnameOverride: ${CLUSTER.nodeName}
clusterCIDR: ${CLUSTER.podCidr}
mode: iptables
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# nf_conntrack_max and the conntrack timeouts are not writable in a network namespace: leave them as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Components: each a detached process inside the namespace (the inner process runs there), logging to a file.

interface Component {
  name: string;
  bin: string;
  args: string[];
  ready: () => Promise<boolean>;
  timeoutMs: number;
}

function httpsGet(url: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ca = existsSync(API_CERT) ? readFileSync(API_CERT) : undefined;
    const req = httpsRequest(
      url,
      {
        ca,
        rejectUnauthorized: url.startsWith(API),
        headers: token ? { authorization: `Bearer ${token}` } : {},
        timeout: 3000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function adminToken(): string {
  return /token: (\S+)/.exec(readFileSync(ADMIN_KUBECONFIG, 'utf8'))?.[1] as string;
}

async function apiGet(path: string): Promise<{ status: number; body: string }> {
  return httpsGet(`${API}${path}`, adminToken());
}

function startComponent(c: Component): number {
  const out = openSync(join(D.logs, `${c.name}.log`), 'a');
  const child = spawn(c.bin, c.args, { detached: true, stdio: ['ignore', out, out] });
  child.unref();
  if (!child.pid) throw new ClusterError(`${c.name} could not be started (${c.bin})`);
  return child.pid;
}

async function waitReady(c: Component, pid: number): Promise<void> {
  const deadline = Date.now() + c.timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(pid))
      throw new ClusterError(
        `${c.name} exited during start-up; last lines of its log:\n${tail(join(D.logs, `${c.name}.log`))}`,
      );
    if (await c.ready().catch(() => false)) return;
    await sleep(250);
  }
  throw new ClusterError(
    `${c.name} was not ready within ${c.timeoutMs / 1000} s; last lines of its log:\n${tail(join(D.logs, `${c.name}.log`))}`,
  );
}

function components(bins: State['bins']): Component[] {
  const cp = (b: string) => join(bins.controlPlane, b);
  const cl = (b: string) => join(bins.cluster, b);
  const kc = (n: string) => join(D.kubeconfigs, `${n}.kubeconfig`);
  const healthz = (url: string) => async () => (await httpsGet(url)).status === 200;
  return [
    {
      name: 'etcd',
      bin: cp('etcd'),
      args: [
        `--data-dir=${D.etcd}`,
        '--listen-client-urls=http://127.0.0.1:2379',
        '--advertise-client-urls=http://127.0.0.1:2379',
        '--listen-peer-urls=http://127.0.0.1:2380',
        '--initial-advertise-peer-urls=http://127.0.0.1:2380',
        '--initial-cluster=default=http://127.0.0.1:2380',
        '--listen-metrics-urls=http://127.0.0.1:2381',
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      ready: async () => {
        const res = await fetch('http://127.0.0.1:2379/health');
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
      timeoutMs: 30_000,
    },
    {
      name: 'kube-apiserver',
      bin: cp('kube-apiserver'),
      args: [
        '--etcd-servers=http://127.0.0.1:2379',
        `--advertise-address=${CLUSTER.nodeIp}`,
        '--bind-address=0.0.0.0',
        `--secure-port=${CLUSTER.apiPort}`,
        `--cert-dir=${join(D.pki, 'apiserver')}`,
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction',
        `--token-auth-file=${join(D.pki, 'tokens.csv')}`,
        `--service-cluster-ip-range=${CLUSTER.serviceCidr}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${join(D.pki, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(D.pki, 'sa.key')}`,
        '--allow-privileged=true',
        // the node's name is not in any DNS: kube-apiserver reaches the kubelet by its InternalIP
        '--kubelet-preferred-address-types=InternalIP',
        '--v=1',
      ],
      ready: async () => {
        if (!existsSync(API_CERT)) return false;
        return (
          (await apiGet('/readyz')).status === 200 &&
          (await apiGet('/api/v1/namespaces/default')).status === 200
        );
      },
      timeoutMs: 120_000,
    },
    {
      name: 'containerd',
      bin: 'containerd',
      args: ['--config', join(D.containerd, 'config.toml'), '--log-level', 'warn'],
      ready: async () => spawnSync('ctr', ['--address', CONTAINERD_SOCK, 'version']).status === 0,
      timeoutMs: 30_000,
    },
    {
      name: 'kube-controller-manager',
      bin: cl('kube-controller-manager'),
      args: [
        `--kubeconfig=${kc('kube-controller-manager')}`,
        '--bind-address=127.0.0.1',
        '--leader-elect=false',
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${join(D.pki, 'sa.key')}`,
        `--root-ca-file=${API_CERT}`,
        `--cluster-cidr=${CLUSTER.podCidr}`,
        '--allocate-node-cidrs=true',
        '--node-cidr-mask-size=24',
        `--service-cluster-ip-range=${CLUSTER.serviceCidr}`,
        '--v=1',
      ],
      ready: healthz('https://127.0.0.1:10257/healthz'),
      timeoutMs: 60_000,
    },
    {
      name: 'kube-scheduler',
      bin: cl('kube-scheduler'),
      args: [
        `--kubeconfig=${kc('kube-scheduler')}`,
        '--bind-address=127.0.0.1',
        '--leader-elect=false',
        '--v=1',
      ],
      ready: healthz('https://127.0.0.1:10259/healthz'),
      timeoutMs: 60_000,
    },
    {
      name: 'kubelet',
      bin: cl('kubelet'),
      args: [
        `--config=${join(D.kubelet, 'config.yaml')}`,
        `--kubeconfig=${kc('kubelet')}`,
        `--root-dir=${D.kubelet}`,
        `--cert-dir=${join(D.kubelet, 'pki')}`,
        `--hostname-override=${CLUSTER.nodeName}`,
        `--node-ip=${CLUSTER.nodeIp}`,
        '--v=1',
      ],
      ready: async () => {
        const res = await apiGet(`/api/v1/nodes/${CLUSTER.nodeName}`);
        if (res.status !== 200) return false;
        const node = JSON.parse(res.body) as { status?: { conditions?: { type: string; status: string }[] } };
        return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      },
      timeoutMs: 120_000,
    },
    {
      name: 'kube-proxy',
      bin: cl('kube-proxy'),
      args: [`--config=${join(CLUSTER.dir, 'kube-proxy.yaml')}`, '--v=1'],
      ready: async () => (await fetch('http://127.0.0.1:10256/healthz')).ok,
      timeoutMs: 60_000,
    },
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Images: the pause and CoreDNS images are made here from the built binaries (podman, FROM scratch); all images go
// from podman's storage into the node's containerd (namespace k8s.io), where pods find them without a pull.

function ensureLocalImage(ref: string, binary: string, entrypoint: string[], user?: string) {
  const exists = spawnSync('bash', [
    '-c',
    `source ${JSON.stringify(join(ROOT, 'scripts', 'podman-env.sh'))} && podman image exists "$1"`,
    'podman',
    ref,
  ]);
  const label = `dev.plugboard.binary-sha=${run('sha256sum', [binary]).slice(0, 16)}`;
  if (exists.status === 0) {
    const have = podman([
      'image',
      'inspect',
      '--format',
      '{{index .Labels "dev.plugboard.binary-sha"}}',
      ref,
    ]).trim();
    if (`dev.plugboard.binary-sha=${have}` === label) return;
  }
  const ctx = join(D.images, `ctx-${ref.split('/').at(-1)?.replace(':', '-')}`);
  mkdirSync(ctx, { recursive: true });
  execFileSync('cp', [binary, join(ctx, 'bin')]);
  writeFileSync(
    join(ctx, 'Containerfile'),
    `FROM scratch\nCOPY bin /${entrypoint[0]?.slice(1)}\nLABEL ${label}\n${user ? `USER ${user}\n` : ''}ENTRYPOINT ${JSON.stringify(entrypoint)}\n`,
  );
  podman(['build', '--pull=never', '--network=none', '-q', '-t', ref, ctx]);
  rmSync(ctx, { recursive: true, force: true });
}

function loadImage(ref: string): string {
  const id = podman(['image', 'inspect', '--format', '{{.Id}}', ref]).trim();
  const archive = join(D.images, `${id.slice(0, 12)}.tar`);
  podman(['save', '-q', '--format', 'docker-archive', '-o', archive, ref]);
  run('ctr', [
    '--address',
    CONTAINERD_SOCK,
    '-n',
    'k8s.io',
    'images',
    'import',
    '--no-unpack=false',
    archive,
  ]);
  rmSync(archive, { force: true });
  return id;
}

function corednsManifest(): string {
  return `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        loadbalance
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
        - name: coredns
          image: ${CLUSTER.corednsImage}
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
            - {name: metrics, containerPort: 9153, protocol: TCP}
          resources:
            limits: {memory: 170Mi}
            requests: {cpu: 50m, memory: 70Mi}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
            readOnlyRootFilesystem: true
          livenessProbe:
            httpGet: {path: /health, port: 8080}
            initialDelaySeconds: 5
            periodSeconds: 10
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 2
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
        - name: config
          configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: ${CLUSTER.dnsIp}
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
    - {name: metrics, port: 9153, protocol: TCP}
`;
}

function kubectl(bins: State['bins'], args: string[], input?: string): string {
  return run(join(bins.cluster, 'kubectl'), ['--kubeconfig', ADMIN_KUBECONFIG, ...args], { input });
}

async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs: number,
  why: () => string,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await Promise.resolve(probe()).catch(() => false)) return;
    await sleep(500);
  }
  throw new ClusterError(`${what} not within ${timeoutMs / 1000} s:\n${why()}`);
}

// ---------------------------------------------------------------------------------------------------------------
// up (outer: host namespace), start (inner: inside the cluster's namespace), down.

function readState(): State | undefined {
  try {
    return JSON.parse(readFileSync(D.state, 'utf8')) as State;
  } catch {
    return undefined;
  }
}

function netnsExists(): boolean {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .some((l) => l.split(' ')[0] === CLUSTER.netns);
}

/**
 * Enters only the network namespace. Not `ip netns exec`: it also mounts a fresh /sys, which hides
 * /sys/fs/cgroup, and the kubelet then dies with "failed to find cgroup mounts".
 */
const NSENTER_NET = `--net=/run/netns/${CLUSTER.netns}`;

function result(state: State): string {
  return JSON.stringify({ kubeconfig: state.kubeconfig, netns: state.netns, image: state.image });
}

async function up(): Promise<void> {
  const t0 = Date.now();
  preflight();
  const step = (what: string, since: number) =>
    log(`${what} (${((Date.now() - since) / 1000).toFixed(1)} s)`);
  let t = Date.now();
  script('install-container-tools.sh');
  const bins = { controlPlane: script('build-control-plane.sh'), cluster: script('build-cluster.sh') };
  step('binaries ready', t);
  t = Date.now();
  const image = process.env.PLUGBOARD_IMAGE ?? script('build-image.sh');
  step(`image ${image} ready`, t);

  const existing = readState();
  if (existing && netnsExists() && Object.values(existing.pids).every(alive)) {
    // Already up: load the image again only if it changed since.
    const id = podman(['image', 'inspect', '--format', '{{.Id}}', image]).trim();
    if (id !== existing.imageId || image !== existing.image) {
      t = Date.now();
      existing.imageId = loadImage(image);
      existing.image = image;
      writeFileSync(D.state, JSON.stringify(existing, null, 2));
      step(`loaded ${image} into the running node`, t);
    }
    log(`already running (netns ${CLUSTER.netns}); cluster:down stops it`);
    console.log(result(existing));
    return;
  }
  if (existing || netnsExists() || existsSync(CLUSTER.dir)) {
    log('found a cluster that is not (fully) running: removing it first');
    await down();
  }

  try {
    t = Date.now();
    ensureLocalImage(CLUSTER.pauseImage, join(bins.cluster, 'pause'), ['/pause'], '65535:65535');
    ensureLocalImage(CLUSTER.corednsImage, join(bins.cluster, 'coredns'), ['/coredns']);
    step('pause and CoreDNS images ready', t);

    t = Date.now();
    run('ip', ['netns', 'add', CLUSTER.netns]);
    const ipn = (...a: string[]) => run('ip', ['-n', CLUSTER.netns, ...a]);
    ipn('link', 'set', 'lo', 'up');
    ipn('link', 'add', 'pb0', 'type', 'bridge');
    ipn('addr', 'add', CLUSTER.nodeCidr, 'dev', 'pb0');
    ipn('link', 'set', 'pb0', 'up');
    // kube-apiserver refuses to start in a namespace without a default route.
    ipn('route', 'add', 'default', 'via', CLUSTER.nodeGateway, 'dev', 'pb0', 'onlink');
    // Pods' traffic to Services crosses the pod bridge: iptables (kube-proxy's rules) must see bridged packets.
    run('nsenter', [
      NSENTER_NET,
      'sysctl',
      '-qw',
      'net.ipv4.ip_forward=1',
      'net.bridge.bridge-nf-call-iptables=1',
    ]);
    step(`network namespace ${CLUSTER.netns} with node address ${CLUSTER.nodeIp}`, t);

    mkdirSync(CLUSTER.dir, { recursive: true });
    writeFileSync(join(CLUSTER.dir, 'bins.json'), JSON.stringify({ bins, image }));
    const inner = spawnSync(
      'nsenter',
      [NSENTER_NET, process.execPath, join(ROOT, 'scripts', 'cluster.ts'), 'start'],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    if (inner.status !== 0) throw new ClusterError('starting the cluster failed (see above)');
    const state = readState();
    if (!state) throw new ClusterError('the cluster started but wrote no state');
    log(
      `up in ${((Date.now() - t0) / 1000).toFixed(1)} s; reach it with: ip netns exec ${state.netns} kubectl --kubeconfig ${state.kubeconfig} get pods -A   (kubectl, helm: ${bins.cluster}, ${bins.controlPlane})`,
    );
    console.log(result(state));
  } catch (err) {
    if (process.env.PLUGBOARD_CLUSTER_KEEP === '1')
      log(`left as it is (PLUGBOARD_CLUSTER_KEEP=1); logs in ${D.logs}`);
    else {
      const kept = join('/tmp', `plugboard-cluster-logs-${Date.now()}`);
      if (existsSync(D.logs)) run('cp', ['-r', D.logs, kept]);
      log(`removing what was made; component logs copied to ${kept}`);
      await down();
    }
    throw err;
  }
}

/** Runs inside the cluster's namespace: starts every component, loads the images, installs CoreDNS. */
async function start(): Promise<void> {
  const { bins, image } = JSON.parse(readFileSync(join(CLUSTER.dir, 'bins.json'), 'utf8')) as {
    bins: State['bins'];
    image: string;
  };
  writeFiles();
  const state: State = {
    netns: CLUSTER.netns,
    kubeconfig: ADMIN_KUBECONFIG,
    image,
    imageId: '',
    bins,
    pids: {},
  };
  const save = () => writeFileSync(D.state, JSON.stringify(state, null, 2));
  for (const c of components(bins)) {
    const t = Date.now();
    state.pids[c.name] = startComponent(c);
    save();
    await waitReady(c, state.pids[c.name] as number);
    log(`${c.name} ready (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    if (c.name === 'containerd') {
      const ti = Date.now();
      for (const ref of [CLUSTER.pauseImage, CLUSTER.corednsImage]) loadImage(ref);
      state.imageId = loadImage(image);
      save();
      log(
        `loaded ${CLUSTER.pauseImage}, ${CLUSTER.corednsImage}, ${image} into the node (${((Date.now() - ti) / 1000).toFixed(1)} s)`,
      );
    }
  }
  const t = Date.now();
  kubectl(bins, ['apply', '-f', '-'], corednsManifest());
  await waitFor(
    'CoreDNS available',
    () =>
      kubectl(bins, [
        '-n',
        'kube-system',
        'get',
        'deploy',
        'coredns',
        '-o',
        'jsonpath={.status.availableReplicas}',
      ]).trim() === '1',
    120_000,
    () =>
      `${kubectl(bins, ['-n', 'kube-system', 'get', 'pods', '-o', 'wide'])}\n${kubectl(bins, ['-n', 'kube-system', 'get', 'events', '--sort-by=.lastTimestamp']).split('\n').slice(-15).join('\n')}\nkubelet: ${tail(join(D.logs, 'kubelet.log'), 15)}`,
  );
  // Pods in any namespace need its default ServiceAccount, which kube-controller-manager creates.
  await waitFor(
    'the default ServiceAccount',
    async () => (await apiGet('/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
    60_000,
    () => tail(join(D.logs, 'kube-controller-manager.log')),
  );
  log(`CoreDNS ready at ${CLUSTER.dnsIp} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}

/** Stops every process cluster:up started, unmounts and removes everything it made. Safe to run at any time. */
async function down(): Promise<void> {
  const state = readState();
  const stopped: string[] = [];
  // A throwaway cluster: nothing to shut down gracefully, its state is deleted below.
  const kill = async (name: string, pid: number | undefined, graceMs = 1000) => {
    if (!alive(pid)) return;
    process.kill(pid as number, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    if (alive(pid)) process.kill(pid as number, 'SIGKILL');
    stopped.push(name);
  };
  // 1. kubelet first, so it does not restart what is stopped next.
  await kill('kubelet', state?.pids.kubelet);
  // 2. Every container and pod sandbox, through containerd (their processes live in their own namespaces).
  if (alive(state?.pids.containerd) && existsSync(CONTAINERD_SOCK)) {
    const ctr = (...a: string[]) =>
      spawnSync('ctr', ['--address', CONTAINERD_SOCK, '-n', 'k8s.io', ...a], { encoding: 'utf8' });
    const tasks = (ctr('tasks', 'ls', '-q').stdout ?? '').split('\n').filter(Boolean);
    for (const id of tasks) ctr('tasks', 'kill', '-s', 'SIGKILL', id);
    for (let i = 0; i < 50 && tasks.length; i++) {
      const running = (ctr('tasks', 'ls').stdout ?? '').split('\n').filter((l) => /\bRUNNING\b/.test(l));
      if (!running.length) break;
      await sleep(100);
    }
    for (const id of tasks) ctr('tasks', 'delete', '-f', id);
    for (const id of (ctr('containers', 'ls', '-q').stdout ?? '').split('\n').filter(Boolean))
      ctr('containers', 'delete', id);
    if (tasks.length) stopped.push(`${tasks.length} containers`);
  }
  // 3. The rest, in reverse start order.
  for (const name of [
    'kube-proxy',
    'kube-scheduler',
    'kube-controller-manager',
    'containerd',
    'kube-apiserver',
    'etcd',
  ])
    await kill(name, state?.pids[name]);
  // 4. Anything else still inside the namespace (container shims, a component whose pid was not recorded yet).
  if (netnsExists()) {
    for (const pid of run('ip', ['netns', 'pids', CLUSTER.netns]).split('\n').filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
        stopped.push(`pid ${pid}`);
      } catch {
        // gone meanwhile
      }
    }
  }
  // 5. Mounts under the cluster's directory (pod volumes, overlay snapshots, pod network namespaces), deepest first.
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') ?? '')
    .filter((m) => m === CLUSTER.dir || m.startsWith(`${CLUSTER.dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  // 6. The cgroups the kubelet made (cgroup v1: one tree per controller).
  for (const ctrl of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
    const dir = join('/sys/fs/cgroup', ctrl, 'kubepods');
    if (existsSync(dir))
      spawnSync('find', [dir, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';'], { stdio: 'ignore' });
  }
  // 7. The namespace and the files.
  if (netnsExists()) run('ip', ['netns', 'del', CLUSTER.netns]);
  rmSync(CLUSTER.dir, { recursive: true, force: true });
  log(
    stopped.length
      ? `stopped ${stopped.join(', ')}; removed netns ${CLUSTER.netns} and ${CLUSTER.dir}`
      : 'nothing was running; removed any leftovers',
  );
}

const command = process.argv[2];
const commands: Record<string, () => Promise<void>> = { up, start, down };
const fn = command ? commands[command] : undefined;
if (!fn) {
  console.error('usage: node scripts/cluster.ts up | down');
  process.exit(2);
}
fn().then(
  () => process.exit(0),
  (err: unknown) => {
    log(err instanceof ClusterError ? err.message : String((err as Error)?.stack ?? err));
    process.exit(1);
  },
);
