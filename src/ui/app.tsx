import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import {
  ApiError,
  type ChatMessage,
  describeError,
  getApiKey,
  listConnections,
  listModels,
  type ModelInfo,
  setApiKey,
  streamChat,
} from './api.ts';
import { Composer, MessageView, SettingsPanel, Sidebar } from './chat.tsx';
import { ModelPicker } from './picker.tsx';
import { StatusView } from './status.tsx';
import type { Conversation, Message } from './store.ts';
import * as store from './store.ts';
import { answerOnly } from './think.ts';
import { Icon, KeyDialog } from './widgets.tsx';

type Theme = 'system' | 'light' | 'dark';
const THEME_KEY = 'plugboard.theme';
const LAST_KEY = 'plugboard.last';

export function applyTheme(t: Theme): void {
  if (t === 'system') document.documentElement.removeAttribute('data-theme');
  else document.documentElement.dataset.theme = t;
}

export function initialTheme(): Theme {
  const t = localStorage.getItem(THEME_KEY);
  return t === 'light' || t === 'dark' ? t : 'system';
}

function useRoute(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash.startsWith('#/status') ? 'status' : 'chat';
}

interface Last {
  model: string;
  system: string;
  temperature?: number;
  maxTokens?: number;
}

function blankConversation(): Conversation {
  let last: Partial<Last> = {};
  try {
    last = JSON.parse(localStorage.getItem(LAST_KEY) ?? '{}') as Partial<Last>;
  } catch {
    // ignore
  }
  const now = Date.now();
  return {
    id: store.newId(),
    title: 'New chat',
    createdAt: now,
    updatedAt: now,
    model: last.model ?? '',
    system: last.system ?? '',
    ...(last.temperature !== undefined ? { temperature: last.temperature } : {}),
    ...(last.maxTokens !== undefined ? { maxTokens: last.maxTokens } : {}),
    messages: [],
  };
}

export function App() {
  const route = useRoute();
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const [models, setModels] = useState<ModelInfo[] | null>(null);
  const [modelsError, setModelsError] = useState('');
  const [keyPrompt, setKeyPrompt] = useState<{ open: boolean; reason: string }>({ open: false, reason: '' });
  const [keyVersion, setKeyVersion] = useState(0);
  const [sidebar, setSidebar] = useState(false);
  const [settings, setSettings] = useState(false);
  const [storageWarning, setStorageWarning] = useState(false);
  const [busyId, setBusyId] = useState('');
  const [, render] = useReducer((n: number) => n + 1, 0);

  // Conversations live in a ref (the source of truth) and are re-rendered on demand; the one being streamed
  // into is saved at most every 500 ms and again when the reply ends.
  const convs = useRef<Conversation[]>([]);
  const [activeId, setActiveId] = useState('');
  const draft = useRef<Conversation | null>(null);
  const abort = useRef<AbortController | null>(null);
  const loaded = useRef(false);
  if (!loaded.current) {
    loaded.current = true;
    convs.current = store.loadAll();
    const first = convs.current[0];
    if (first) setActiveId(first.id);
    else draft.current = blankConversation();
  }
  const active = convs.current.find((c) => c.id === activeId) ?? draft.current ?? blankConversation();

  const persist = useCallback((c: Conversation) => {
    if (!store.save(c, convs.current)) setStorageWarning(true);
  }, []);

  const update = useCallback(
    (id: string, fn: (c: Conversation) => Conversation, save = true) => {
      let c = convs.current.find((x) => x.id === id);
      if (!c && draft.current?.id === id) {
        c = draft.current;
        draft.current = null;
        convs.current = [c, ...convs.current];
      }
      if (!c) return;
      const next = fn(c);
      convs.current = convs.current.map((x) => (x.id === id ? next : x));
      if (save) persist(next);
      render(0);
    },
    [persist],
  );

  const loadModels = useCallback(async () => {
    try {
      const [list, conns] = await Promise.all([listModels(), listConnections().catch(() => null)]);
      // Fill in connection and tags from /api/connections where /v1/models does not say.
      const byModel = new Map<string, { connection: string; tags: string[] }>();
      for (const c of conns?.connections ?? []) {
        for (const id of c.models) byModel.set(id, { connection: `${c.namespace}/${c.name}`, tags: c.tags });
      }
      setModels(
        list.map((m) => {
          const known = byModel.get(m.id);
          return {
            ...m,
            connection: m.connection || known?.connection || '',
            tags: m.tags.length ? m.tags : (known?.tags ?? []),
          };
        }),
      );
      setModelsError('');
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, String(err));
      if (e.status === 401) setKeyPrompt({ open: true, reason: e.message });
      setModels([]);
      setModelsError(
        e.status === 401 ? 'Enter an API key to list the models.' : `Could not list models: ${e.message}`,
      );
    }
  }, []);

  useEffect(() => {
    loadModels();
  }, [keyVersion]);

  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem(THEME_KEY, theme);
  }, [theme]);

  // Pick a model for a new conversation once the list is known.
  useEffect(() => {
    if (!models?.length || active.model) return;
    const m = models[0];
    if (m && draft.current && draft.current.id === active.id) {
      draft.current = { ...draft.current, model: m.id };
      render(0);
    }
  }, [models, active.id]);

  const connectionOf = (model: string) => models?.find((m) => m.id === model)?.connection ?? '';

  const run = async (convId: string, history: Message[]) => {
    const conv = convs.current.find((c) => c.id === convId) ?? draft.current;
    if (!conv) return;
    const model = conv.model;
    const reply: Message = {
      id: store.newId(),
      role: 'assistant',
      content: '',
      model,
      status: 'streaming',
      createdAt: Date.now(),
    };
    update(convId, (c) => ({ ...c, messages: [...history, reply], updatedAt: Date.now() }));
    const messages: ChatMessage[] = [];
    if (conv.system.trim()) messages.push({ role: 'system', content: conv.system });
    for (const m of history) {
      if (m.role === 'user') messages.push({ role: 'user', content: m.content });
      else if (!m.error || m.content) {
        const text = answerOnly(m.content);
        if (text) messages.push({ role: 'assistant', content: text });
      }
    }
    const ctrl = new AbortController();
    abort.current = ctrl;
    setBusyId(convId);
    let content = '';
    let reasoning = '';
    let frame = 0;
    let lastSave = 0;
    const patch = (p: Partial<Message>, save: boolean) =>
      update(
        convId,
        (c) => ({ ...c, messages: c.messages.map((m) => (m.id === reply.id ? { ...m, ...p } : m)) }),
        save,
      );
    const flush = () => {
      frame = 0;
      const now = Date.now();
      const save = now - lastSave > 500;
      if (save) lastSave = now;
      patch({ content, ...(reasoning ? { reasoning } : {}) }, save);
    };
    try {
      await streamChat({
        model,
        messages,
        ...(conv.temperature !== undefined ? { temperature: conv.temperature } : {}),
        ...(conv.maxTokens !== undefined ? { maxTokens: conv.maxTokens } : {}),
        signal: ctrl.signal,
        onDelta(d) {
          if (d.content) content += d.content;
          if (d.reasoning) reasoning += d.reasoning;
          if (!frame) frame = requestAnimationFrame(flush);
        },
      });
      cancelAnimationFrame(frame);
      patch({ content, ...(reasoning ? { reasoning } : {}), status: 'done' }, true);
    } catch (err) {
      cancelAnimationFrame(frame);
      if (ctrl.signal.aborted) {
        patch({ content, ...(reasoning ? { reasoning } : {}), status: 'stopped' }, true);
      } else {
        const e = err instanceof ApiError ? err : new ApiError(0, String(err));
        // A 401 is the gateway's own when it refuses the model list with the same key.
        const gatewayAuth =
          e.status === 401 &&
          (await listModels().then(
            () => false,
            (x: unknown) => x instanceof ApiError && x.status === 401,
          ));
        const words = describeError(e, model, connectionOf(model), gatewayAuth);
        if (gatewayAuth) {
          setKeyPrompt({
            open: true,
            reason: `${e.message} Your message is kept; send it again after saving a key.`,
          });
        }
        patch({ content, ...(reasoning ? { reasoning } : {}), status: 'error', error: words }, true);
      }
    } finally {
      abort.current = null;
      setBusyId('');
    }
  };

  const send = (text: string) => {
    const c = active;
    const user: Message = { id: store.newId(), role: 'user', content: text, createdAt: Date.now() };
    const title = c.messages.length === 0 ? store.titleFrom(text) : c.title;
    update(c.id, (x) => ({ ...x, title, messages: [...x.messages, user], updatedAt: Date.now() }));
    if (!activeId) setActiveId(c.id);
    const last: Last = {
      model: c.model,
      system: c.system,
      ...(c.temperature !== undefined ? { temperature: c.temperature } : {}),
      ...(c.maxTokens !== undefined ? { maxTokens: c.maxTokens } : {}),
    };
    localStorage.setItem(LAST_KEY, JSON.stringify(last));
    run(c.id, [...c.messages, user]);
  };

  const changeSettings = (p: Partial<Conversation>) => {
    if (draft.current && draft.current.id === active.id) {
      draft.current = { ...draft.current, ...p };
      render(0);
    } else update(active.id, (c) => ({ ...c, ...p }));
  };

  const newChat = () => {
    draft.current = blankConversation();
    if (models?.[0] && !draft.current.model) draft.current.model = models[0].id;
    setActiveId('');
    setSidebar(false);
    render(0);
  };

  const busy = busyId !== '';
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  useEffect(() => {
    const el = scroller.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });
  useEffect(() => {
    stick.current = true;
  }, [active.id]);

  const knownModel = useMemo(
    () => !models || models.some((m) => m.id === active.model),
    [models, active.model],
  );
  const nextTheme: Theme = theme === 'system' ? 'light' : theme === 'light' ? 'dark' : 'system';

  return (
    <div class={`app${sidebar ? ' sidebar-open' : ''}`}>
      <button
        type="button"
        class="skip"
        onClick={() => {
          // Moves focus without touching the hash route.
          const main = document.getElementById('main');
          main?.setAttribute('tabindex', '-1');
          main?.focus();
        }}
      >
        Skip to content
      </button>
      <header class="topbar">
        {route === 'chat' && (
          <button
            type="button"
            class="icon-btn menu-btn"
            aria-label={sidebar ? 'Hide conversations' : 'Show conversations'}
            aria-expanded={sidebar}
            onClick={() => setSidebar(!sidebar)}
          >
            <Icon name="menu" />
          </button>
        )}
        <a class="brand" href="#/">
          Plugboard
        </a>
        <nav class="tabs" aria-label="Views">
          <a href="#/" aria-current={route === 'chat' ? 'page' : undefined}>
            Chat
          </a>
          <a href="#/status" aria-current={route === 'status' ? 'page' : undefined}>
            Status
          </a>
        </nav>
        <span class="spacer" />
        <button
          type="button"
          class="icon-btn"
          aria-label={getApiKey() ? 'Change API key' : 'Set API key'}
          title={getApiKey() ? 'API key set (click to change)' : 'Set API key'}
          onClick={() => setKeyPrompt({ open: true, reason: 'Enter the API key for this gateway.' })}
        >
          <Icon name="key" />
        </button>
        <button
          type="button"
          class="icon-btn"
          aria-label={`Theme: ${theme}. Switch to ${nextTheme}`}
          title={`Theme: ${theme}`}
          onClick={() => setTheme(nextTheme)}
        >
          <Icon name={theme === 'system' ? 'auto' : theme === 'light' ? 'sun' : 'moon'} />
        </button>
      </header>

      {route === 'status' ? (
        <StatusView keyVersion={keyVersion} onNeedKey={(reason) => setKeyPrompt({ open: true, reason })} />
      ) : (
        <div class="chat-layout">
          <Sidebar
            convs={convs.current}
            activeId={activeId}
            onSelect={(id) => {
              draft.current = null;
              setActiveId(id);
              setSidebar(false);
            }}
            onNew={newChat}
            onRename={(id, title) => update(id, (c) => ({ ...c, title }))}
            onDelete={(id) => {
              if (busyId === id) abort.current?.abort();
              store.remove(id, convs.current);
              convs.current = convs.current.filter((c) => c.id !== id);
              if (id === activeId) {
                const next = convs.current[0];
                if (next) setActiveId(next.id);
                else newChat();
              }
              render(0);
            }}
            onExport={(id, format) => {
              const c = convs.current.find((x) => x.id === id);
              if (!c) return;
              const name = store.fileSlug(c.title);
              if (format === 'md') store.download(`${name}.md`, store.toMarkdown(c), 'text/markdown');
              else store.download(`${name}.json`, JSON.stringify(c, null, 2), 'application/json');
            }}
          />
          <button
            type="button"
            class="scrim"
            aria-label="Close conversations"
            tabIndex={-1}
            onClick={() => setSidebar(false)}
          />
          <main class="chat" id="main">
            <div class="chat-head">
              <ModelPicker
                models={models}
                value={active.model}
                onChange={(model) => changeSettings({ model })}
                {...(modelsError ? { error: modelsError } : {})}
              />
              <button
                type="button"
                class={`icon-btn${settings ? ' on' : ''}`}
                aria-label="Conversation settings"
                aria-expanded={settings}
                aria-controls="settings"
                onClick={() => setSettings(!settings)}
              >
                <Icon name="sliders" />
              </button>
            </div>
            {settings && (
              <div id="settings">
                <SettingsPanel conv={active} onChange={changeSettings} />
              </div>
            )}
            {modelsError && (
              <div class="alert" role="alert">
                {modelsError}{' '}
                <button type="button" class="btn small" onClick={loadModels}>
                  Retry
                </button>
              </div>
            )}
            {!knownModel && active.model && (
              <div class="alert warn" role="status">
                Model <code>{active.model}</code> is not offered by the gateway any more; choose another to
                continue.
              </div>
            )}
            {storageWarning && (
              <div class="alert warn" role="alert">
                This browser's storage is full: new messages are shown but may not be kept. Export or delete
                old conversations.
              </div>
            )}
            <div
              class="messages"
              ref={scroller}
              role="log"
              aria-label="Messages"
              aria-live="polite"
              onScroll={(e) => {
                const el = e.currentTarget;
                stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
              }}
            >
              {active.messages.length === 0 ? (
                <div class="empty">
                  <h1>What can I help with?</h1>
                  <p class="muted">
                    {models?.length
                      ? `${models.length} model${models.length === 1 ? '' : 's'} available through this gateway.`
                      : ''}
                  </p>
                </div>
              ) : (
                active.messages.map((m, i) => (
                  <MessageView
                    key={m.id}
                    m={m}
                    busy={busy}
                    {...(m.role === 'user'
                      ? {
                          onEdit: (text: string) => {
                            const edited: Message = {
                              ...m,
                              id: store.newId(),
                              content: text,
                              createdAt: Date.now(),
                            };
                            const history = [...active.messages.slice(0, i), edited];
                            run(active.id, history);
                          },
                        }
                      : {
                          onRegenerate: () => run(active.id, active.messages.slice(0, i)),
                        })}
                  />
                ))
              )}
            </div>
            <Composer
              busy={busy}
              canSend={!!active.model && knownModel}
              onSend={send}
              onStop={() => abort.current?.abort()}
            />
          </main>
        </div>
      )}
      <KeyDialog
        open={keyPrompt.open}
        reason={keyPrompt.reason}
        onCancel={() => setKeyPrompt({ open: false, reason: '' })}
        onSave={(key) => {
          setApiKey(key);
          setKeyPrompt({ open: false, reason: '' });
          setKeyVersion((v) => v + 1);
        }}
      />
    </div>
  );
}
