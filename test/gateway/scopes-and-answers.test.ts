/**
 * Issue 14, gateway side: a client key's model scope applies everywhere it can see models; requests the gateway
 * answers itself are counted; the UI's fallback page is for browsers only, so an API client whose base URL lacks
 * /v1 gets JSON that says so (Open WebUI's "verify connection" passed on the UI's index.html before).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import { rawExchange, rawRequest } from '../support/raw-http.ts';
import { conn, mock, startGateway } from './helpers.ts';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  while (cleanup.length) await cleanup.pop()?.();
});

const ALL = 'pb-scope-all-0123456789';
const MINI = 'pb-scope-mini-0123456789';
const auth = (key: string) => ({ authorization: `Bearer ${key}` });

async function setup(opts: { ui?: boolean } = {}) {
  const a = await mock({ profile: 'openai', models: ['gpt-4o', 'gpt-4o-mini'] });
  const b = await mock({ profile: 'openai', models: ['o3'] });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  let uiDir: string | undefined;
  if (opts.ui) {
    uiDir = mkdtempSync(join(tmpdir(), 'plugboard-ui-'));
    writeFileSync(join(uiDir, 'index.html'), '<!doctype html><title>Plugboard</title>');
    writeFileSync(join(uiDir, 'app.js'), 'console.log(1)');
    const dir = uiDir;
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  }
  const h = await startGateway(
    [
      conn(a, { name: 'openai', models: ['gpt-4o', 'gpt-4o-mini'] }),
      conn(b, { name: 'reasoning', models: ['o3'] }),
    ],
    {
      clientKeys: new StaticClientKeys(
        JSON.stringify([
          { name: 'all', key: ALL },
          { name: 'mini', key: MINI, models: ['gpt-4o-mini*'] },
        ]),
      ),
      ...(uiDir ? { uiDir } : {}),
    },
  );
  cleanup.push(() => h.close());
  return h;
}

describe('a scoped key sees only its models, everywhere', () => {
  it('/api/connections shows a scoped key its models and only the connections that serve them', async () => {
    const h = await setup();
    const all = (await (await fetch(`${h.url}/api/connections`, { headers: auth(ALL) })).json()) as {
      connections: { name: string; models: string[]; exposedModelCount: number }[];
    };
    expect(all.connections.map((c) => c.name).sort()).toEqual(['openai', 'reasoning']);
    const mini = (await (
      await fetch(`${h.url}/api/connections`, { headers: auth(MINI) })
    ).json()) as typeof all;
    expect(mini.connections).toHaveLength(1);
    expect(mini.connections[0]).toMatchObject({
      name: 'openai',
      models: ['gpt-4o-mini'],
      exposedModelCount: 1,
    });
    const models = (await (await fetch(`${h.url}/v1/models`, { headers: auth(MINI) })).json()) as {
      data: { id: string }[];
    };
    expect(models.data.map((m) => m.id)).toEqual(['gpt-4o-mini']);
    expect((await fetch(`${h.url}/v1/models/o3`, { headers: auth(MINI) })).status).toBe(404);
    expect((await fetch(`${h.url}/v1/models/o3`, { headers: auth(ALL) })).status).toBe(200);
  });
});

describe('answers the gateway gives itself are counted', () => {
  it('plugboard_gateway_rejected_requests_total counts them by route, status and code', async () => {
    const h = await setup();
    await fetch(`${h.url}/v1/models`);
    await fetch(`${h.url}/v1/models`, { headers: auth('pb-wrong-0123456789') });
    await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...auth(MINI), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'o3', messages: [] }),
    });
    await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...auth(ALL), 'content-type': 'text/plain' },
      body: '{}',
    });
    await fetch(`${h.url}/v1/nothing`, { headers: auth(ALL) });
    // fetch() would resolve the dot segments itself: a raw request sends them as written
    await rawExchange(h.url, rawRequest('GET', '/%2e%2e/v1/models', auth(ALL)));
    const text = await (await fetch(`${h.url}/metrics`, { headers: auth(ALL) })).text();
    const count = (labels: string) =>
      Number(
        new RegExp(`^plugboard_gateway_rejected_requests_total\\{${labels}\\} (\\d+)`, 'm').exec(text)?.[1],
      );
    expect(count('route="/v1/models",status="401",code="invalid_api_key"')).toBe(2);
    expect(count('route="/v1/chat/completions",status="404",code="model_not_found"')).toBe(1);
    expect(count('route="/v1/chat/completions",status="415",code="unsupported_media_type"')).toBe(1);
    expect(count('route="none",status="404",code="unknown_url"')).toBe(1);
    expect(count('route="none",status="400",code="invalid_request_target"')).toBe(1);
  });
});

describe('the UI fallback is for browsers', () => {
  it('serves the page to a browser navigation and JSON to an API client whose base URL lacks /v1', async () => {
    const h = await setup({ ui: true });
    const page = await fetch(`${h.url}/some/page`, {
      headers: { accept: 'text/html,application/xhtml+xml' },
    });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Plugboard</title>');
    expect((await fetch(`${h.url}/app.js`)).status).toBe(200);
    for (const [path, headers] of [
      ['/models', {}],
      ['/models', { accept: 'text/html' }],
      ['/chat/completions', { accept: 'application/json' }],
      ['/embeddings', {}],
      ['/some/page', auth(ALL)],
      ['/some/page', { accept: 'application/json' }],
    ] as const) {
      const r = await fetch(`${h.url}${path}`, { headers });
      expect(r.status, `${path} ${JSON.stringify(headers)}`).toBe(404);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('unknown_url');
      if (path !== '/some/page') expect(body.error.message).toContain('/v1');
    }
  });
});
