import { randomBytes } from 'node:crypto';
import { createServer as createHttp, type Server } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { BlockList, isIP } from 'node:net';
import fc from 'fast-check';
import { buildConnector } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProviderConnectionSpec } from '../../src/api/provider-connection.ts';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import { selfSignedCertificate } from '../../src/mock-provider/tls.ts';
import {
  ADMISSION_POLICY,
  AddressPolicy,
  addressPolicy,
  checkUpstreamUrl,
  FIXED_RULE_NAMES,
  InvalidCidrError,
  ipv6Expanded,
  policyFromFlags,
  setAddressPolicy,
} from '../../src/net/address-policy.ts';
import { type Resolver, setConnectHooks } from '../../src/net/safe-connect.ts';
import { type VerifyNetOptions, verifyConnection } from '../../src/operator/verification/verify.ts';
import { conn, metricValue, startGateway } from '../gateway/helpers.ts';
import { propertyRun } from '../support/property.ts';
import { ipv6Literal, spelling } from './address-spellings.ts';
import { ADMITTED, ALLOWED, HOSTILE } from './ssrf-corpus.ts';

const CANARY = `sk-canary-${randomBytes(12).toString('hex')}`;
const CLUSTER = new AddressPolicy({ allowLoopback: false });
const LOCAL = new AddressPolicy({ allowLoopback: true });

// --- an injected resolver and a dialler that never leaves loopback ---------------------------------------

const DNS: Record<string, string[]> = { 'upstream.test': ['127.0.0.1'], 'wrong.test': ['127.0.0.1'] };
for (const h of [...HOSTILE, ...ALLOWED]) if (h.resolvesTo) DNS[new URL(h.url).hostname] = h.resolvesTo;
const resolved: string[] = [];
const resolve: Resolver = async (name) => {
  resolved.push(name);
  const answer = DNS[name];
  if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return answer.map((address) => ({ address, family: isIP(address) }));
};

/** Every address the connector asked to dial. Only loopback is really dialled; the rest fail at once. */
const dialled: string[] = [];
const realDial = buildConnector({ timeout: 2000 });
const isLoopback = (a: string) => a.startsWith('127.') || a === '::1';
const dial: buildConnector.connector = (opts, cb) => {
  dialled.push(opts.hostname);
  if (!isLoopback(opts.hostname)) {
    process.nextTick(
      cb,
      Object.assign(new Error(`test dialler: not dialling ${opts.hostname}`), { code: 'ETESTNODIAL' }),
      null,
    );
    return;
  }
  return realDial(opts, cb);
};
const net = (policy: AddressPolicy, extra: Partial<VerifyNetOptions> = {}): VerifyNetOptions => ({
  policy,
  resolve,
  connect: dial,
  ...extra,
});
afterEach(() => {
  dialled.length = 0;
  resolved.length = 0;
});

const servers: Server[] = [];
const mocks: MockProvider[] = [];
afterAll(async () => {
  await Promise.all(mocks.map((m) => m.close()));
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

/** A server that answers every request with a redirect and counts what it got. */
async function redirector(status: number, location: () => string) {
  const state = { requests: 0, port: 0 };
  state.port = await listen(
    createHttp((req, res) => {
      state.requests++;
      req.resume();
      res.writeHead(status, { location: location(), 'content-type': 'text/plain' }).end('moved');
    }),
  );
  return state;
}

// --- the policy itself --------------------------------------------------------------------------------------

describe('the address policy', () => {
  it('refuses the fixed ranges whatever the flags, allows private ranges by default', () => {
    const wide = new AddressPolicy({ allowLoopback: true, allowCidrs: ['0.0.0.0/0', '::/0'] });
    for (const a of ['169.254.169.254', 'fe80::1', 'fd00:ec2::254', '0.0.0.0', '::', '224.0.0.1', 'ff02::1'])
      expect(wide.check(a).allowed, a).toBe(false);
    for (const a of [
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.0.1',
      'fc00::1',
      'fd12::1',
      '8.8.8.8',
    ])
      expect(CLUSTER.check(a), a).toEqual({ allowed: true });
  });

  it('judges an IPv6 address by the IPv4 address it carries', () => {
    for (const a of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::127.0.0.2', '64:ff9b::7f00:1'])
      expect(CLUSTER.check(a)).toMatchObject({ allowed: false, rule: 'loopback' });
    const deny = new AddressPolicy({ denyCidrs: ['10.0.0.0/8'] });
    expect(deny.check('::ffff:10.1.1.1')).toMatchObject({ allowed: false, rule: 'deny-cidrs' });
    const allow = new AddressPolicy({ allowCidrs: ['10.0.0.0/8'] });
    expect(allow.check('::ffff:10.1.1.1')).toEqual({ allowed: true });
    expect(allow.check('::ffff:11.1.1.1')).toMatchObject({ allowed: false, rule: 'allow-cidrs' });
  });

  it('--deny-cidrs beats private defaults; --allow-cidrs narrows; loopback follows --allow-loopback', () => {
    const p = new AddressPolicy({ denyCidrs: ['10.96.0.0/12'], allowCidrs: ['10.0.0.0/8'] });
    expect(p.check('10.96.0.1')).toMatchObject({ allowed: false, rule: 'deny-cidrs' });
    expect(p.check('10.1.2.3')).toEqual({ allowed: true });
    expect(p.check('192.168.1.1')).toMatchObject({ allowed: false, rule: 'allow-cidrs' });
    expect(p.check('127.0.0.1')).toMatchObject({ allowed: false, rule: 'loopback' });
    const local = new AddressPolicy({ allowLoopback: true, allowCidrs: ['10.0.0.0/8'] });
    expect(local.check('::1')).toEqual({ allowed: true });
  });

  it('flags: loopback refused by default in a cluster, allowed elsewhere; bad CIDRs are errors', () => {
    expect(policyFromFlags({}, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }).allowLoopback).toBe(false);
    expect(policyFromFlags({}, {}).allowLoopback).toBe(true);
    expect(
      policyFromFlags({ 'allow-loopback': 'true' }, { KUBERNETES_SERVICE_HOST: 'x' }).allowLoopback,
    ).toBe(true);
    expect(policyFromFlags({ 'allow-loopback': 'false' }, {}).allowLoopback).toBe(false);
    const p = policyFromFlags({ 'deny-cidrs': '10.96.0.0/12, fd00::/8', 'allow-cidrs': '10.0.0.0/8' }, {});
    expect(p.denyCidrs).toEqual(['10.96.0.0/12', 'fd00::/8']);
    expect(() => policyFromFlags({ 'deny-cidrs': '10.0.0.0/33' })).toThrow(/--deny-cidrs: .*prefix/);
    expect(() => policyFromFlags({ 'allow-cidrs': 'vllm.local' })).toThrow(InvalidCidrError);
    expect(() => policyFromFlags({ 'allow-loopback': 'yes' })).toThrow(/true or false/);
  });

  it('the process default (standalone, tests) allows loopback', () => {
    expect(addressPolicy().allowLoopback).toBe(true);
  });
});

// --- admission: zod (= the CRD's CEL rules) and the pure URL check --------------------------------------------

describe(`admission: ${HOSTILE.length} hostile URLs through zod and checkUpstreamUrl`, () => {
  for (const h of HOSTILE) {
    it(`${h.why}: ${h.url}`, () => {
      const parsed = ProviderConnectionSpec.safeParse({ url: h.url });
      if (h.zod) {
        expect(parsed.success).toBe(false);
        expect(parsed.error?.issues.map((i) => i.message).join('\n')).toContain(h.zod);
      } else {
        expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
      }
      const pure = checkUpstreamUrl(h.url);
      if (h.pure) expect(pure).toMatchObject({ ok: false, rule: h.pure });
      else expect(pure.ok).toBe(true);
    });
  }
  it('private and public addresses, names and loopback pass admission', () => {
    for (const url of ADMITTED) {
      const parsed = ProviderConnectionSpec.safeParse({ url });
      expect(parsed.success, `${url}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
      expect(checkUpstreamUrl(url).ok, url).toBe(true);
    }
  });
});

describe('admission refuses every spelling WHATWG URL reads as a refused address', () => {
  const fixedRulesOf = (url: string) => {
    const host = URL.canParse(url) ? new URL(url).hostname.replace(/^\[(.*)\]$/, '$1') : '';
    return isIP(host) ? ADMISSION_POLICY.fixedRules(host) : [];
  };
  it('generated notations and IPv6 embeddings', () => {
    fc.assert(
      fc.property(spelling, (s) => {
        const parsed = ProviderConnectionSpec.safeParse({ url: s.url });
        const refused = fixedRulesOf(s.url);
        // Safety: whatever WHATWG URL turns into a refused address is refused, however it is written.
        if (refused.length > 0 || !URL.canParse(s.url))
          expect(parsed.success, `${s.how}: ${s.url}`).toBe(false);
        // No false alarms: an allowed address written literally passes.
        if (s.literal && refused.length === 0) expect(parsed.success, `${s.how}: ${s.url}`).toBe(true);
        // The pure check agrees with zod.
        expect(checkUpstreamUrl(s.url).ok, s.url).toBe(parsed.success);
      }),
      propertyRun('admission of generated spellings', 2000),
    );
  });

  it('the NAT64 local-use prefix is read in every RFC 6052 layout, unless --nat64-prefixes names the layout', () => {
    // 64:ff9b:1::a00:7 is 10.0.0.7 in the /96 layout but 0.0.x.x in the /48 one.
    expect(ADMISSION_POLICY.check('64:ff9b:1::a00:7')).toMatchObject({ allowed: false, rule: 'unspecified' });
    const declared = new AddressPolicy({ nat64Prefixes: ['64:ff9b:1::/96'] });
    expect(declared.check('64:ff9b:1::a00:7')).toEqual({ allowed: true });
    expect(declared.check('64:ff9b:1::a9fe:a9fe')).toMatchObject({ allowed: false, rule: 'link-local' });
    // A network-specific prefix is not recognisable from its bits; named, it is read like the well-known one.
    const nsp = new AddressPolicy({ nat64Prefixes: ['2001:db8:64::/96', '2001:db8:100::/40'] });
    expect(new AddressPolicy().check('2001:db8:64::a9fe:a9fe')).toEqual({ allowed: true });
    expect(nsp.check('2001:db8:64::a9fe:a9fe')).toMatchObject({ allowed: false, rule: 'link-local' });
    // /40: octets at bits 40-63 and 72-79, the u octet (64-71) skipped
    expect(nsp.check('2001:db8:1a9:fea9:fe::')).toMatchObject({ allowed: false, rule: 'link-local' });
    expect(nsp.ipv4Readings('2001:db8:1a9:fea9:fe::')).toEqual(['169.254.169.254']);
    expect(() => new AddressPolicy({ nat64Prefixes: ['2001:db8::/72'] })).toThrow(/not a NAT64 prefix/);
    expect(() => policyFromFlags({ 'nat64-prefixes': '10.0.0.0/8' })).toThrow(/--nat64-prefixes: .*NAT64/);
  });

  it("the CRD's IPv6 patterns say what the policy says", () => {
    const inCidr = (address: string, cidr: string) => {
      const [a, p] = cidr.split('/') as [string, string];
      const list = new BlockList();
      list.addSubnet(a, Number(p), 'ipv6');
      return list.check(address, 'ipv6');
    };
    const patterns = FIXED_RULE_NAMES.map((rule) => ({
      rule,
      ...ADMISSION_POLICY.admissionPatterns(rule),
    }));
    const hosts = fc.oneof(
      ipv6Literal,
      spelling
        .filter((s) => s.url.startsWith('http://['))
        .map((s) => (new URL(s.url).hostname as string).slice(1, -1)),
      fc.constantFrom('::', '::1', '::2', 'fd00:ec2::254', 'fd00:ec2::255', 'ff00::', 'fe80::', 'febf::'),
    );
    fc.assert(
      fc.property(hosts, (h) => {
        for (const text of [ipv6Expanded(h) as string, ipv6Expanded(h, true) as string]) {
          for (const p of patterns) {
            const says = p.ipv6.some(
              (x) => new RegExp(`^(${x.pattern})$`).test(text) && !(x.except && inCidr(h, x.except)),
            );
            expect(says, `${p.rule}: ${h} as ${text}`).toBe(ADMISSION_POLICY.fixedRules(h).includes(p.rule));
          }
        }
      }),
      propertyRun("the CRD's IPv6 patterns", 2000),
    );
  });
});

// --- connect time: the operator's verification ---------------------------------------------------------------

// Every hostile URL WHATWG can parse, admitted or not: the connect-time check holds on its own.
const connectable = HOSTILE.filter((h) => h.connect);

describe(`verification refuses ${connectable.length} hostile URLs before dialling (cluster mode)`, () => {
  for (const h of connectable) {
    it(`${h.why}: ${h.url} → BlockedAddress (${h.connect})`, async () => {
      const out = await verifyConnection(
        { provider: 'OpenAI', url: h.url, apiKey: CANARY, timeoutMs: 2000 },
        undefined,
        net(CLUSTER),
      );
      expect(out.reason).toBe('BlockedAddress');
      expect(dialled).toEqual([]);
      const host = new URL(h.url).hostname;
      expect(out.message).toContain(host);
      expect(out.message).toContain(
        h.connect === 'cloud-metadata' ? 'cloud metadata' : (h.connect as string),
      );
      expect(out.message).not.toContain(CANARY);
      if (h.resolvesTo) expect(resolved).toEqual([host]);
    });
  }

  it('the message is actionable: loopback names --allow-loopback, fixed ranges say never', async () => {
    const lo = await verifyConnection(
      { provider: 'OpenAI', url: 'http://127.0.0.1:9/v1', timeoutMs: 2000 },
      undefined,
      net(CLUSTER),
    );
    expect(lo.message).toMatch(/^refused to connect: 127\.0\.0\.1 is loopback .*--allow-loopback/);
    const md = await verifyConnection(
      { provider: 'OpenAI', url: 'http://metadata.google.internal/v1', timeoutMs: 2000 },
      undefined,
      net(CLUSTER),
    );
    expect(md.message).toContain(
      'metadata.google.internal resolves to 169.254.169.254, which is link-local (169.254.0.0/16, which holds the cloud metadata address',
    );
    expect(md.message).toContain('never allowed');
  });

  it('--deny-cidrs and --allow-cidrs refuse with their own rule', async () => {
    const deny = await verifyConnection(
      { provider: 'OpenAI', url: 'http://vllm.ai.svc.cluster.local:8000/v1', timeoutMs: 2000 },
      undefined,
      net(new AddressPolicy({ denyCidrs: ['10.96.0.0/12'] })),
    );
    expect(deny).toMatchObject({ reason: 'BlockedAddress' });
    expect(deny.message).toContain('--deny-cidrs 10.96.0.0/12');
    const allow = await verifyConnection(
      { provider: 'OpenAI', url: 'http://192.168.1.20:11434/v1', timeoutMs: 2000 },
      undefined,
      net(new AddressPolicy({ allowCidrs: ['10.0.0.0/8'] })),
    );
    expect(allow.message).toContain('--allow-cidrs 10.0.0.0/8');
    expect(dialled).toEqual([]);
  });

  for (const a of ALLOWED) {
    it(`still dials ${a.why}: ${a.url} → ${a.dials}`, async () => {
      const out = await verifyConnection(
        { provider: 'OpenAI', url: a.url, timeoutMs: 2000 },
        undefined,
        net(CLUSTER),
      );
      // The test dialler refuses non-loopback addresses: reaching it proves the policy let the address through.
      expect(out.reason).toBe('UpstreamError');
      expect(out.message).toContain('ETESTNODIAL');
      expect(dialled).toEqual([a.dials]);
    });
  }

  it('loopback works when allowed: literal, and a name resolving to it', async () => {
    const m = await startMockProvider({ profile: 'openai', apiKey: CANARY });
    mocks.push(m);
    const port = new URL(m.url).port;
    DNS['vllm.test'] = ['127.0.0.1'];
    for (const url of [m.url, `http://vllm.test:${port}/v1`]) {
      const out = await verifyConnection(
        { provider: 'OpenAI', url, apiKey: CANARY, timeoutMs: 2000 },
        undefined,
        net(LOCAL),
      );
      expect(out.reason, url).toBe('Verified');
    }
    expect(m.requests.at(-1)?.headers.host).toBe(`vllm.test:${port}`);
    expect(dialled).toEqual(['127.0.0.1', '127.0.0.1']);
  });

  it('no DNS rebinding: one resolution per connection, and the socket goes to the checked address', async () => {
    const m = await startMockProvider({ profile: 'openai' });
    mocks.push(m);
    const port = new URL(m.url).port;
    let answers = 0;
    const rebinding: Resolver = async (name) => {
      resolved.push(name);
      // first answer passes the check; every later one is the metadata address
      return [{ address: answers++ === 0 ? '127.0.0.1' : '169.254.169.254', family: 4 }];
    };
    const first = await verifyConnection(
      { provider: 'OpenAI', url: `http://rebind.test:${port}/v1`, timeoutMs: 2000 },
      undefined,
      net(LOCAL, { resolve: rebinding }),
    );
    expect(first.reason).toBe('Verified');
    expect(resolved).toEqual(['rebind.test']);
    expect(dialled).toEqual(['127.0.0.1']);
    const second = await verifyConnection(
      { provider: 'OpenAI', url: `http://rebind.test:${port}/v1`, timeoutMs: 2000 },
      undefined,
      net(LOCAL, { resolve: rebinding }),
    );
    expect(second.reason).toBe('BlockedAddress');
    expect(dialled).toEqual(['127.0.0.1']);
  });

  it('TLS keeps the name: SNI and certificate checks use the host, the socket the checked address', async () => {
    const { key, cert } = await selfSignedCertificate(['upstream.test']);
    const port = await listen(
      createHttps({ key, cert }, (req, res) => {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(
            JSON.stringify({ data: [{ id: `sni-${(req.socket as { servername?: string }).servername}` }] }),
          );
      }) as unknown as Server,
    );
    const ok = await verifyConnection(
      { provider: 'OpenAI', url: `https://upstream.test:${port}/v1`, timeoutMs: 2000 },
      undefined,
      { policy: LOCAL, resolve, ca: cert },
    );
    expect(ok).toMatchObject({ reason: 'Verified', models: [{ id: 'sni-upstream.test' }] });
    // Same address, another name: the certificate (which also names 127.0.0.1) is checked against the name.
    const wrong = await verifyConnection(
      { provider: 'OpenAI', url: `https://wrong.test:${port}/v1`, timeoutMs: 2000 },
      undefined,
      { policy: LOCAL, resolve, ca: cert },
    );
    expect(wrong.reason).toBe('TLSError');
  });
});

// --- redirects ------------------------------------------------------------------------------------------------

describe('redirects are reported, never followed', () => {
  for (const status of [301, 302, 303, 307, 308]) {
    it(`verification: HTTP ${status} to the metadata address`, async () => {
      const r = await redirector(status, () => `http://169.254.169.254/latest/meta-data/?k=${CANARY}`);
      const out = await verifyConnection(
        { provider: 'OpenAI', url: `http://127.0.0.1:${r.port}/v1`, apiKey: CANARY, timeoutMs: 2000 },
        undefined,
        net(LOCAL),
      );
      expect(out).toMatchObject({ ok: false, reason: 'UpstreamError', statusCode: status });
      expect(out.message).toContain(`answered HTTP ${status}, a redirect to http://169.254.169.254/latest`);
      expect(out.message).toContain('refused: url host 169.254.169.254 is link-local');
      expect(out.message).toContain('never follows redirects');
      expect(out.message).not.toContain(CANARY);
      expect(r.requests).toBe(1);
      expect(dialled).toEqual(['127.0.0.1']);
    });
  }

  it('verification: a chain (307 → allowed host → 302 → metadata) stops at the first hop', async () => {
    const b = await redirector(302, () => 'http://169.254.169.254/');
    const a = await redirector(307, () => `http://127.0.0.1:${b.port}/v1/models`);
    const out = await verifyConnection(
      { provider: 'OpenAI', url: `http://127.0.0.1:${a.port}/v1`, timeoutMs: 2000 },
      undefined,
      net(LOCAL),
    );
    expect(out.message).toContain(`a redirect to http://127.0.0.1:${b.port}/v1/models`);
    expect([a.requests, b.requests]).toEqual([1, 0]);
    expect(dialled).toEqual(['127.0.0.1']);
  });

  it('verification: a redirect to a name that resolves to the metadata address is not resolved', async () => {
    const r = await redirector(302, () => 'http://metadata.google.internal/computeMetadata/v1/');
    await verifyConnection(
      { provider: 'OpenAI', url: `http://127.0.0.1:${r.port}/v1`, timeoutMs: 2000 },
      undefined,
      net(LOCAL),
    );
    expect(resolved).toEqual([]);
    expect(dialled).toEqual(['127.0.0.1']);
  });
});

// --- connect time: the gateway ----------------------------------------------------------------------------

describe('the gateway refuses blocked upstreams with 502 upstream_blocked, before dialling', () => {
  let restoreHooks: () => void;
  const before = addressPolicy();
  beforeAll(() => {
    restoreHooks = setConnectHooks({ resolve, connect: dial });
  });
  afterAll(() => {
    restoreHooks();
    setAddressPolicy(before);
  });

  it(`${connectable.length} hostile upstreams, cluster mode`, async () => {
    setAddressPolicy(CLUSTER);
    const conns = connectable.map((h, i) =>
      conn(undefined, { name: `c${i}`, url: h.url, apiKey: CANARY, models: [`m${i}`] }),
    );
    const gw = await startGateway(conns);
    try {
      for (let i = 0; i < connectable.length; i++) {
        const h = connectable[i] as (typeof connectable)[number];
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: `m${i}`, messages: [{ role: 'user', content: 'hi' }] }),
        });
        const text = await res.text();
        expect(res.status, h.url).toBe(502);
        const body = JSON.parse(text) as { error: { code: string; message: string; type: string } };
        expect(body.error.code).toBe('upstream_blocked');
        expect(body.error.message).toContain(
          `Upstream ai/c${i} is at an address the gateway's policy refuses`,
        );
        expect(body.error.message).toContain(h.connect as string);
        expect(text).not.toContain(CANARY);
      }
      expect(dialled).toEqual([]);
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      expect(
        metricValue(metrics, 'plugboard_gateway_upstream_errors_total', { reason: 'blocked_address' }),
      ).toBe(connectable.length);
    } finally {
      await gw.close();
    }
  });

  it('fails over from a blocked connection to a good one; private and loopback (when allowed) still work', async () => {
    setAddressPolicy(LOCAL);
    const m = await startMockProvider({ profile: 'openai', models: ['shared'] });
    mocks.push(m);
    const gw = await startGateway([
      conn(undefined, { name: 'metadata', url: 'http://169.254.169.254/v1', models: ['shared'] }),
      conn(undefined, { name: 'private', url: 'http://10.0.0.7:8000/v1', models: ['private'] }),
      conn(m, { name: 'good', models: ['shared'] }),
    ]);
    try {
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'shared', messages: [{ role: 'user', content: 'hi' }] }),
        });
        expect(res.status).toBe(200);
        await res.text();
      }
      const priv = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'private', messages: [{ role: 'user', content: 'hi' }] }),
      });
      // The policy let 10.0.0.7 through to the dialler (which refuses anything but loopback in tests).
      expect(priv.status).toBe(502);
      expect(((await priv.json()) as { error: { code: string } }).error.code).toBe('upstream_unavailable');
      expect(dialled).toContain('10.0.0.7');
      expect(dialled).not.toContain('169.254.169.254');
    } finally {
      await gw.close();
    }
  });

  it('a name resolving to one good and one bad address is refused in the gateway too', async () => {
    setAddressPolicy(LOCAL);
    DNS['half.test'] = ['127.0.0.1', '::ffff:169.254.169.254'];
    const gw = await startGateway([
      conn(undefined, { name: 'half', url: 'http://half.test:1/v1', models: ['x'] }),
    ]);
    try {
      const res = await fetch(`${gw.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'x', input: 'hi' }),
      });
      expect(res.status).toBe(502);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('upstream_blocked');
      expect(dialled).toEqual([]);
    } finally {
      await gw.close();
    }
  });

  it('an upstream redirect to the metadata address is not followed by the gateway', async () => {
    setAddressPolicy(LOCAL);
    const r = await redirector(307, () => 'http://169.254.169.254/latest/meta-data/');
    const gw = await startGateway([
      conn(undefined, { name: 'redir', url: `http://127.0.0.1:${r.port}/v1`, models: ['r'] }),
    ]);
    try {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'r', messages: [{ role: 'user', content: 'hi' }] }),
      });
      // Not followed, and not handed to the client either (its next hop would be the metadata address).
      expect(res.status).toBe(502);
      expect(res.headers.get('location')).toBeNull();
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('upstream_redirect');
      expect(r.requests).toBe(1);
      expect(dialled).toEqual(['127.0.0.1']);
    } finally {
      await gw.close();
    }
  });
});
