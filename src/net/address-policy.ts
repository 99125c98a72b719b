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
 * IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 64:ff9b:1::/48 and the prefixes of `--nat64-prefixes`, 6to4
 * 2002::/16, Teredo 2001::/32) is judged as that IPv4 address as well (EMBEDDINGS), so no spelling of a refused
 * address gets through.
 *
 * Admission uses the same policy: checkUpstreamUrl() and URL_HOST_RULES for zod and `plugboard verify`, and
 * admissionPatterns() from which src/api/upstream-url.ts writes the CRD's CEL rules.
 */
export interface AddressPolicyOptions {
  allowLoopback?: boolean;
  /** CIDRs (or single addresses) refused on top of the fixed rules. */
  denyCidrs?: readonly string[];
  /** When not empty, only addresses in these CIDRs are allowed (loopback still follows allowLoopback). */
  allowCidrs?: readonly string[];
  /** Network-specific NAT64 prefixes (`--nat64-prefixes`), whose addresses are judged by the IPv4 they carry. */
  nat64Prefixes?: readonly string[];
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

/** The 16 bytes of an IPv6 address, or undefined when it is not IPv6. */
function ipv6Bytes(address: string): Uint8Array | undefined {
  const g = ipv6Groups(address);
  if (!g) return undefined;
  const out = new Uint8Array(16);
  g.forEach((x, i) => {
    out[2 * i] = x >> 8;
    out[2 * i + 1] = x & 255;
  });
  return out;
}

/**
 * An IPv6 address as eight colon-separated groups without `::` (`fe80::1` → `fe80:0:0:0:0:0:0:1`), the text the
 * CRD's CEL matches admissionPatterns() against; `pad` writes each group with four digits.
 */
export function ipv6Expanded(address: string, pad = false): string | undefined {
  return ipv6Groups(address)
    ?.map((g) => (pad ? g.toString(16).padStart(4, '0') : g.toString(16)))
    .join(':');
}

const bit = (bytes: Uint8Array, i: number) => ((bytes[i >> 3] as number) >> (7 - (i & 7))) & 1;

/**
 * An IPv6 form that carries an IPv4 address: the prefix it lives in, where each of the four IPv4 octets sits
 * (bit offset from the most significant bit) and whether the bits are inverted.
 */
export interface Ipv4Embedding {
  name: string;
  prefix: string;
  octets: readonly [number, number, number, number];
  /** Teredo stores the client address with every bit inverted. */
  invert?: boolean;
  /** Addresses inside `prefix` that are not this form (`::` and `::1` are IPv6's own, not IPv4-compatible). */
  except?: string;
  /** Read only when no `--nat64-prefixes` entry holds the address (the operator said which layout is used). */
  unlessDeclared?: boolean;
}

/**
 * Where RFC 6052 puts the IPv4 address for each NAT64 prefix length: right after the prefix, skipping bits
 * 64-71 (the "u" octet, always zero).
 */
const RFC6052_OCTETS: Record<number, readonly [number, number, number, number]> = {
  32: [32, 40, 48, 56],
  40: [40, 48, 56, 72],
  48: [48, 56, 72, 80],
  56: [56, 72, 80, 88],
  64: [72, 80, 88, 96],
  96: [96, 104, 112, 120],
};
export const NAT64_PREFIX_LENGTHS = Object.keys(RFC6052_OCTETS).map(Number);

const LAST_32 = RFC6052_OCTETS[96] as readonly [number, number, number, number];

/**
 * The IPv6 forms that carry an IPv4 address, judged by it. A network-specific NAT64 prefix (RFC 6052) cannot be
 * recognised from the address alone: any /32-/96 prefix may be one. The local-use prefix 64:ff9b:1::/48
 * (RFC 8215) is read in every RFC 6052 layout that fits inside it (/48, /56, /64, /96), and refused when any
 * reading is refused; other network-specific prefixes are named with `--nat64-prefixes`, which also replaces
 * that guess for the addresses they hold.
 */
const EMBEDDINGS: readonly Ipv4Embedding[] = [
  { name: 'IPv4-mapped', prefix: '::ffff:0:0/96', octets: LAST_32 },
  { name: 'IPv4-translated', prefix: '::ffff:0:0:0/96', octets: LAST_32 },
  { name: 'IPv4-compatible', prefix: '::/96', octets: LAST_32, except: '::/127' },
  { name: 'NAT64 well-known prefix', prefix: '64:ff9b::/96', octets: LAST_32 },
  ...[48, 56, 64, 96].map((len) => ({
    name: `NAT64 local-use prefix, /${len} layout`,
    prefix: '64:ff9b:1::/48',
    octets: RFC6052_OCTETS[len] as readonly [number, number, number, number],
    unlessDeclared: true,
  })),
  { name: '6to4', prefix: '2002::/16', octets: [16, 24, 32, 40] },
  { name: 'Teredo', prefix: '2001::/32', octets: LAST_32, invert: true },
];

interface CompiledPrefix {
  bytes: Uint8Array;
  length: number;
}

function compilePrefix(cidr: string): CompiledPrefix {
  const { address, prefix, family } = parseCidr(cidr);
  if (family !== 6) throw new InvalidCidrError(`${JSON.stringify(cidr)} is not an IPv6 prefix`);
  return { bytes: ipv6Bytes(address) as Uint8Array, length: prefix };
}

function inPrefix(bytes: Uint8Array, p: CompiledPrefix): boolean {
  for (let i = 0; i < p.length; i++) if (bit(bytes, i) !== bit(p.bytes, i)) return false;
  return true;
}

interface CompiledEmbedding extends Ipv4Embedding {
  inPrefix: CompiledPrefix;
  notIn?: CompiledPrefix;
}

const compileEmbedding = (e: Ipv4Embedding): CompiledEmbedding => ({
  ...e,
  inPrefix: compilePrefix(e.prefix),
  ...(e.except ? { notIn: compilePrefix(e.except) } : {}),
});

/** The embedding a declared network-specific NAT64 prefix (`--nat64-prefixes`) describes. */
export function nat64Embedding(cidr: string): Ipv4Embedding {
  const { address, prefix, family } = parseCidr(cidr);
  const octets = RFC6052_OCTETS[prefix];
  if (family !== 6 || !octets)
    throw new InvalidCidrError(
      `${JSON.stringify(cidr)} is not a NAT64 prefix: an IPv6 prefix of length ${NAT64_PREFIX_LENGTHS.join(', ')} (RFC 6052), e.g. 2001:db8:64::/96`,
    );
  return { name: `NAT64 prefix ${address}/${prefix}`, prefix: `${address}/${prefix}`, octets };
}

export class AddressPolicy {
  readonly allowLoopback: boolean;
  readonly denyCidrs: readonly string[];
  readonly allowCidrs: readonly string[];
  readonly nat64Prefixes: readonly string[];
  private readonly fixed: { rule: FixedRule; list: BlockList }[];
  private readonly loopback = blockList(LOOPBACK);
  private readonly deny: BlockList;
  private readonly allow: BlockList;
  private readonly embeddings: CompiledEmbedding[];
  private readonly declared: CompiledPrefix[];

  constructor(o: AddressPolicyOptions = {}) {
    this.allowLoopback = o.allowLoopback ?? false;
    const canonical = (c: string) => {
      const p = parseCidr(c);
      return `${p.address}/${p.prefix}`;
    };
    this.denyCidrs = (o.denyCidrs ?? []).map(canonical);
    this.allowCidrs = (o.allowCidrs ?? []).map(canonical);
    const nat64 = (o.nat64Prefixes ?? []).map(nat64Embedding);
    this.nat64Prefixes = nat64.map((e) => e.prefix);
    this.fixed = FIXED_RULES.map((rule) => ({ rule, list: blockList(rule.cidrs) }));
    this.deny = blockList(this.denyCidrs);
    this.allow = blockList(this.allowCidrs);
    this.embeddings = [...EMBEDDINGS, ...nat64].map(compileEmbedding);
    this.declared = this.nat64Prefixes.map(compilePrefix);
  }

  /**
   * Every IPv4 address an IPv6 address carries, one per embedding that holds it (the local-use NAT64 prefix
   * may give several readings). Empty for IPv4 addresses and for IPv6 addresses that carry none.
   */
  ipv4Readings(address: string): string[] {
    const bytes = ipv6Bytes(address);
    if (!bytes) return [];
    const declared = this.declared.some((p) => inPrefix(bytes, p));
    const out = new Set<string>();
    for (const e of this.embeddings) {
      if (!inPrefix(bytes, e.inPrefix) || (e.notIn && inPrefix(bytes, e.notIn))) continue;
      if (e.unlessDeclared && declared) continue;
      const v = e.octets.map((o) => {
        let x = 0;
        for (let i = 0; i < 8; i++) x = (x << 1) | bit(bytes, o + i);
        return e.invert ? 255 - x : x;
      });
      out.add(v.join('.'));
    }
    return [...out];
  }

  /** Both spellings are judged: the address itself (fe80::, ff00::, deny lists in IPv6) and every IPv4 it carries. */
  private forms(bare: string, family: number): [string, 'ipv4' | 'ipv6'][] {
    if (family === 4) return [[bare, 'ipv4']];
    return [[bare, 'ipv6'], ...this.ipv4Readings(bare).map((a): [string, 'ipv4'] => [a, 'ipv4'])];
  }

  /** The always-refused rules an IP address falls under in any of its forms, in the order of FIXED_RULES. */
  fixedRules(address: string): BlockedRule[] {
    const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
    const family = isIP(bare);
    if (family === 0) return [];
    const forms = this.forms(bare, family);
    return this.fixed.filter(({ list }) => forms.some(([a, t]) => list.check(a, t))).map((f) => f.rule.rule);
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
    const forms = this.forms(bare, family);
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
      // An address that carries IPv4 addresses is allowed only when every one is: ::ffff:10.0.0.1 is 10.0.0.1.
      const targets = forms.length > 1 ? forms.slice(1) : forms;
      if (!targets.every(([a, t]) => this.allow.check(a, t)))
        return {
          allowed: false,
          rule: 'allow-cidrs',
          explanation: `outside the allowed ranges (--allow-cidrs ${this.allowCidrs.join(',')})`,
        };
    }
    return { allowed: true };
  }

  /**
   * What admission (the CRD's CEL) compares for one always-refused rule: the IPv4 CIDRs, and for IPv6 one regular
   * expression per IPv6 CIDR and per embedding × IPv4 CIDR, over the address written as eight colon-separated
   * groups of one to four lower-case hex digits (`::` expanded, leading zeros as written). An embedding with
   * `except` comes with that prefix, which the address must be outside of for its pattern to count.
   */
  admissionPatterns(rule: BlockedRule): { ipv4: string[]; ipv6: { pattern: string; except?: string }[] } {
    const fixed = FIXED_RULES.find((r) => r.rule === rule);
    if (!fixed) throw new Error(`${rule} is not an always-refused rule`);
    const cidrs = fixed.cidrs.map(parseCidr);
    const ipv4 = cidrs.filter((c) => c.family === 4);
    const ipv6: { pattern: string; except?: string }[] = cidrs
      .filter((c) => c.family === 6)
      .map((c) => ({ pattern: groupsPattern(prefixBits(ipv6Bytes(c.address) as Uint8Array, c.prefix)) }));
    for (const e of this.embeddings) {
      const p = e.inPrefix;
      for (const c of ipv4) {
        const v4 = c.address.split('.').map(Number);
        const bits = prefixBits(p.bytes, p.length);
        for (let i = 0; i < c.prefix; i++) {
          const value = ((v4[i >> 3] as number) >> (7 - (i & 7))) & 1;
          bits.set((e.octets[i >> 3] as number) + (i & 7), e.invert ? 1 - value : value);
        }
        ipv6.push({ pattern: groupsPattern(bits), ...(e.except ? { except: e.except } : {}) });
      }
    }
    return { ipv4: ipv4.map((c) => `${c.address}/${c.prefix}`), ipv6 };
  }

  /** A short description for logs and docs. */
  describe(): string {
    return [
      `loopback ${this.allowLoopback ? 'allowed' : 'refused'}`,
      this.denyCidrs.length ? `deny ${this.denyCidrs.join(',')}` : '',
      this.allowCidrs.length ? `allow only ${this.allowCidrs.join(',')}` : '',
      this.nat64Prefixes.length ? `NAT64 prefixes ${this.nat64Prefixes.join(',')}` : '',
    ]
      .filter(Boolean)
      .join('; ');
  }
}

/** The first `length` bits of an address, by bit offset. */
function prefixBits(bytes: Uint8Array, length: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < length; i++) m.set(i, bit(bytes, i));
  return m;
}

/** The hex digits a nibble may hold when the given bits of it (offsets 0-3, most significant first) are fixed. */
function nibbleDigits(bits: Map<number, number>, nibble: number): string {
  let mask = 0;
  let value = 0;
  for (let j = 0; j < 4; j++) {
    const b = bits.get(4 * nibble + j);
    if (b === undefined) continue;
    mask |= 8 >> j;
    value |= b ? 8 >> j : 0;
  }
  return [...Array(16).keys()]
    .filter((d) => (d & mask) === value)
    .map((d) => d.toString(16))
    .join('');
}

const charClass = (digits: string) =>
  digits.length === 16 ? '[0-9a-f]' : digits.length === 1 ? digits : `[${digits}]`;

/**
 * A regular expression (RE2 and JavaScript alike) for the addresses whose bits at the given offsets have the
 * given values, written as eight colon-separated groups of one to four hex digits: a group may leave out leading
 * digits the constraint allows to be zero.
 */
function groupsPattern(bits: Map<number, number>): string {
  const groups: string[] = [];
  for (let g = 0; g < 8; g++) {
    const nibbles = [0, 1, 2, 3].map((n) => nibbleDigits(bits, 4 * g + n));
    if (nibbles.every((d) => d.length === 16)) {
      groups.push('[0-9a-f]{1,4}');
      continue;
    }
    // With k leading digits left out (they are zero), the group is written with the other 4 - k.
    const forms: string[] = [];
    for (let k = 0; k < 4; k++) {
      if (!nibbles.slice(0, k).every((d) => d.includes('0'))) break;
      forms.push(nibbles.slice(k).map(charClass).join(''));
    }
    groups.push(forms.length === 1 ? (forms[0] as string) : `(?:${forms.join('|')})`);
  }
  return groups.join(':');
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

/**
 * How an upstream URL's host may be written, as regular expressions that RE2 (the API server's CEL) and JavaScript
 * read alike, so the CRD and zod test the same text. WHATWG URL (undici, `new URL`) turns many spellings into an
 * IP address: numbers in decimal, octal or hex and shortened dotted forms (`2852039166`, `0xa9fea9fe`,
 * `0251.0376.0251.0376`, `169.254.43518`: any host whose last label is a number), percent-encoded and non-ASCII
 * characters that IDNA maps to digits and dots (`%31`, `１６９`, `①`, `。`), tabs and newlines it strips. A spec may
 * only write a DNS name, a dotted quad or a bracketed IPv6 address, so what is written is the address connected to.
 */
export const URL_SYNTAX = {
  schemeHost: '^https?://[^/?#]+',
  userinfo: '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@',
  /** A plain host, an optional port, and nothing else in the authority. */
  plainHost: '^https?://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+)(:[0-9]*)?([/?#]|$)',
  /** The host of a URL that matches plainHost. */
  host: '^https?://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+)',
  bracketed: '^https?://\\[',
  /** A plain host whose last label is a number, which WHATWG URL parses as an IPv4 address. */
  endsInNumber: '^https?://([A-Za-z0-9_.-]*\\.)?(0[xX][0-9A-Fa-f]*|[0-9]+)\\.?(:[0-9]*)?([/?#]|$)',
  canonicalIpv4:
    '^https?://((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(:[0-9]*)?([/?#]|$)',
} as const;
const RE = Object.fromEntries(Object.entries(URL_SYNTAX).map(([k, v]) => [k, new RegExp(v)])) as Record<
  keyof typeof URL_SYNTAX,
  RegExp
>;

/** The host of a URL whose authority is plain (URL_SYNTAX.plainHost), without brackets. */
export function plainHostOf(url: string): string | undefined {
  const host = RE.plainHost.test(url) ? RE.host.exec(url)?.[1] : undefined;
  return host?.replace(/^\[(.*)\]$/, '$1');
}

/** What Kubernetes' CEL `isIP()` accepts: an IP address without a zone that is not IPv4-mapped (::ffff:0:0/96). */
export function isCelIP(host: string): boolean {
  const family = isIP(host);
  if (family === 0 || host.includes('%')) return false;
  const g = family === 6 ? (ipv6Groups(host) as number[]) : undefined;
  return !g || !(g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff);
}

export type UrlHostRule = 'host-notation' | 'non-canonical-ip' | 'ipv6-literal';

/**
 * The rules on how a URL's host is written, in the order they are reported: the CRD (as CEL), zod and
 * checkUpstreamUrl enforce them with these words. `check` is true when the URL passes; each rule leaves to the
 * one before it the URLs it does not apply to, so a bad URL gets one message.
 */
export const URL_HOST_RULES: readonly {
  rule: UrlHostRule;
  message: string;
  check: (url: string) => boolean;
}[] = [
  {
    rule: 'host-notation',
    message:
      'url host must be a DNS name (ASCII letters, digits, "-", "_" and "."), a dotted-quad IPv4 address or an ' +
      'IPv6 address in brackets: no percent-encoding, spaces, tabs or IPv6 zone IDs (%25eth0); write ' +
      'internationalised names in punycode (xn--...)',
    check: (s) => !RE.schemeHost.test(s) || RE.userinfo.test(s) || RE.plainHost.test(s),
  },
  {
    rule: 'non-canonical-ip',
    message:
      'url host ends in a number, so it is read as an IPv4 address (2852039166, 0xa9fea9fe, ' +
      '0251.0376.0251.0376, 169.254.43518 and "169.254.169.254." all mean 169.254.169.254); write an IP address ' +
      'as four decimal numbers without leading zeros or a trailing dot, e.g. http://10.0.0.7:8000/v1',
    check: (s) => !RE.endsInNumber.test(s) || RE.canonicalIpv4.test(s),
  },
  {
    rule: 'ipv6-literal',
    message:
      'url host in brackets must be an IPv6 address, and not an IPv4-mapped one (::ffff:a.b.c.d); write an IPv4 ' +
      'address as it is, e.g. http://10.0.0.7:8000/v1',
    check: (s) => !RE.bracketed.test(s) || !RE.plainHost.test(s) || isCelIP(plainHostOf(s) as string),
  },
];

/** The always-refused rules, each of which admission reports on its own. */
export const FIXED_RULE_NAMES: readonly BlockedRule[] = FIXED_RULES.map((r) => r.rule);

/** The admission message for a literal host under an always-refused rule. */
export function fixedRuleMessage(rule: BlockedRule): string {
  const r = FIXED_RULES.find((x) => x.rule === rule);
  if (!r) throw new Error(`${rule} is not an always-refused rule`);
  return (
    `url host is ${r.explanation}, also when an IPv6 address carries it (IPv4-compatible or -translated, NAT64, ` +
    "6to4, Teredo); point spec.url at the upstream's own address or DNS name"
  );
}

/**
 * True unless the URL's host is written as an IP address (as CEL's isIP() reads it) that falls under the
 * always-refused rule in any of its forms: admission's check, one per rule like the CRD's.
 */
export function passesFixedRule(
  url: string,
  rule: BlockedRule,
  policy: AddressPolicy = ADMISSION_POLICY,
): boolean {
  const host = plainHostOf(url);
  return host === undefined || !isCelIP(host) || !policy.fixedRules(host).includes(rule);
}

export type UrlVerdict =
  | { ok: true; host: string /** the IP when the host is a literal address */; ip?: string }
  | { ok: false; rule: BlockedRule | UrlHostRule | 'invalid-url' | 'userinfo'; message: string };

/**
 * Checks an upstream URL without resolving anything: the scheme, userinfo, how the host is written
 * (URL_HOST_RULES) and, for literal IP hosts, the address policy. Pure, so zod, `plugboard verify` and the
 * operator (for redirect targets) call it; names are checked at connect time, after resolution.
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
  for (const r of URL_HOST_RULES) if (!r.check(url)) return { ok: false, rule: r.rule, message: r.message };
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

/** The CLI flags of `plugboard operator`, `plugboard gateway` and `plugboard verify`, as node:util parseArgs options. */
export const ADDRESS_POLICY_FLAGS = {
  'allow-loopback': { type: 'string' },
  'allow-cidrs': { type: 'string' },
  'deny-cidrs': { type: 'string' },
  'nat64-prefixes': { type: 'string' },
} as const;

export const ADDRESS_POLICY_USAGE = `  --allow-loopback true|false  Connect to upstreams on 127.0.0.0/8 and ::1 (default: false in a cluster, i.e.
                               when KUBERNETES_SERVICE_HOST is set; true elsewhere)
  --deny-cidrs A,B             Refuse upstream addresses in these CIDRs (e.g. the API server's Service range)
  --allow-cidrs A,B            Allow only upstream addresses in these CIDRs (default: all but the fixed rules)
  --nat64-prefixes A,B         The cluster's network-specific NAT64 prefixes (RFC 6052, /32-/96): their addresses
                               are judged by the IPv4 address they carry, like 64:ff9b::/96's
                               Always refused: link-local 169.254.0.0/16 and fe80::/10 (cloud metadata),
                               fd00:ec2::254, 0.0.0.0/8, ::, multicast, 240.0.0.0/4, and IPv6 addresses that
                               carry one of these (IPv4-mapped, -compatible, NAT64, 6to4, Teredo)`;

export interface AddressPolicyFlagValues {
  'allow-loopback'?: string;
  'allow-cidrs'?: string;
  'deny-cidrs'?: string;
  'nat64-prefixes'?: string;
}

/**
 * The policy the flags describe. Loopback is refused by default in a cluster (where KUBERNETES_SERVICE_HOST is
 * set, unless `inCluster` says otherwise, as `plugboard verify --policy` does) and allowed elsewhere.
 */
export function policyFromFlags(
  values: AddressPolicyFlagValues,
  env: NodeJS.ProcessEnv = process.env,
  inCluster: boolean = Boolean(env.KUBERNETES_SERVICE_HOST),
): AddressPolicy {
  const raw = values['allow-loopback'];
  if (raw !== undefined && raw !== 'true' && raw !== 'false')
    throw new InvalidCidrError(`--allow-loopback must be true or false, not ${JSON.stringify(raw)}`);
  const allowLoopback = raw === undefined ? !inCluster : raw === 'true';
  const nat64Prefixes = parseCidrList(values['nat64-prefixes'], '--nat64-prefixes');
  for (const p of nat64Prefixes) {
    try {
      nat64Embedding(p);
    } catch (err) {
      throw new InvalidCidrError(`--nat64-prefixes: ${(err as Error).message}`);
    }
  }
  return new AddressPolicy({
    allowLoopback,
    allowCidrs: parseCidrList(values['allow-cidrs'], '--allow-cidrs'),
    denyCidrs: parseCidrList(values['deny-cidrs'], '--deny-cidrs'),
    nat64Prefixes,
  });
}
