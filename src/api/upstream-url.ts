import { z } from 'zod';
import {
  ADMISSION_POLICY,
  type BlockedRule,
  FIXED_RULE_NAMES,
  fixedRuleMessage,
  passesFixedRule,
  URL_HOST_RULES,
  URL_SYNTAX,
  type UrlHostRule,
} from '../net/address-policy.ts';
import { celString, type Rule, withRules } from './rules.ts';

// Each URL rule is checked the same way by the API server (CEL) and by zod (offline validation). The host rules
// and the always-refused addresses come from the address policy (src/net/address-policy.ts), which the
// connect-time check uses too: the CEL below is that policy written for the API server.
const SCHEME_HOST = new RegExp(URL_SYNTAX.schemeHost);
const USERINFO = new RegExp(URL_SYNTAX.userinfo);
const PLAIN_HOST = new RegExp(URL_SYNTAX.plainHost);
const matches = (key: keyof typeof URL_SYNTAX) => `self.matches(${celString(URL_SYNTAX[key])})`;

/** The host of a URL that matches plainHost, brackets removed (what plainHostOf returns). */
const HOST = `self.find(${celString(URL_SYNTAX.host)}).split('://')[1].replace('[', '').replace(']', '')`;

const HOST_RULE_CEL: Record<UrlHostRule, string> = {
  'host-notation': `!${matches('schemeHost')} || ${matches('userinfo')} || ${matches('plainHost')}`,
  'non-canonical-ip': `!${matches('endsInNumber')} || ${matches('canonicalIpv4')}`,
  'ipv6-literal': `!${matches('bracketed')} || !${matches('plainHost')} || isIP(${HOST})`,
};

const HEX_DIGITS = `[${[...'0123456789abcdef'].map((d) => `'${d}'`).join(', ')}]`;

/**
 * `h` (an IPv6 address CEL's isIP() accepts, as written) as eight colon-separated groups in `x` (lower case, `::`
 * expanded), for `body` to match against admissionPatterns(). CEL has no such function, and the CRD cost estimate
 * refuses `string(ip(h))`, `join()` and anything built from split() elements (their size is unbounded), so the
 * text is rebuilt from substrings of `h`: lower case; a dotted-quad tail turned into two groups (digits looked up
 * in a list); the groups before and after `::` counted (split() for its size only) and the zeros between them
 * filled in. Single-element lists bind the intermediate values.
 */
function withIpv6Groups(body: string): string {
  const byte = (o: string) => `${HEX_DIGITS}[int(${o}) / 16] + ${HEX_DIGITS}[int(${o}) % 16]`;
  const count = (s: string) => `(${s} == '' ? 0 : size(${s}.split(':', 8)))`;
  const expand =
    "[t.indexOf('::')].exists(i, " +
    'i < 0 ? [t].exists(x, BODY) : ' +
    '[t.substring(0, i)].exists(hd, [t.substring(i + 2)].exists(tl, ' +
    `[(hd == '' ? '' : hd + ':') + '0:0:0:0:0:0:0:0'.substring(0, 2 * (8 - ${count('hd')} - ${count('tl')}) - 1) + ` +
    "(tl == '' ? '' : ':' + tl)].exists(x, BODY))))";
  const withBody = expand.replaceAll('BODY', () => body);
  const quadToGroups =
    "[l.substring(l.lastIndexOf(':') + 1).split('.', 4)].exists(o, " +
    `[l.substring(0, l.lastIndexOf(':') + 1) + ${byte('o[0]')} + ${byte('o[1]')} + ':' + ${byte('o[2]')} + ${byte('o[3]')}]` +
    `.exists(t, ${withBody}))`;
  return `[h.lowerAscii()].exists(l, l.contains('.') ? ${quadToGroups} : [l].exists(t, ${withBody}))`;
}

/** CEL that is true when the literal IP host `h` falls under the always-refused rule, in any of its forms. */
function fixedRuleCel(rule: BlockedRule): string {
  const { ipv4, ipv6 } = ADMISSION_POLICY.admissionPatterns(rule);
  const alternatives = (ps: string[]) => celString(`^(${ps.join('|')})$`);
  const v4 = ipv4.length ? `[${ipv4.map(celString).join(', ')}].exists(c, cidr(c).containsIP(h))` : 'false';
  const plain = ipv6.filter((p) => !p.except).map((p) => p.pattern);
  const v6Parts = plain.length ? [`x.matches(${alternatives(plain)})`] : [];
  for (const except of new Set(ipv6.flatMap((p) => (p.except ? [p.except] : [])))) {
    const ps = ipv6.filter((p) => p.except === except).map((p) => p.pattern);
    v6Parts.push(`(!cidr(${celString(except)}).containsIP(h) && x.matches(${alternatives(ps)}))`);
  }
  const v6 = v6Parts.length ? withIpv6Groups(v6Parts.join(' || ')) : 'false';
  return `!${matches('plainHost')} || [${HOST}].all(h, !isIP(h) || !(ip(h).family() == 4 ? ${v4} : ${v6}))`;
}

const HOST_RULES: Rule<string>[] = [
  ...URL_HOST_RULES.map((r) => ({ cel: HOST_RULE_CEL[r.rule], message: r.message, check: r.check })),
  ...FIXED_RULE_NAMES.map((rule) => ({
    cel: fixedRuleCel(rule),
    message: fixedRuleMessage(rule),
    check: (s: string) => passesFixedRule(s, rule),
  })),
];

export const upstreamUrl = withRules(
  z
    .string()
    .max(2048)
    // Gemini's /v1beta/openai breaks with a trailing slash; everything downstream joins paths onto this.
    .overwrite((s) => s.replace(/\/+$/, '')),
  [
    {
      cel: matches('schemeHost'),
      message: 'url must start with http:// or https:// followed by a host, e.g. https://api.openai.com/v1',
      check: (s) => SCHEME_HOST.test(s),
    },
    {
      cel: `!${matches('userinfo')}`,
      message:
        'url must not contain credentials (user:password@); put the API key in the Secret named by apiKeySecretRef',
      check: (s) => !USERINFO.test(s),
    },
    {
      cel: "!self.contains('?') && !self.contains('#')",
      message:
        'url must not contain a query string or fragment; use the base URL, e.g. https://api.openai.com/v1',
      check: (s) => !s.includes('?') && !s.includes('#'),
    },
    {
      // Only for a plain host and no query or fragment: the other rules explain the rest (the API server's Go
      // parser and WHATWG URL disagree about many of those, so this check would not say the same on both sides).
      cel: `!${matches('plainHost')} || self.contains('?') || self.contains('#') || isURL(self)`,
      message: 'url must be a valid absolute URL',
      check: (s) => !PLAIN_HOST.test(s) || s.includes('?') || s.includes('#') || URL.canParse(s),
    },
    ...HOST_RULES,
  ],
  'Base URL of the OpenAI-compatible API, up to and including the version segment (e.g. https://api.openai.com/v1, ' +
    'https://generativelanguage.googleapis.com/v1beta/openai). A trailing slash is removed. The host is a DNS name, ' +
    'a dotted-quad IPv4 address or a bracketed IPv6 address; link-local, cloud metadata, unspecified, multicast ' +
    'and reserved addresses are refused, also inside IPv6 addresses that carry them.',
);
