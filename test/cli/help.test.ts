/**
 * Every command in the command table (src/cli/main.ts) answers --help and -h with its usage on stdout (exit 0),
 * and an unknown option with a one-line error and that usage on stderr (exit 2, no stack trace). A command added
 * to the table without them fails here.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMAND_NAMES } from '../../src/cli/main.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js');

function plugboard(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // An empty environment but PATH: no KUBECONFIG, no keys; the commands must answer before reading any.
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH } }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/** A command's usage starts with "Usage: plugboard <name>"; help's is the overview. */
const usageHead = (name: string) =>
  name === 'help' ? 'Usage: plugboard <command>' : `Usage: plugboard ${name}`;

describe('plugboard <command> --help', () => {
  it('the table holds every command the CLI has', () => {
    expect([...COMMAND_NAMES].sort()).toEqual(
      [
        'crds',
        'gateway',
        'help',
        'init',
        'mock-provider',
        'operator',
        'standalone',
        'start',
        'verify',
      ].sort(),
    );
  });

  it.each(COMMAND_NAMES)(
    '%s answers --help, -h and help <command>; refuses an unknown option',
    async (name) => {
      const [long, short, viaHelp, bad] = await Promise.all([
        plugboard(name, '--help'),
        plugboard(name, '-h'),
        plugboard('help', name),
        plugboard(name, '--no-such-option'),
      ]);
      expect(long.status, long.stderr).toBe(0);
      expect(long.stdout.startsWith(usageHead(name)), long.stdout).toBe(true);
      expect(long.stderr).toBe('');
      expect(short).toEqual(long);
      expect(viaHelp).toEqual(long);

      expect(bad.status).toBe(2);
      expect(bad.stdout).toBe('');
      const [first, blank, ...rest] = bad.stderr.split('\n');
      expect(first).toBe(`plugboard ${name}: Unknown option '--no-such-option'`);
      expect(blank).toBe('');
      expect(`${rest.join('\n')}`).toBe(long.stdout);
      expect(bad.stderr).not.toMatch(/^\s+at /m); // no stack trace
    },
  );

  it('`plugboard help`, `--help` and no arguments list every command', async () => {
    const runs = await Promise.all([plugboard('help'), plugboard('--help'), plugboard('-h'), plugboard()]);
    for (const r of runs) {
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(runs[0]?.stdout);
    }
    const listed = [...(runs[0]?.stdout ?? '').matchAll(/^ {2}(\S+) {2,}\S/gm)].map((m) => m[1]);
    expect(listed).toEqual([...COMMAND_NAMES]);
  });

  it('an unknown command exits 2 with the command list on stderr', async () => {
    const r = await plugboard('frobnicate');
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('plugboard: unknown command "frobnicate"');
    for (const name of COMMAND_NAMES) expect(r.stderr).toContain(`  ${name} `);
  });
});
