import { BlockList, isIP } from 'node:net';

/**
 * Which upstream addresses Plugboard may connect to: one policy for admission-time checks of literal IP hosts
 * and for every connection the operator (verification) and the gateway (proxied requests) open.
 *
 * Order of the rules (the first that matches decides):
 *   1. always refused, whatever the flags: unspecified (0.0.0.0/8, ::), link-local (169.254.0.0/16 with the cloud
 *      metadata address 169.254.169.254, fe80::/10), cloud metadata addresses outside link-local
 *      (fd00:ec2::254, 100.100.100.200, 168.63.129.16), multicast (224.0.0.0/4, ff00::/8), reserved and
 *      broadcast (240.0.0.0/4);
 *   2. `denyCidrs` (`--deny-cidrs`);
 *   3. loopback (127.0.0.0/8, ::1): allowed only with `allowLoopback` (`--allow-loopback`);
 *   4. when `allowCidrs` (`--allow-cidrs`) is not empty, only addresses inside it;
 *   5. everything else, private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) included, so an in-cluster vLLM on
 *      a pod or Service address keeps working.
 * An IPv6 address that carries an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d,
 * IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16) is judged as that IPv4
 * address as well, so no spelling of a refused address gets through.
 */
export interface AddressPolicyOptions {
  allowLoopback?: boolean;
  /** CIDRs (or single addresses) refused on top of the fixed rules. */
  denyCidrs?: readonly string[];
  /** When not empty, only addresses in these CIDRs are allowed (loopback still follows allowLoopback). */
  allowCidrs?: readonly string[];
}

export type BlockedRule =
  | 'unspecified'
  | 'link-local'
  | 'cloud-metadata'
  | 'multicast'
  | 'reserved'
  | 'loopback'
  | 'deny-cidrs'
  | 'allow-cidrs';

export type AddressVerdict =
  | { allowed: true }
  | {
      allowed: false;
      rule: BlockedRule;
      /** What the rule is, in words a person acts on, e.g. "link-local (169.254.0.0/16, ...)". */
      explanation: string;
    };

interface FixedRule {
  rule: BlockedRule;
  cidrs: string[];
  explanation: string;
}

/** Refused whatever the flags say. */
const FIXED_RULES: FixedRule[] = [
  {
    rule: 'cloud-metadata',
    cidrs: ['fd00:ec2::254/128', '100.100.100.200/32', '168.63.129.16/32'],
    explanation: 'a cloud metadata address (fd00:ec2::254, 100.100.100.200, 168.63.129.16), always refused',
  },
  {
    rule: 'link-local',
    cidrs: ['169.254.0.0/16', 'fe80::/10'],
    explanation:
      'link-local (169.254.0.0/16, which holds the cloud metadata address 169.254.169.254, and fe80::/10), always refused',
  },
  {
    rule: 'unspecified',
    cidrs: ['0.0.0.0/8', '::/128'],
    explanation: 'an unspecified or "this network" address (0.0.0.0/8, ::), always refused',
  },
  {
    rule: 'multicast',
    cidrs: ['224.0.0.0/4', 'ff00::/8'],
    explanation: 'multicast (224.0.0.0/4, ff00::/8), always refused',
  },
  {
    rule: 'reserved',
    cidrs: ['240.0.0.0/4'],
    explanation: 'reserved or broadcast (240.0.0.0/4, 255.255.255.255), always refused',
  },
];

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

export class InvalidCidrError extends Error {}

/** Parses `10.0.0.0/8`, `fd00::/8` or a single address; throws InvalidCidrError with a readable message. */
export function parseCidr(text: string): { address: string; prefix: number; family: 4 | 6 } {
  const s = text.trim();
  const slash = s.indexOf('/');
  const address = (slash < 0 ? s : s.slice(0, slash)).replace(/^\[(.*)\]$/, '$1');
  const family = isIP(address);
  if (family === 0 || address.includes('%'))
    throw new InvalidCidrError(`${JSON.stringify(text)} is not an IP address or CIDR (e.g. 10.0.0.0/8)`);
  const max = family === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : s.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix >= 0 && prefix <= max))
    throw new InvalidCidrError(`${JSON.stringify(text)} has an invalid prefix length (0-${max})`);
  return { address, prefix, family: family as 4 | 6 };
}

/** Parses a comma-separated flag value (`--allow-cidrs`, `--deny-cidrs`); empty entries are ignored. */
export function parseCidrList(value: string | undefined, flag = 'CIDR list'): string[] {
  if (!value) return [];
  const out: string[] = [];
  for (const part of value.split(',')) {
    if (!part.trim()) continue;
    try {
      const c = parseCidr(part);
      out.push(`${c.address}/${c.prefix}`);
    } catch (err) {
      throw new InvalidCidrError(`${flag}: ${(err as Error).message}`);
    }
  }
  return out;
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const { address, prefix, family } = parseCidr(c);
    list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** The 8 16-bit groups of an IPv6 address (zone id removed), or undefined when it is not IPv6. */
export function ipv6Groups(address: string): number[] | undefined {
  let s = address.replace(/^\[(.*)\]$/, '$1');
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (isIP(s) !== 6) return undefined;
  // A trailing dotted quad becomes two groups.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const parse = (p: string) => (p ? p.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
}

const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;

/** The IPv4 address an IPv6 address stands for or carries (mapped, translated, compatible, NAT64, 6to4), if any. */
export function embeddedIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (!g) return undefined;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const zeros = (...xs: number[]) => xs.every((x) => x === 0);
  // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated)
  if (zeros(g0, g1, g2, g3) && ((g4 === 0 && g5 === 0xffff) || (g4 === 0xffff && g5 === 0)))
    return v4(g6, g7);
  // ::a.b.c.d (compatible, deprecated); :: and ::1 are IPv6's own unspecified and loopback
  if (zeros(g0, g1, g2, g3, g4, g5) && !(g6 === 0 && g7 <= 1)) return v4(g6, g7);
  // NAT64: 64:ff9b::/96 (well-known) and 64:ff9b:1::/48 (local use, address in the last 32 bits)
  if (g0 === 0x64 && g1 === 0xff9b && (zeros(g2, g3, g4, g5) || g2 === 1)) return v4(g6, g7);
  // 6to4: 2002:AABB:CCDD::/48 carries the IPv4 address AABB:CCDD
  if (g0 === 0x2002) return v4(g1, g2);
  return undefined;
}

export class AddressPolicy {
  readonly allowLoopback: boolean;
  readonly denyCidrs: readonly string[];
  readonly allowCidrs: readonly string[];
  private readonly fixed: { rule: FixedRule; list: BlockList }[];
  private readonly loopback = blockList(LOOPBACK);
  private readonly deny: BlockList;
  private readonly allow: BlockList;

  constructor(o: AddressPolicyOptions = {}) {
    this.allowLoopback = o.allowLoopback ?? false;
    this.denyCidrs = (o.denyCidrs ?? []).map((c) => {
      const p = parseCidr(c);
      return `${p.address}/${p.prefix}`;
    });
    this.allowCidrs = (o.allowCidrs ?? []).map((c) => {
      const p = parseCidr(c);
      return `${p.address}/${p.prefix}`;
    });
    this.fixed = FIXED_RULES.map((rule) => ({ rule, list: blockList(rule.cidrs) }));
    this.deny = blockList(this.denyCidrs);
    this.allow = blockList(this.allowCidrs);
  }

  /** Judges one IP address (v4 or v6, brackets and zone ids allowed). A non-IP string is refused. */
  check(address: string): AddressVerdict {
    const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
    const family = isIP(bare);
    if (family === 0)
      return {
        allowed: false,
        rule: 'unspecified',
        explanation: `${JSON.stringify(address)} is not an IP address`,
      };
    const embedded = family === 6 ? embeddedIPv4(bare) : undefined;
    // Both spellings are judged: the IPv6 one (fe80::, ff00::, deny lists in IPv6) and the IPv4 it carries.
    const forms: [string, 'ipv4' | 'ipv6'][] = [[bare, family === 4 ? 'ipv4' : 'ipv6']];
    if (embedded) forms.push([embedded, 'ipv4']);
    const any = (list: BlockList) => forms.some(([a, t]) => list.check(a, t));

    for (const { rule, list } of this.fixed)
      if (any(list)) return { allowed: false, rule: rule.rule, explanation: rule.explanation };
    if (any(this.deny))
      return {
        allowed: false,
        rule: 'deny-cidrs',
        explanation: `in the denied ranges (--deny-cidrs ${this.denyCidrs.join(',')})`,
      };
    if (any(this.loopback)) {
      if (this.allowLoopback) return { allowed: true };
      return {
        allowed: false,
        rule: 'loopback',
        explanation:
          'loopback (127.0.0.0/8, ::1), refused in cluster mode unless the operator and gateway run with --allow-loopback true',
      };
    }
    if (this.allowCidrs.length > 0) {
      // An embedded IPv4 address must itself be allowed: ::ffff:10.0.0.1 is 10.0.0.1.
      const target: [string, 'ipv4' | 'ipv6'] = embedded
        ? [embedded, 'ipv4']
        : (forms[0] as [string, 'ipv4' | 'ipv6']);
      if (!this.allow.check(target[0], target[1]))
        return {
          allowed: false,
          rule: 'allow-cidrs',
          explanation: `outside the allowed ranges (--allow-cidrs ${this.allowCidrs.join(',')})`,
        };
    }
    return { allowed: true };
  }

  /** A short description for logs and docs. */
  describe(): string {
    return [
      `loopback ${this.allowLoopback ? 'allowed' : 'refused'}`,
      this.denyCidrs.length ? `deny ${this.denyCidrs.join(',')}` : '',
      this.allowCidrs.length ? `allow only ${this.allowCidrs.join(',')}` : '',
    ]
      .filter(Boolean)
      .join('; ');
  }
}

/** The rules every mode shares (loopback allowed): what admission can check without knowing the mode. */
export const ADMISSION_POLICY = new AddressPolicy({ allowLoopback: true });

/**
 * The policy used when nothing was configured: loopback allowed, as standalone mode and tests need (their
 * upstreams are local). `plugboard operator` and `plugboard gateway` configure their own at start-up, with
 * loopback refused unless `--allow-loopback` is given.
 */
let processPolicy = new AddressPolicy({ allowLoopback: true });

export function setAddressPolicy(policy: AddressPolicy): void {
  processPolicy = policy;
}

export function addressPolicy(): AddressPolicy {
  return processPolicy;
}

/** The error a refused connection fails with; `code` is what classifiers match. */
export class BlockedAddressError extends Error {
  readonly code = 'ERR_PLUGBOARD_BLOCKED_ADDRESS';
  /** The host as written in the URL. */
  readonly host: string;
  /** The address it is (or resolved to) that the policy refused. */
  readonly address: string;
  readonly rule: BlockedRule;
  readonly explanation: string;
  constructor(host: string, address: string, verdict: AddressVerdict & { allowed: false }) {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    super(
      bare === address
        ? `${host} is ${verdict.explanation}`
        : `${host} resolves to ${address}, which is ${verdict.explanation}`,
    );
    this.name = 'BlockedAddressError';
    this.host = host;
    this.address = address;
    this.rule = verdict.rule;
    this.explanation = verdict.explanation;
  }
}

export function isBlockedAddressError(err: unknown): err is BlockedAddressError {
  return (err as { code?: unknown } | null)?.code === 'ERR_PLUGBOARD_BLOCKED_ADDRESS';
}

// Numeric host spellings that WHATWG URL and getaddrinfo read as IPv4 (2852039166, 0xa9fea9fe, 0251.0376.0251.0376,
// 169.254.43518): any host whose last label is a number. Only the canonical dotted quad is acceptable in a spec.
const NUMERIC_LAST_LABEL = /(^|\.)(0[xX][0-9a-fA-F]*|[0-9]+)\.?$/;
const CANONICAL_IPV4 =
  /^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;

export type UrlVerdict =
  | { ok: true; host: string /** the IP when the host is a literal address */; ip?: string }
  | { ok: false; rule: BlockedRule | 'invalid-url' | 'userinfo' | 'non-canonical-ip'; message: string };

/**
 * Checks an upstream URL without resolving anything: the scheme, userinfo, non-canonical numeric hosts and (for
 * literal IP hosts) the address policy. Pure, so zod, `plugboard verify` and the CLI can call it; names are
 * checked again at connect time, after resolution.
 */
export function checkUpstreamUrl(url: string, policy: AddressPolicy = ADMISSION_POLICY): UrlVerdict {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, rule: 'invalid-url', message: 'url must be a valid absolute URL' };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    return { ok: false, rule: 'invalid-url', message: 'url must start with http:// or https://' };
  if (u.username || u.password)
    return {
      ok: false,
      rule: 'userinfo',
      message:
        'url must not contain credentials (user:password@); put the API key in the Secret named by apiKeySecretRef',
    };
  // What was written, before WHATWG normalised it: the authority up to the port. WHATWG ends the authority at / ? # and, for http(s), at a backslash too.
  const written = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#\\]*)/.exec(url)?.[1] ?? '';
  const writtenHost = written.startsWith('[')
    ? written.slice(0, written.indexOf(']') + 1)
    : written.replace(/:\d*$/, '');
  if (
    !writtenHost.startsWith('[') &&
    NUMERIC_LAST_LABEL.test(writtenHost) &&
    !CANONICAL_IPV4.test(writtenHost)
  )
    return {
      ok: false,
      rule: 'non-canonical-ip',
      message: `url host ${JSON.stringify(writtenHost)} is an IP address in a non-canonical form (decimal, octal, hex or shortened); write it as a dotted quad like ${u.hostname}`,
    };
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 0) return { ok: true, host: u.hostname };
  const verdict = policy.check(host);
  if (!verdict.allowed)
    return {
      ok: false,
      rule: verdict.rule,
      message: `url host ${u.hostname} is ${verdict.explanation}; Plugboard does not connect there`,
    };
  return { ok: true, host: u.hostname, ip: host };
}

/** The CLI flags of `plugboard operator` and `plugboard gateway`, as node:util parseArgs options. */
export const ADDRESS_POLICY_FLAGS = {
  'allow-loopback': { type: 'string' },
  'allow-cidrs': { type: 'string' },
  'deny-cidrs': { type: 'string' },
} as const;

export const ADDRESS_POLICY_USAGE = `  --allow-loopback true|false  Connect to upstreams on 127.0.0.0/8 and ::1 (default: false in a cluster, i.e.
                               when KUBERNETES_SERVICE_HOST is set; true elsewhere)
  --deny-cidrs A,B             Refuse upstream addresses in these CIDRs (e.g. the API server's Service range)
  --allow-cidrs A,B            Allow only upstream addresses in these CIDRs (default: all but the fixed rules)
                               Always refused: link-local 169.254.0.0/16 and fe80::/10 (cloud metadata),
                               fd00:ec2::254, 0.0.0.0/8, ::, multicast, 240.0.0.0/4`;

/** The policy the flags describe; loopback defaults to allowed only outside a cluster. */
export function policyFromFlags(
  values: { 'allow-loopback'?: string; 'allow-cidrs'?: string; 'deny-cidrs'?: string },
  env: NodeJS.ProcessEnv = process.env,
): AddressPolicy {
  const raw = values['allow-loopback'];
  if (raw !== undefined && raw !== 'true' && raw !== 'false')
    throw new InvalidCidrError(`--allow-loopback must be true or false, not ${JSON.stringify(raw)}`);
  const allowLoopback = raw === undefined ? !env.KUBERNETES_SERVICE_HOST : raw === 'true';
  return new AddressPolicy({
    allowLoopback,
    allowCidrs: parseCidrList(values['allow-cidrs'], '--allow-cidrs'),
    denyCidrs: parseCidrList(values['deny-cidrs'], '--deny-cidrs'),
  });
}
