import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatError, loadManifests } from '../../src/cli/manifests.ts';
import { FileClientKeys, parseClientKeys } from '../../src/gateway/client-keys.ts';
import { FileSnapshotSource, parseSnapshotFile } from '../../src/gateway/snapshot-source.ts';
import { decodeSnapshot } from '../../src/snapshot/codec.ts';
import { startGateway } from '../gateway/helpers.ts';

/**
 * Client keys, snapshots and Secret manifests hold keys. A canary key is put into each of them, broken in every
 * way we found that makes a parser quote its input (the YAML parser's code frames and messages, V8's JSON
 * snippets, YAML warnings on stderr); it must appear in no thrown message, `/readyz` body, log line or stderr of
 * a real process, while the errors still name the source, line and column (or the field).
 */
const CANARY = `pb-canary-${randomBytes(8).toString('hex')}`;
const ROOT = join(import.meta.dirname, '..', '..');

interface Breakage {
  id: string;
  /** One mapping entry `field: <the canary, broken>` at the given indentation. */
  entry: (indent: string, field: string) => string;
  /** Whether the message must give a line and column (a syntax error) rather than a field. */
  syntax: boolean;
  /** Small enough for an environment variable. */
  env?: boolean;
}

const C = CANARY;
const BREAKAGES: Breakage[] = [
  { id: 'unterminated double quote', entry: (i, f) => `${i}${f}: "${C}\n`, syntax: true, env: true },
  { id: 'unterminated single quote', entry: (i, f) => `${i}${f}: '${C}\n`, syntax: true },
  { id: 'bad indentation', entry: (i, f) => `${i}${f}: ${C}\n${i} extra: 1\n`, syntax: true },
  { id: 'duplicate key', entry: (i, f) => `${i}${f}: ${C}\n${i}${f}: ${C}\n`, syntax: true, env: true },
  { id: 'a sequence where a string belongs', entry: (i, f) => `${i}${f}: [${C}]\n`, syntax: false },
  {
    id: 'a mapping where a string belongs',
    entry: (i, f) => `${i}${f}: {${C}: 1}\n`,
    syntax: false,
    env: true,
  },
  {
    id: 'a huge unterminated value',
    entry: (i, f) => `${i}${f}: "${C}${'x'.repeat(1 << 20)}\n`,
    syntax: true,
  },
  {
    id: 'an invalid escape right after the key',
    entry: (i, f) => `${i}${f}: "${C}\\q"\n`,
    syntax: true,
    env: true,
  },
  { id: 'a tab as indentation', entry: (_i, f) => `\t${f}: ${C}\n`, syntax: true },
  { id: 'a colon inside the plain value', entry: (i, f) => `${i}${f}: ${C}: x\n`, syntax: true },
  { id: 'the key as an undefined alias', entry: (i, f) => `${i}${f}: *${C}\n`, syntax: false, env: true },
  { id: 'the key as an unknown tag', entry: (i, f) => `${i}${f}: !${C} x\n`, syntax: false },
  { id: 'block scalar header with the key', entry: (i, f) => `${i}${f}: |${C}\n${i}  x\n`, syntax: true },
  { id: 'a second document', entry: (i, f) => `${i}${f}: ${C}\n---\nmore: 1\n`, syntax: true },
];

/** Whole documents in JSON flow style, broken right after the key. */
const FLOW = {
  keys: [
    `[{"name": "team", "key": "${C}" "models": []}]`,
    `{"keys": [{"name": "team", "key": "${C}"}`,
    `[{"name": "team", "key": "${C}", }}]`,
  ],
  snapshot: [
    `{"format": 1, "generation": 1, "connections": [{"name": "c", "apiKey": "${C}" "url": "http://x"}]}`,
    `{"format": 1, "generation": 1, "connections": [{"name": "c", "apiKey": "${C}"`,
  ],
  secret: [
    `{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"apiKey": "${C}" }x}`,
  ],
};

const keysDoc = (b: Breakage) => `- name: team\n${b.entry('  ', 'key')}`;
const snapshotDoc = (b: Breakage) =>
  'format: 1\ngeneration: 3\ngeneratedAt: "2025-01-01T00:00:00Z"\nconnections:\n' +
  `  - namespace: ai\n    name: c\n    provider: OpenAI\n    url: http://127.0.0.1:9/v1\n${b.entry('    ', 'apiKey')}`;
const secretDoc = (b: Breakage) =>
  `apiVersion: v1\nkind: Secret\nmetadata:\n  name: provider-key\nstringData:\n${b.entry('  ', 'apiKey')}`;

const KEYS_ONLY: { id: string; text: string }[] = [
  { id: 'the key under sha256', text: `- name: team\n  sha256: ${C}\n` },
  { id: 'the key where models belong', text: `- name: team\n  key: pb-fine-0123456789\n  models: ${C}\n` },
  { id: 'the key as a name, too long', text: `- name: ${C.repeat(20)}\n  key: pb-fine-0123456789\n` },
];

const WHERE = /line \d+, column \d+/;
const noCanary = (text: string) => expect(text.includes(CANARY), text.slice(0, 500)).toBe(false);

// YAML warnings go through process.emitWarning; none may carry the canary either.
const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
beforeAll(() => {
  process.on('warning', onWarning);
});
afterAll(() => {
  process.off('warning', onWarning);
  for (const w of warnings) noCanary(w);
});

function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

describe('errors about secret-bearing documents name the place, never the text', () => {
  it.each(BREAKAGES.map((b) => [b.id, b] as const))('client keys: %s', (_id, b) => {
    const message = thrown(() => parseClientKeys(keysDoc(b), 'client keys file keys.yaml'));
    expect(message).toMatch(/^client keys file keys\.yaml: /);
    if (b.syntax) expect(message).toMatch(WHERE);
    noCanary(message);
  });

  it.each(KEYS_ONLY.map((c) => [c.id, c] as const))('client keys: %s', (_id, c) => {
    const message = thrown(() => parseClientKeys(c.text, 'PLUGBOARD_CLIENT_KEYS'));
    expect(message).toMatch(/^PLUGBOARD_CLIENT_KEYS: 0\.(sha256|models|name): /);
    noCanary(message);
  });

  it.each(FLOW.keys.map((t, i) => [i, t] as const))(
    'client keys: JSON broken after the key (%i)',
    (_i, text) => {
      const message = thrown(() => parseClientKeys(text));
      expect(message).toMatch(WHERE);
      noCanary(message);
    },
  );

  it.each(BREAKAGES.map((b) => [b.id, b] as const))('snapshot file: %s', (_id, b) => {
    const message = thrown(() => parseSnapshotFile(Buffer.from(snapshotDoc(b)), 'snapshot file s.yaml'));
    if (b.syntax) expect(message).toMatch(WHERE);
    noCanary(message);
  });

  it.each(FLOW.snapshot.map((t, i) => [i, t] as const))(
    'snapshot file: JSON broken after the key (%i)',
    (_i, text) => {
      const message = thrown(() => parseSnapshotFile(Buffer.from(text)));
      expect(message).toMatch(WHERE);
      noCanary(message);
    },
  );

  it('gzipped snapshot (the operator’s wire format): broken JSON and a wrong type', () => {
    for (const text of [
      `{"connections": [{"apiKey": ${C}}]}`,
      `{"connections": [{"apiKey": "${C}" "x": 1}]}`,
      `{"format": 1, "modelLists": [], "connections": [{"apiKey": ["${C}"]}]}`,
    ]) {
      const message = thrown(() => decodeSnapshot(gzipSync(text)));
      expect(message).toMatch(/^snapshot (is unreadable|does not match the schema)/);
      noCanary(message);
    }
  });

  it('Secret manifests (standalone, verify): every breakage, each in its own file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-secret-manifests-'));
    try {
      BREAKAGES.forEach((b, i) => {
        writeFileSync(join(dir, `b${i}.yaml`), secretDoc(b));
      });
      FLOW.secret.forEach((t, i) => {
        writeFileSync(join(dir, `f${i}.json`), t);
      });
      const set = await loadManifests([dir]);
      const lines = set.errors.map(formatError);
      // one error per file, except where the broken value still parses (an unknown tag is a warning)
      expect(new Set(set.errors.map((e) => e.file)).size).toBeGreaterThanOrEqual(BREAKAGES.length);
      for (const [i, b] of BREAKAGES.entries()) {
        const line = lines.find((l) => l.includes(`b${i}.yaml`));
        // several documents are a manifest file's normal shape
        if (b.syntax && b.id !== 'a second document') expect(line).toMatch(WHERE);
      }
      for (const l of lines) noCanary(l);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('/readyz and the logs of a gateway reading broken files', () => {
  const cases = [
    ...BREAKAGES.map((b) => ({ id: b.id, keys: keysDoc(b), snapshot: snapshotDoc(b) })),
    ...FLOW.keys.map((keys, i) => ({
      id: `JSON ${i}`,
      keys,
      snapshot: FLOW.snapshot[i] ?? FLOW.snapshot[0],
    })),
  ];
  it.each(cases.map((c) => [c.id, c] as const))('%s', async (_id, c) => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-readyz-'));
    let logs = '';
    const stream = new Writable({
      write(chunk, _enc, done) {
        logs += chunk;
        done();
      },
    });
    const keysFile = join(dir, 'keys.yaml');
    const snapshotFile = join(dir, 'snapshot.yaml');
    writeFileSync(keysFile, c.keys);
    writeFileSync(snapshotFile, c.snapshot ?? '');
    const h = await startGateway([], {
      snapshots: new FileSnapshotSource(snapshotFile, { pollMs: 60_000 }),
      clientKeys: new FileClientKeys(keysFile),
      logger: { level: 'debug', stream },
    });
    try {
      const res = await fetch(`${h.url}/readyz`);
      const body = await res.text();
      const ready = JSON.parse(body) as {
        snapshot: { lastError: string | null };
        clientKeys?: { state: string; message?: string };
      };
      noCanary(body);
      // an unknown tag is only a warning, so that keys file may still load
      if (ready.clientKeys?.message)
        expect(ready.clientKeys.message).toContain(`client keys file ${keysFile}`);
      if (ready.snapshot.lastError)
        expect(ready.snapshot.lastError).toContain(`snapshot file ${snapshotFile}`);
      const models = await fetch(`${h.url}/v1/models`, { headers: { authorization: `Bearer ${CANARY}` } });
      noCanary(await models.text());
    } finally {
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    }
    noCanary(logs);
  });
});

/** Runs `plugboard <args>` until it exits (or kills it after 20 s); resolves with its exit code and output. */
function plugboard(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const base = { ...process.env };
    delete base.KUBERNETES_SERVICE_HOST;
    delete base.PLUGBOARD_CLIENT_KEYS;
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'plugboard.js'), ...args], {
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('a spawned plugboard prints no key', () => {
  let dir: string;
  let snapshotFile: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pb-cli-secrets-'));
    snapshotFile = join(dir, 'snapshot.json');
    writeFileSync(
      snapshotFile,
      JSON.stringify({ format: 1, generation: 1, generatedAt: new Date().toISOString(), connections: [] }),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const envCases = [
    ...BREAKAGES.filter((b) => b.env).map((b) => ({ id: b.id, text: keysDoc(b) })),
    { id: 'JSON 0', text: FLOW.keys[0] as string },
  ];

  it('gateway: a broken PLUGBOARD_CLIENT_KEYS exits 2 naming the variable and the place', async () => {
    const runs = await Promise.all(
      envCases.map((c) =>
        plugboard(['gateway', '--config-file', snapshotFile, '--listen', '127.0.0.1:0'], {
          PLUGBOARD_CLIENT_KEYS: c.text,
        }),
      ),
    );
    for (const [i, r] of runs.entries()) {
      expect(r.code, `${envCases[i]?.id}: ${r.out}`).toBe(2);
      expect(r.out).toMatch(/plugboard gateway: PLUGBOARD_CLIENT_KEYS: /);
      noCanary(r.out);
    }
  });

  it('standalone: a broken PLUGBOARD_CLIENT_KEYS and broken Secret manifests', async () => {
    const manifests = join(dir, 'manifests');
    rmSync(manifests, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(manifests);
    BREAKAGES.forEach((b, i) => {
      writeFileSync(join(manifests, `b${i}.yaml`), secretDoc(b));
    });
    FLOW.secret.forEach((t, i) => {
      writeFileSync(join(manifests, `f${i}.json`), t);
    });
    const [keys, secrets] = await Promise.all([
      plugboard(['standalone', '-f', manifests, '--listen', '127.0.0.1:0'], {
        PLUGBOARD_CLIENT_KEYS: keysDoc(BREAKAGES[0] as Breakage),
      }),
      plugboard(['standalone', '-f', manifests, '--listen', '127.0.0.1:0'], {}),
    ]);
    expect(keys.code, keys.out).toBe(2);
    expect(keys.out).toMatch(/PLUGBOARD_CLIENT_KEYS: YAML syntax error at line 3, column 1/);
    noCanary(keys.out);
    expect(secrets.code, secrets.out).not.toBe(0);
    expect(secrets.out).toMatch(/b0\.yaml#1 \(yaml\): YAML syntax error at line \d+, column \d+/);
    noCanary(secrets.out);
  });
});
