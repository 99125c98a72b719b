/** Parses host:port (IPv6 in brackets); an empty host means all interfaces. */
export function parseListen(value: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(value);
  if (!m) throw new Error(`${flag} must be host:port, not ${JSON.stringify(value)}`);
  return { host: (m[1] || '0.0.0.0').replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}
