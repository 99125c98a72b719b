import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SelfSigned {
  key: string;
  cert: string;
}

/**
 * A fresh self-signed P-256 certificate for 127.0.0.1, ::1 and localhost, valid for a day, made with the openssl
 * CLI (no network). The certificate is its own CA: clients trust it by passing it as `ca`.
 */
export async function selfSignedCertificate(hosts: string[] = []): Promise<SelfSigned> {
  const dir = await mkdtemp(join(tmpdir(), 'plugboard-mock-tls-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    const names = new Set(['IP:127.0.0.1', 'IP:::1', 'DNS:localhost']);
    for (const h of hosts) {
      if (!h || h === '0.0.0.0' || h === '::') continue;
      names.add(/^[\d.]+$/.test(h) || h.includes(':') ? `IP:${h}` : `DNS:${h}`);
    }
    try {
      await run(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          keyFile,
          '-out',
          certFile,
          '-days',
          '1',
          '-subj',
          '/CN=plugboard-mock-provider',
          '-addext',
          `subjectAltName=${[...names].join(',')}`,
          '-addext',
          'basicConstraints=critical,CA:TRUE',
        ],
        { timeout: 10_000 },
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === 'ENOENT') {
        throw new Error(
          'mock provider TLS needs the openssl command to generate a self-signed certificate; install openssl ' +
            '(apt-get install openssl) or start the mock provider without tls',
        );
      }
      throw new Error(
        `openssl could not generate a self-signed certificate: ${e.stderr?.trim() || e.message}`,
      );
    }
    const [key, cert] = await Promise.all([readFile(keyFile, 'utf8'), readFile(certFile, 'utf8')]);
    return { key, cert };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
