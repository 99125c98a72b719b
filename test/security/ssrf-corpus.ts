/**
 * Hostile upstream URLs and what stops each, written as an attacker would: every spelling of a refused address
 * that WHATWG URL (what undici and `new URL` use) or getaddrinfo turns into that address. Shared by the unit
 * suite (zod, `plugboard verify`, the pure URL check, the real verification and gateway paths) and the kube
 * suites (the API server's CEL rules refuse the same URLs with the same words).
 *
 * `zod`: the substring of the message zod and the API server (CEL) give when the CRD rules refuse the URL at
 * admission; undefined when admission lets it through (names, loopback: decided at connect time).
 * `pure`: the rule checkUpstreamUrl (src/net) reports without resolving anything; undefined when it accepts.
 * `connect`: the rule the connector refuses with at connect time (policy: cluster mode, loopback refused);
 * undefined only where WHATWG URL cannot parse the URL at all, so there is nothing to connect to.
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
// The URL host rules: how the host is written, then what address it is.
const NOTATION = 'url host must be a DNS name';
const NUMERIC = 'url host ends in a number';
const BRACKETS = 'url host in brackets must be an IPv6 address';
const LINK_LOCAL = 'url host is link-local';
const METADATA = 'url host is a cloud metadata address';
const UNSPECIFIED = 'url host is an unspecified';
const MULTICAST = 'url host is multicast';
const RESERVED = 'url host is reserved';

/** A literal host in a fixed range: admission, the pure check and the connector all refuse it by its rule. */
const fixed = (url: string, why: string, rule: string, zod: string): Hostile => ({
  url,
  why,
  zod,
  pure: rule,
  connect: rule,
});

export const HOSTILE: Hostile[] = [
  // the metadata address, literally
  fixed('http://169.254.169.254/latest/meta-data', 'metadata, dotted quad', 'link-local', LINK_LOCAL),
  fixed('https://169.254.169.254', 'metadata over https', 'link-local', LINK_LOCAL),
  fixed('http://169.254.169.254:80/v1', 'metadata with explicit port', 'link-local', LINK_LOCAL),
  fixed('http://169.254.0.1/', 'elsewhere in link-local', 'link-local', LINK_LOCAL),
  fixed('http://169.254.255.255/', 'top of link-local', 'link-local', LINK_LOCAL),
  // every IPv4 spelling WHATWG URL and getaddrinfo read as a number: refused for the notation at admission
  {
    url: 'http://2852039166/',
    why: 'decimal',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://0251.0376.0251.0376/',
    why: 'octal',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  { url: 'http://0xa9fea9fe/', why: 'hex', zod: NUMERIC, pure: 'non-canonical-ip', connect: 'link-local' },
  {
    url: 'http://0XA9FEA9FE/',
    why: 'hex, upper case',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://0xA9.0xFE.0xA9.0xFE/',
    why: 'dotted hex',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://0251.254.169.254/',
    why: 'mixed octal and decimal',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://0xa9.254.0251.0xfe/',
    why: 'mixed hex, decimal and octal',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://169.254.43518/',
    why: 'short form a.b.c16',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://169.16689662/',
    why: 'short form a.b24',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://169.254.169.254./',
    why: 'trailing dot',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://0xa9fea9fe./',
    why: 'hex with trailing dot',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  {
    url: 'http://169.254.169.0254/',
    why: 'leading zero: octal 0254 is 172',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'link-local',
  },
  // host spellings WHATWG URL decodes or maps to ASCII digits and dots
  {
    url: 'http://%31%36%39.254.169.254/',
    why: 'percent-encoded digits',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://169.254.169.254%2e/',
    why: 'percent-encoded trailing dot',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://１６９.２５４.１６９.２５４/',
    why: 'full-width digits (IDNA maps them to ASCII)',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://169。254。169。254/',
    why: 'ideographic full stops',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/',
    why: 'circled digits',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://%E2%91%A0%E2%91%A5%E2%91%A8.254.169.254/',
    why: 'percent-encoded circled digits',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://169.254.169.254\t/',
    why: 'a tab WHATWG strips',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  {
    url: 'http://169.2\n54.169.254/',
    why: 'a newline WHATWG strips',
    zod: NOTATION,
    pure: 'host-notation',
    connect: 'link-local',
  },
  { url: 'http://[fe80::1%25eth0]/', why: 'IPv6 zone id', zod: NOTATION, pure: 'invalid-url' },
  {
    url: 'http://[fe80::a9fe:a9fe%eth0]/',
    why: 'IPv6 zone id, unencoded',
    zod: NOTATION,
    pure: 'invalid-url',
  },
  // IPv4-mapped: never needed in a spec (write the IPv4 address), refused for the notation at admission
  {
    url: 'http://[::ffff:169.254.169.254]/',
    why: 'IPv4-mapped, dotted',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'link-local',
  },
  {
    url: 'http://[::ffff:a9fe:a9fe]/',
    why: 'IPv4-mapped, hex',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'link-local',
  },
  {
    url: 'http://[0:0:0:0:0:ffff:a9fe:a9fe]/',
    why: 'IPv4-mapped, long form',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'link-local',
  },
  {
    url: 'http://[0000:0000:0000:0000:0000:FFFF:A9FE:A9FE]:80/',
    why: 'IPv4-mapped, leading zeros, upper case, port',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'link-local',
  },
  {
    url: 'http://[::ffff:6464:64c8]/',
    why: 'IPv4-mapped Alibaba metadata',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'cloud-metadata',
  },
  { url: 'http://[1:2:3]/', why: 'not an IPv6 address', zod: BRACKETS, pure: 'invalid-url' },
  // IPv6 addresses that carry an IPv4 address, judged by it
  fixed('http://[::ffff:0:a9fe:a9fe]/', 'IPv4-translated', 'link-local', LINK_LOCAL),
  fixed(
    'http://[::FFFF:0:169.254.169.254]/',
    'IPv4-translated, dotted, upper case',
    'link-local',
    LINK_LOCAL,
  ),
  fixed('http://[::169.254.169.254]/', 'IPv4-compatible', 'link-local', LINK_LOCAL),
  fixed('http://[::a9fe:a9fe]/', 'IPv4-compatible, hex', 'link-local', LINK_LOCAL),
  fixed('http://[::224.0.0.1]/', 'IPv4-compatible multicast', 'multicast', MULTICAST),
  fixed('http://[64:ff9b::a9fe:a9fe]/', 'NAT64 well-known prefix', 'link-local', LINK_LOCAL),
  fixed('http://[64:ff9b::169.254.169.254]/', 'NAT64, dotted', 'link-local', LINK_LOCAL),
  fixed('http://[64:ff9b::a83f:8110]/', 'NAT64 Azure WireServer', 'cloud-metadata', METADATA),
  fixed('http://[64:ff9b::f000:1]/', 'NAT64 reserved', 'reserved', RESERVED),
  fixed('http://[64:ff9b:1::a9fe:a9fe]/', 'NAT64 local-use prefix, /96 layout', 'link-local', LINK_LOCAL),
  fixed('http://[64:ff9b:1:abcd:a9:fea9:fe00:0]/', 'NAT64 local-use, /64 layout', 'link-local', LINK_LOCAL),
  fixed('http://[64:ff9b:1:12a9:fe:a9fe::]/', 'NAT64 local-use, /56 layout', 'link-local', LINK_LOCAL),
  fixed('http://[64:ff9b:1:a9fe:a9:fe00::]/', 'NAT64 local-use, /48 layout', 'link-local', LINK_LOCAL),
  fixed('http://[2002:a9fe:a9fe::1]/', '6to4 carrying the metadata address', 'link-local', LINK_LOCAL),
  fixed('http://[2002::1]/', '6to4 carrying 0.0.0.0', 'unspecified', UNSPECIFIED),
  fixed('http://[2002:6464:64c8::]/', '6to4 carrying Alibaba metadata', 'cloud-metadata', METADATA),
  fixed(
    'http://[2001:0:4136:e378:8000:63bf:5601:5601]/',
    'Teredo, client 169.254.169.254 (inverted)',
    'link-local',
    LINK_LOCAL,
  ),
  fixed('http://[2001::9b9b:9b37]/', 'Teredo, client 100.100.100.200', 'cloud-metadata', METADATA),
  fixed('http://[2001::ffff:ffff]/', 'Teredo, client 0.0.0.0', 'unspecified', UNSPECIFIED),
  fixed('http://[2001:0:4136:e378::1fff:fffe]/', 'Teredo, client 224.0.0.1', 'multicast', MULTICAST),
  // IPv6's own refused ranges and the cloud metadata addresses outside link-local
  fixed('http://[fd00:ec2::254]/', 'AWS IPv6 metadata', 'cloud-metadata', METADATA),
  fixed('http://[FD00:EC2:0:0:0:0:0:254]/', 'AWS IPv6 metadata, long form', 'cloud-metadata', METADATA),
  fixed('http://[fe80::1]/', 'IPv6 link-local', 'link-local', LINK_LOCAL),
  fixed('http://[fe80:0000::0001]/', 'IPv6 link-local, leading zeros', 'link-local', LINK_LOCAL),
  fixed('http://[febf:ffff::1]/', 'top of fe80::/10', 'link-local', LINK_LOCAL),
  fixed(
    'http://[fe80::a9fe:a9fe]/',
    'IPv6 link-local ending like the metadata address',
    'link-local',
    LINK_LOCAL,
  ),
  fixed('http://100.100.100.200/', 'Alibaba metadata', 'cloud-metadata', METADATA),
  fixed('http://168.63.129.16/', 'Azure WireServer', 'cloud-metadata', METADATA),
  // unspecified, multicast, reserved and broadcast
  fixed('http://0.0.0.0:8080/', 'unspecified', 'unspecified', UNSPECIFIED),
  fixed('http://0.1.2.3/', '"this network" 0.0.0.0/8', 'unspecified', UNSPECIFIED),
  {
    url: 'http://0/',
    why: 'unspecified, short',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'unspecified',
  },
  {
    url: 'http://0x/',
    why: 'unspecified, empty hex',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'unspecified',
  },
  fixed('http://[::]/', 'IPv6 unspecified', 'unspecified', UNSPECIFIED),
  fixed('http://[0:0:0:0:0:0:0:0]/', 'IPv6 unspecified, long form', 'unspecified', UNSPECIFIED),
  {
    url: 'http://[::ffff:0.0.0.0]/',
    why: 'mapped unspecified',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'unspecified',
  },
  fixed('http://224.0.0.1/', 'multicast', 'multicast', MULTICAST),
  fixed('http://239.255.255.250:1900/', 'SSDP multicast', 'multicast', MULTICAST),
  fixed('http://[ff02::1]/', 'IPv6 multicast', 'multicast', MULTICAST),
  fixed('http://[FF05::1:3]/', 'IPv6 site-local multicast, upper case', 'multicast', MULTICAST),
  fixed('http://240.0.0.1/', 'reserved 240/4', 'reserved', RESERVED),
  fixed('http://255.255.255.255/', 'broadcast', 'reserved', RESERVED),
  // loopback: admission cannot know the mode; the cluster policy refuses it at connect time
  { url: 'http://127.0.0.1:8081/metrics', why: 'loopback (operator probes)', connect: 'loopback' },
  {
    url: 'http://127.1/',
    why: 'loopback, short',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'loopback',
  },
  {
    url: 'http://2130706433/',
    why: 'loopback, decimal',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'loopback',
  },
  {
    url: 'http://0x7f000001/',
    why: 'loopback, hex',
    zod: NUMERIC,
    pure: 'non-canonical-ip',
    connect: 'loopback',
  },
  { url: 'http://[::1]:8081/', why: 'IPv6 loopback', connect: 'loopback' },
  { url: 'http://[::127.0.0.1]/', why: 'IPv4-compatible loopback', connect: 'loopback' },
  { url: 'http://[64:ff9b::7f00:1]/', why: 'NAT64 loopback', connect: 'loopback' },
  {
    url: 'http://[::ffff:127.0.0.1]/',
    why: 'mapped loopback',
    zod: BRACKETS,
    pure: 'ipv6-literal',
    connect: 'loopback',
  },
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
    url: 'http://nat64.test/',
    why: 'name → NAT64 of the metadata address (DNS64)',
    resolvesTo: ['64:ff9b::a9fe:a9fe'],
    connect: 'link-local',
  },
  {
    url: 'http://teredo.test/',
    why: 'name → Teredo carrying the metadata address',
    resolvesTo: ['2001:0:4136:e378:8000:63bf:5601:5601'],
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
  {
    url: 'http://0x7f.example.test/',
    why: 'a name whose first label looks like hex → loopback',
    resolvesTo: ['127.0.0.1'],
    connect: 'loopback',
  },
  // userinfo, fragment and query tricks, other schemes: the CRD rules reject them at admission
  {
    url: 'http://api.openai.com@169.254.169.254/',
    why: 'userinfo: looks like openai, goes to metadata',
    zod: CRED,
    pure: 'userinfo',
    connect: 'link-local',
  },
  {
    url: 'http://api.openai.com:443@169.254.169.254/',
    why: 'userinfo with a port-like password',
    zod: CRED,
    pure: 'userinfo',
    connect: 'link-local',
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
    connect: 'link-local',
  },
  {
    url: 'http://169.254.169.254?@api.openai.com',
    why: 'query hides the real host',
    zod: QUERY,
    pure: 'link-local',
    connect: 'link-local',
  },
  { url: 'ftp://169.254.169.254/', why: 'other scheme', zod: SCHEME, pure: 'invalid-url' },
  { url: 'file:///etc/passwd', why: 'file scheme', zod: SCHEME, pure: 'invalid-url' },
  { url: 'gopher://169.254.169.254:80/_GET', why: 'gopher scheme', zod: SCHEME, pure: 'invalid-url' },
  {
    url: 'http:///169.254.169.254/',
    why: 'empty authority (WHATWG skips the slashes)',
    zod: SCHEME,
    pure: 'link-local',
    connect: 'link-local',
  },
  {
    url: 'HTTP://169.254.169.254/',
    why: 'upper-case scheme',
    zod: SCHEME,
    pure: 'link-local',
    connect: 'link-local',
  },
];

/** Must keep working: private addresses (in-cluster vLLM) and public names, also inside IPv6 wrappings. */
export const ALLOWED: { url: string; why: string; resolvesTo?: string[]; dials: string }[] = [
  { url: 'http://10.0.0.7:8000/v1', why: 'pod IP (10/8)', dials: '10.0.0.7' },
  { url: 'http://172.16.4.2:8000/v1', why: '172.16/12', dials: '172.16.4.2' },
  { url: 'http://192.168.1.20:11434/v1', why: 'Ollama on 192.168/16', dials: '192.168.1.20' },
  { url: 'http://[fd12:3456::7]:8000/v1', why: 'IPv6 ULA fc00::/7', dials: 'fd12:3456::7' },
  { url: 'http://[64:ff9b::a00:7]:8000/v1', why: 'NAT64 of a private address', dials: '64:ff9b::a00:7' },
  { url: 'http://[2002:808:808::1]/v1', why: '6to4 of a public address', dials: '2002:808:808::1' },
  {
    url: 'http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/v1',
    why: 'Teredo, client 8.8.8.8',
    dials: '2001:0:4136:e378:8000:63bf:f7f7:f7f7',
  },
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
  {
    url: 'http://models.0x7f.example.test:8000/v1',
    why: 'a name with a label that looks like hex, not last',
    resolvesTo: ['10.0.0.9'],
    dials: '10.0.0.9',
  },
];

/** Admitted by the CRD and zod although the cluster policy refuses some at connect time (mode-dependent). */
export const ADMITTED: string[] = [
  ...ALLOWED.map((a) => a.url),
  'http://127.0.0.1:11434/v1',
  'http://[::1]:8000/v1',
  'http://localhost:8000/v1',
  'http://1.2.3.4.nip.io/v1',
  'http://models.example.123abc/v1',
];
