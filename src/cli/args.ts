import { parseDuration } from '../api/common.ts';

/** Parses host:port (IPv6 in brackets); an empty host means all interfaces. */
export function parseListen(value: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(value);
  if (!m) throw new Error(`${flag} must be host:port, not ${JSON.stringify(value)}`);
  return { host: (m[1] || '0.0.0.0').replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}

/** `8MiB`, `25 MiB`, `512KiB`, `1000000` → bytes. */
export function parseBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$/i.exec(s);
  if (!m) throw new Error(`invalid size ${JSON.stringify(s)}; use e.g. 8MiB, 512KiB or a byte count`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const mult: Record<string, number> = {
    b: 1,
    kb: 1000,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
  };
  return Math.floor(Number(m[1]) * (mult[unit] ?? 1));
}

/** `30s`, `1m30s`, `250ms` → milliseconds. */
export function parseDurationMs(s: string): number {
  try {
    return parseDuration(s.trim());
  } catch {
    throw new Error(`invalid duration ${JSON.stringify(s)}; use e.g. 30s, 1m30s or 250ms`);
  }
}
