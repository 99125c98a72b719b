import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { buildConnector, errors } from 'undici';
import { type AddressPolicy, addressPolicy, BlockedAddressError } from './address-policy.ts';

/** Resolves a host name to every address it has (dns.lookup with all: true, the OS resolver's order). */
export type Resolver = (hostname: string) => Promise<{ address: string; family: number }[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, order: 'verbatim' });

/**
 * Process-wide resolver and dialler used where a connector was built without its own: only tests set these, to
 * reach the gateway's pools (built inside buildGateway) with names that resolve to chosen addresses and with a
 * dialler that proves nothing was dialled. Returns a function that restores the previous values.
 */
export function setConnectHooks(hooks: {
  resolve?: Resolver;
  connect?: buildConnector.connector;
}): () => void {
  const previous = { ...connectHooks };
  connectHooks = { ...hooks };
  return () => {
    connectHooks = previous;
  };
}
let connectHooks: { resolve?: Resolver; connect?: buildConnector.connector } = {};

export interface SafeConnectorOptions {
  /** The policy, or a function read at every connect (so a policy set at start-up applies to shared agents). */
  policy?: AddressPolicy | (() => AddressPolicy);
  /** Name resolution; tests inject one that maps names to chosen addresses. Default: dns.lookup. */
  resolve?: Resolver;
  /** TCP + TLS connect timeout (also bounds name resolution). Default 10 s. */
  timeoutMs?: number;
  /** Extra CA certificates (PEM) trusted for upstream TLS. */
  ca?: string | string[];
  /**
   * The connector that opens the socket, given the checked address as `hostname` (tests pass a spy to prove
   * that nothing is dialled for a refused host). Default: undici's buildConnector with `ca` and `timeoutMs`.
   */
  connect?: buildConnector.connector;
}

/**
 * An undici connector that never dials an address the policy refuses and cannot be rebound:
 *   1. a literal IP host is checked as is; a name is resolved once (all addresses) and every address is checked
 *      (one bad address refuses the host: a resolver may hand out any of them);
 *   2. the socket is opened to the checked address itself, while TLS SNI, certificate verification and the
 *      Host header keep the name, so nothing resolves the name a second time.
 * A refusal fails the connect with BlockedAddressError before any packet is sent.
 */
export function safeConnector(o: SafeConnectorOptions = {}): buildConnector.connector {
  const policyOf =
    typeof o.policy === 'function'
      ? o.policy
      : () => (o.policy as AddressPolicy | undefined) ?? addressPolicy();
  const timeoutMs = o.timeoutMs ?? 10_000;
  const built = buildConnector({ timeout: timeoutMs, ...(o.ca ? { ca: o.ca } : {}) });

  return (opts, callback) => {
    const name = opts.hostname.replace(/^\[(.*)\]$/, '$1');
    const policy = policyOf();
    const resolve = o.resolve ?? connectHooks.resolve ?? systemResolver;
    const open = o.connect ?? connectHooks.connect ?? built;
    if (isIP(name) !== 0) {
      const verdict = policy.check(name);
      if (!verdict.allowed) {
        const shown = isIP(name) === 6 ? `[${name}]` : name;
        process.nextTick(callback, new BlockedAddressError(shown, name, verdict), null);
        return;
      }
      open(opts, callback);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new errors.ConnectTimeoutError(`resolving ${name} took longer than ${timeoutMs}ms`)),
        timeoutMs,
      );
    });
    Promise.race([resolve(name), timeout])
      .then((addresses) => {
        if (addresses.length === 0)
          throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), {
            code: 'ENOTFOUND',
            hostname: name,
          });
        for (const a of addresses) {
          const verdict = policy.check(a.address);
          if (!verdict.allowed) throw new BlockedAddressError(name, a.address, verdict);
        }
        const chosen = (addresses[0] as { address: string }).address;
        // hostname: where the socket goes; servername/host: what TLS and HTTP present and verify.
        open({ ...opts, hostname: chosen, servername: opts.servername || name }, callback);
      })
      .catch((err: unknown) => callback(err as Error, null))
      .finally(() => clearTimeout(timer));
  };
}
