/**
 * Hostile upstream URLs and what stops each. Shared by the unit suite (zod, the pure URL check, the real
 * verification and gateway paths) and the kube suite (the API server's CEL rules agree with zod).
 *
 * `zod`: the substring of the zod/CEL message when the CRD rules already reject the URL at admission.
 * `pure`: the rule checkUpstreamUrl (src/net) reports without resolving anything; undefined when it accepts.
 * `connect`: the rule the connector refuses with at connect time (policy: cluster mode, loopback refused), for
 * URLs admission lets through.
 * `resolvesTo`: what the injected resolver answers for a name.
 */
export interface Hostile {
  url: string;
  why: string;
  zod?: string;
  pure?: string;
  connect?: string;
  resolvesTo?: string[];
}

const CRED = 'url must not contain credentials';
const QUERY = 'url must not contain a query string or fragment';
const SCHEME = 'url must start with http:// or https://';

export const HOSTILE: Hostile[] = [
  // the metadata address, literally and in every IPv4 spelling WHATWG URL and getaddrinfo accept
  {
    url: 'http://169.254.169.254/latest/meta-data',
    why: 'metadata, dotted quad',
    pure: 'link-local',
    connect: 'link-local',
  },
  { url: 'https://169.254.169.254', why: 'metadata over https', pure: 'link-local', connect: 'link-local' },
  {
    url: 'http://169.254.169.254:80/v1',
    why: 'metadata with explicit port',
    pure: 'link-local',
    connect: 'link-local',
  },
  { url: 'http://2852039166/', why: 'decimal', pure: 'non-canonical-ip', connect: 'link-local' },
  { url: 'http://0251.0376.0251.0376/', why: 'octal', pure: 'non-canonical-ip', connect: 'link-local' },
  { url: 'http://0xa9fea9fe/', why: 'hex', pure: 'non-canonical-ip', connect: 'link-local' },
  { url: 'http://0xA9.0xFE.0xA9.0xFE/', why: 'dotted hex', pure: 'non-canonical-ip', connect: 'link-local' },
  {
    url: 'http://0251.254.169.254/',
    why: 'mixed octal and decimal',
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://169.254.43518/',
    why: 'short form a.b.c16',
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  { url: 'http://169.16689662/', why: 'short form a.b24', pure: 'non-canonical-ip', connect: 'link-local' },
  { url: 'http://169.254.169.254./', why: 'trailing dot', pure: 'non-canonical-ip', connect: 'link-local' },
  { url: 'http://169.254.0.1/', why: 'elsewhere in link-local', pure: 'link-local', connect: 'link-local' },
  // IPv6 spellings of IPv4 addresses, and IPv6's own dangerous ranges
  {
    url: 'http://[::ffff:169.254.169.254]/',
    why: 'IPv4-mapped, dotted',
    pure: 'link-local',
    connect: 'link-local',
  },
  { url: 'http://[::ffff:a9fe:a9fe]/', why: 'IPv4-mapped, hex', pure: 'link-local', connect: 'link-local' },
  {
    url: 'http://[0:0:0:0:0:ffff:a9fe:a9fe]/',
    why: 'IPv4-mapped, long form',
    pure: 'link-local',
    connect: 'link-local',
  },
  { url: 'http://[::ffff:0:a9fe:a9fe]/', why: 'IPv4-translated', pure: 'link-local', connect: 'link-local' },
  { url: 'http://[::169.254.169.254]/', why: 'IPv4-compatible', pure: 'link-local', connect: 'link-local' },
  { url: 'http://[64:ff9b::a9fe:a9fe]/', why: 'NAT64', pure: 'link-local', connect: 'link-local' },
  {
    url: 'http://[2002:a9fe:a9fe::1]/',
    why: '6to4 carrying the metadata address',
    pure: 'link-local',
    connect: 'link-local',
  },
  {
    url: 'http://[fd00:ec2::254]/',
    why: 'AWS IPv6 metadata',
    pure: 'cloud-metadata',
    connect: 'cloud-metadata',
  },
  { url: 'http://[fe80::1]/', why: 'IPv6 link-local', pure: 'link-local', connect: 'link-local' },
  {
    url: 'http://[fe80::a9fe:a9fe]/',
    why: 'IPv6 link-local ending like the metadata address',
    pure: 'link-local',
    connect: 'link-local',
  },
  {
    url: 'http://100.100.100.200/',
    why: 'Alibaba metadata',
    pure: 'cloud-metadata',
    connect: 'cloud-metadata',
  },
  {
    url: 'http://168.63.129.16/',
    why: 'Azure WireServer',
    pure: 'cloud-metadata',
    connect: 'cloud-metadata',
  },
  // unspecified, multicast, broadcast
  { url: 'http://0.0.0.0:8080/', why: 'unspecified', pure: 'unspecified', connect: 'unspecified' },
  { url: 'http://0/', why: 'unspecified, short', pure: 'non-canonical-ip', connect: 'unspecified' },
  { url: 'http://[::]/', why: 'IPv6 unspecified', pure: 'unspecified', connect: 'unspecified' },
  { url: 'http://[::ffff:0.0.0.0]/', why: 'mapped unspecified', pure: 'unspecified', connect: 'unspecified' },
  { url: 'http://224.0.0.1/', why: 'multicast', pure: 'multicast', connect: 'multicast' },
  { url: 'http://239.255.255.250:1900/', why: 'SSDP multicast', pure: 'multicast', connect: 'multicast' },
  { url: 'http://[ff02::1]/', why: 'IPv6 multicast', pure: 'multicast', connect: 'multicast' },
  { url: 'http://255.255.255.255/', why: 'broadcast', pure: 'reserved', connect: 'reserved' },
  // loopback: admission cannot know the mode; the cluster policy refuses it at connect time
  { url: 'http://127.0.0.1:8081/metrics', why: 'loopback (operator probes)', connect: 'loopback' },
  { url: 'http://127.1/', why: 'loopback, short', pure: 'non-canonical-ip', connect: 'loopback' },
  { url: 'http://2130706433/', why: 'loopback, decimal', pure: 'non-canonical-ip', connect: 'loopback' },
  { url: 'http://0x7f000001/', why: 'loopback, hex', pure: 'non-canonical-ip', connect: 'loopback' },
  { url: 'http://[::1]:8081/', why: 'IPv6 loopback', connect: 'loopback' },
  { url: 'http://[::ffff:127.0.0.1]/', why: 'mapped loopback', connect: 'loopback' },
  // names that resolve to refused addresses (the resolver is injected)
  {
    url: 'http://metadata.google.internal/computeMetadata/v1',
    why: 'name → metadata',
    resolvesTo: ['169.254.169.254'],
    connect: 'link-local',
  },
  {
    url: 'http://metadata.test/',
    why: 'name → mapped metadata',
    resolvesTo: ['::ffff:169.254.169.254'],
    connect: 'link-local',
  },
  {
    url: 'http://mixed.test/v1',
    why: 'name → one private, one metadata',
    resolvesTo: ['10.0.0.5', '169.254.169.254'],
    connect: 'link-local',
  },
  {
    url: 'http://mixed6.test/v1',
    why: 'name → one private, one IPv6 link-local',
    resolvesTo: ['fd12::5', 'fe80::1'],
    connect: 'link-local',
  },
  { url: 'http://zero.test/', why: 'name → 0.0.0.0', resolvesTo: ['0.0.0.0'], connect: 'unspecified' },
  {
    url: 'http://localhost:8081/',
    why: 'localhost in cluster mode',
    resolvesTo: ['127.0.0.1', '::1'],
    connect: 'loopback',
  },
  {
    url: 'http://169.254.169.254.nip.io/',
    why: 'wildcard DNS → metadata',
    resolvesTo: ['169.254.169.254'],
    connect: 'link-local',
  },
  // userinfo, fragment and query tricks, other schemes: the CRD rules reject them at admission
  {
    url: 'http://api.openai.com@169.254.169.254/',
    why: 'userinfo: looks like openai, goes to metadata',
    zod: CRED,
    pure: 'userinfo',
  },
  {
    url: 'http://api.openai.com:443@169.254.169.254/',
    why: 'userinfo with a port-like password',
    zod: CRED,
    pure: 'userinfo',
  },
  { url: 'http://user:pass@api.openai.com/v1', why: 'credentials in the URL', zod: CRED, pure: 'userinfo' },
  { url: 'http://api.openai.com\\@169.254.169.254/', why: 'backslash before @', zod: CRED },
  {
    url: 'http://169.254.169.254%2f@api.openai.com/',
    why: 'encoded slash in userinfo',
    zod: CRED,
    pure: 'userinfo',
  },
  {
    url: 'http://169.254.169.254#@api.openai.com',
    why: 'fragment hides the real host',
    zod: QUERY,
    pure: 'link-local',
  },
  {
    url: 'http://169.254.169.254?@api.openai.com',
    why: 'query hides the real host',
    zod: QUERY,
    pure: 'link-local',
  },
  { url: 'ftp://169.254.169.254/', why: 'other scheme', zod: SCHEME, pure: 'invalid-url' },
  { url: 'file:///etc/passwd', why: 'file scheme', zod: SCHEME, pure: 'invalid-url' },
  { url: 'gopher://169.254.169.254:80/_GET', why: 'gopher scheme', zod: SCHEME, pure: 'invalid-url' },
];

/** Must keep working: private addresses (in-cluster vLLM) and public names. */
export const ALLOWED: { url: string; why: string; resolvesTo?: string[]; dials: string }[] = [
  { url: 'http://10.0.0.7:8000/v1', why: 'pod IP (10/8)', dials: '10.0.0.7' },
  { url: 'http://172.16.4.2:8000/v1', why: '172.16/12', dials: '172.16.4.2' },
  { url: 'http://192.168.1.20:11434/v1', why: 'Ollama on 192.168/16', dials: '192.168.1.20' },
  { url: 'http://[fd12:3456::7]:8000/v1', why: 'IPv6 ULA fc00::/7', dials: 'fd12:3456::7' },
  {
    url: 'http://vllm.ai.svc.cluster.local:8000/v1',
    why: 'Service name → ClusterIP',
    resolvesTo: ['10.96.12.34'],
    dials: '10.96.12.34',
  },
  {
    url: 'https://api.openai.com/v1',
    why: 'public name',
    resolvesTo: ['162.159.140.245'],
    dials: '162.159.140.245',
  },
];
