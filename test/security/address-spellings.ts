import fc from 'fast-check';

/**
 * An attacker's generator of upstream URLs: an IPv4 address (biased towards the refused ranges) written in one
 * of the notations WHATWG URL reads as an address, or carried inside an IPv6 address and that address spelled in
 * one of the ways an IPv6 literal may be written.
 */
export type V4 = [number, number, number, number];

const octet = fc.integer({ min: 0, max: 255 });
const v4In = (first: number[], second?: number[]): fc.Arbitrary<V4> =>
  fc.tuple(fc.constantFrom(...first), second ? fc.constantFrom(...second) : octet, octet, octet);

export const ipv4: fc.Arbitrary<V4> = fc.oneof(
  v4In([169], [254]),
  v4In([0]),
  v4In([224, 230, 239]),
  v4In([240, 250, 255]),
  fc.constantFrom<V4>([169, 254, 169, 254], [100, 100, 100, 200], [168, 63, 129, 16], [255, 255, 255, 255]),
  v4In([10]),
  v4In([127]),
  fc.tuple(octet, octet, octet, octet),
);

export const IPV4_NOTATIONS = ['dotted', 'decimal', 'hex', 'octal', 'short', 'trailing-dot'] as const;
export const EMBEDDINGS = [
  'mapped',
  'translated',
  'compatible',
  'nat64',
  'local-48',
  'local-56',
  'local-64',
  'local-96',
  '6to4',
  'teredo',
] as const;
export const IPV6_STYLES = ['canonical', 'expanded', 'upper', 'dotted-tail'] as const;

export interface Spelling {
  url: string;
  v4: V4;
  how: string;
  /** Written as an address a spec may use literally: a canonical dotted quad or an IPv6 address that is not IPv4-mapped. */
  literal: boolean;
}

function ipv4Host(v: V4, notation: (typeof IPV4_NOTATIONS)[number]): string {
  const n = ((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]) >>> 0;
  switch (notation) {
    case 'dotted':
      return v.join('.');
    case 'decimal':
      return String(n);
    case 'hex':
      return `0x${n.toString(16)}`;
    case 'octal':
      return v.map((o) => `0${o.toString(8)}`).join('.');
    case 'short':
      return `${v[0]}.${v[1]}.${(v[2] << 8) | v[3]}`;
    case 'trailing-dot':
      return `${v.join('.')}.`;
  }
}

const RFC6052: Record<number, number[]> = {
  48: [6, 7, 9, 10],
  56: [7, 9, 10, 11],
  64: [9, 10, 11, 12],
  96: [12, 13, 14, 15],
};

/** 16 bytes carrying v4 in the given form; `noise` fills the bits the form leaves free. */
function embed(v: V4, form: (typeof EMBEDDINGS)[number], noise: number[]): Uint8Array {
  const b = new Uint8Array(16);
  const at = (bytes: number[], values: number[]) => {
    bytes.forEach((i, k) => {
      b[i] = values[k] as number;
    });
  };
  const last = [12, 13, 14, 15];
  switch (form) {
    case 'mapped':
      at([10, 11], [255, 255]);
      at(last, v);
      break;
    case 'translated':
      at([8, 9], [255, 255]);
      at(last, v);
      break;
    case 'compatible':
      at(last, v);
      break;
    case 'nat64':
      at([0, 1, 2, 3], [0, 0x64, 0xff, 0x9b]);
      at(last, v);
      break;
    case '6to4':
      at([0, 1], [0x20, 0x02]);
      at([2, 3, 4, 5], v);
      at([6, 7, 8, 9, 10, 11, 12, 13, 14, 15], noise);
      break;
    case 'teredo':
      at([0, 1, 2, 3], [0x20, 0x01, 0, 0]);
      at([4, 5, 6, 7, 8, 9, 10, 11], noise);
      at(
        last,
        v.map((o) => 255 - o),
      );
      break;
    default: {
      const len = Number(form.slice(6));
      at([0, 1, 2, 3, 4, 5], [0, 0x64, 0xff, 0x9b, 0, 1]);
      // the bytes the layout leaves free (not the u octet, byte 8) get noise
      for (let i = 6; i < 16; i++) if (i !== 8) b[i] = noise[i - 6] as number;
      b[8] = 0;
      at(RFC6052[len] as number[], v);
    }
  }
  return b;
}

function ipv6Text(b: Uint8Array, style: (typeof IPV6_STYLES)[number]): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((b[2 * i] as number) << 8) | (b[2 * i + 1] as number));
  switch (style) {
    case 'expanded':
      return groups.map((g) => g.toString(16).padStart(4, '0')).join(':');
    case 'upper':
      return groups.map((g) => g.toString(16).toUpperCase()).join(':');
    case 'dotted-tail':
      return `${groups
        .slice(0, 6)
        .map((g) => g.toString(16))
        .join(':')}:${Array.from(b.slice(12)).join('.')}`;
    case 'canonical':
      return new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
  }
}

export const spelling: fc.Arbitrary<Spelling> = fc.oneof(
  fc.tuple(ipv4, fc.constantFrom(...IPV4_NOTATIONS)).map(([v, n]) => ({
    url: `http://${ipv4Host(v, n)}:8000/v1`,
    v4: v,
    how: n,
    literal: n === 'dotted',
  })),
  fc
    .tuple(
      ipv4,
      fc.constantFrom(...EMBEDDINGS),
      fc.constantFrom(...IPV6_STYLES),
      fc.array(octet, { minLength: 10, maxLength: 10 }),
    )
    .map(([v, form, style, noise]) => ({
      url: `http://[${ipv6Text(embed(v, form, noise), style)}]:8000/v1`,
      v4: v,
      how: `${form}, ${style}`,
      literal: form !== 'mapped',
    })),
);

/** IPv6 addresses near the IPv6 refused ranges, and anywhere. */
export const ipv6Literal: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(
        [0xfe, 0x80],
        [0xfe, 0xbf],
        [0xfe, 0xc0],
        [0xfe, 0x7f],
        [0xff, 0x02],
        [0xfd, 0x00],
        [0, 0],
      ),
      fc.tuple(octet, octet),
    ),
    fc.array(octet, { minLength: 14, maxLength: 14 }),
    fc.constantFrom('canonical', 'expanded', 'upper') as fc.Arbitrary<(typeof IPV6_STYLES)[number]>,
  )
  .map(([head, rest, style]) => ipv6Text(Uint8Array.from([...head, ...rest]), style));
