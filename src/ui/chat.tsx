import { useEffect, useRef, useState } from 'preact/hooks';
import type { Conversation, Message } from './store.ts';
import { splitThink } from './think.ts';
import { copyText, Icon, Markdown } from './widgets.tsx';

export function MessageView({
  m,
  busy,
  onEdit,
  onRegenerate,
}: {
  m: Message;
  busy: boolean;
  onEdit?: (text: string) => void;
  onRegenerate?: () => void;
}) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(m.content);
  const [copied, setCopied] = useState(false);
  const streaming = m.status === 'streaming';

  if (m.role === 'user') {
    return (
      <article class="msg user" aria-label="You said">
        {editing ? (
          <form
            class="edit"
            onSubmit={(e) => {
              e.preventDefault();
              if (!draft.trim()) return;
              setEditing(false);
              onEdit?.(draft);
            }}
          >
            <textarea
              aria-label="Edit message"
              value={draft}
              rows={Math.min(12, draft.split('\n').length + 1)}
              onInput={(e) => setDraft(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === 'Escape') setEditing(false);
              }}
            />
            <div class="row end">
              <button type="button" class="btn" onClick={() => setEditing(false)}>
                Cancel
              </button>
              <button type="submit" class="btn primary" disabled={busy}>
                Save &amp; send
              </button>
            </div>
          </form>
        ) : (
          <>
            <div class="bubble">{m.content}</div>
            <div class="msg-actions">
              <button
                type="button"
                class="icon-btn"
                aria-label="Edit and resend"
                title="Edit and resend"
                disabled={busy}
                onClick={() => {
                  setDraft(m.content);
                  setEditing(true);
                }}
              >
                <Icon name="edit" size={16} />
              </button>
            </div>
          </>
        )}
      </article>
    );
  }

  const { thinking, answer, open } = splitThink(m.content, streaming);
  const reasoning = [m.reasoning?.trim(), thinking].filter(Boolean).join('\n\n');
  const stillThinking = streaming && (open || (!answer && !!reasoning));
  return (
    <article class="msg assistant" aria-label={`${m.model ?? 'Assistant'} replied`} aria-busy={streaming}>
      {m.model && <div class="msg-model">{m.model}</div>}
      {reasoning && (
        <details class="thinking">
          <summary>{stillThinking ? 'Thinking…' : 'Thinking'}</summary>
          <Markdown text={reasoning} class="md thinking-body" />
        </details>
      )}
      {answer ? (
        <Markdown text={answer} />
      ) : streaming && !reasoning ? (
        <div class="typing" role="status" aria-label="Waiting for the reply">
          <span />
          <span />
          <span />
        </div>
      ) : null}
      {m.status === 'stopped' && <p class="muted small">Stopped.</p>}
      {m.error && (
        <div class="alert" role="alert">
          <strong>{m.error.title}.</strong> <span>{m.error.detail}</span>
        </div>
      )}
      {!streaming && (
        <div class="msg-actions">
          {answer && (
            <button
              type="button"
              class="icon-btn"
              aria-label="Copy reply"
              title={copied ? 'Copied' : 'Copy reply'}
              onClick={async () => {
                setCopied(await copyText(answer));
                setTimeout(() => setCopied(false), 1500);
              }}
            >
              <Icon name="copy" size={16} />
            </button>
          )}
          {onRegenerate && (
            <button
              type="button"
              class="icon-btn"
              aria-label="Regenerate reply"
              title="Regenerate"
              disabled={busy}
              onClick={onRegenerate}
            >
              <Icon name="retry" size={16} />
            </button>
          )}
          {copied && (
            <span class="muted small" role="status">
              Copied
            </span>
          )}
        </div>
      )}
    </article>
  );
}

export function Composer({
  busy,
  canSend,
  onSend,
  onStop,
}: {
  busy: boolean;
  canSend: boolean;
  onSend: (text: string) => void;
  onStop: () => void;
}) {
  const [text, setText] = useState('');
  const ta = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const el = ta.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [text]);
  const send = () => {
    if (!text.trim() || busy || !canSend) return;
    onSend(text);
    setText('');
  };
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <textarea
        ref={ta}
        rows={1}
        aria-label="Message"
        placeholder={canSend ? 'Message (Enter to send, Shift+Enter for a new line)' : 'Choose a model first'}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      {busy ? (
        <button type="button" class="send stop" aria-label="Stop generating" title="Stop" onClick={onStop}>
          <Icon name="stop" />
        </button>
      ) : (
        <button
          type="submit"
          class="send"
          aria-label="Send message"
          title="Send"
          disabled={!text.trim() || !canSend}
        >
          <Icon name="send" />
        </button>
      )}
    </form>
  );
}

export function SettingsPanel({
  conv,
  onChange,
}: {
  conv: Conversation;
  onChange: (patch: Partial<Conversation>) => void;
}) {
  const num = (v: string) => (v.trim() === '' ? undefined : Number(v));
  return (
    <section class="settings" aria-label="Conversation settings">
      <label for="system-prompt">System prompt</label>
      <textarea
        id="system-prompt"
        rows={3}
        value={conv.system}
        placeholder="You are a helpful assistant."
        onInput={(e) => onChange({ system: e.currentTarget.value })}
      />
      <div class="settings-row">
        <div>
          <label for="temperature">
            Temperature <span class="muted">{conv.temperature ?? 'default'}</span>
          </label>
          <div class="row">
            <input
              id="temperature"
              type="range"
              min="0"
              max="2"
              step="0.1"
              value={conv.temperature ?? 1}
              onInput={(e) => onChange({ temperature: Number(e.currentTarget.value) })}
            />
            <button
              type="button"
              class="btn small"
              onClick={() => onChange({ temperature: undefined })}
              aria-label="Use the model's default temperature"
            >
              Default
            </button>
          </div>
        </div>
        <div>
          <label for="max-tokens">Max tokens</label>
          <input
            id="max-tokens"
            type="number"
            min="1"
            step="1"
            inputMode="numeric"
            placeholder="default"
            value={conv.maxTokens ?? ''}
            onInput={(e) => {
              const n = num(e.currentTarget.value);
              onChange({ maxTokens: n && n > 0 ? Math.floor(n) : undefined });
            }}
          />
        </div>
      </div>
    </section>
  );
}

export function Sidebar({
  convs,
  activeId,
  onSelect,
  onNew,
  onRename,
  onDelete,
  onExport,
}: {
  convs: Conversation[];
  activeId: string;
  onSelect: (id: string) => void;
  onNew: () => void;
  onRename: (id: string, title: string) => void;
  onDelete: (id: string) => void;
  onExport: (id: string, format: 'md' | 'json') => void;
}) {
  const [renaming, setRenaming] = useState('');
  const [draft, setDraft] = useState('');
  return (
    <nav class="sidebar" aria-label="Conversations">
      <button type="button" class="btn new-chat" onClick={onNew}>
        <Icon name="plus" size={16} /> New chat
      </button>
      <ul class="conv-list">
        {convs.map((c) => (
          <li key={c.id} class={c.id === activeId ? 'active' : ''}>
            {renaming === c.id ? (
              <form
                onSubmit={(e) => {
                  e.preventDefault();
                  onRename(c.id, draft.trim() || c.title);
                  setRenaming('');
                }}
              >
                <input
                  aria-label="Conversation name"
                  value={draft}
                  // biome-ignore lint/a11y/noAutofocus: the user just asked to rename.
                  autoFocus
                  onInput={(e) => setDraft(e.currentTarget.value)}
                  onBlur={() => {
                    onRename(c.id, draft.trim() || c.title);
                    setRenaming('');
                  }}
                  onKeyDown={(e) => {
                    if (e.key === 'Escape') setRenaming('');
                  }}
                />
              </form>
            ) : (
              <>
                <button
                  type="button"
                  class="conv-title"
                  aria-current={c.id === activeId ? 'page' : undefined}
                  onClick={() => onSelect(c.id)}
                  title={c.title}
                >
                  {c.title}
                </button>
                <details class="conv-menu">
                  <summary aria-label={`Actions for ${c.title}`} title="Actions">
                    ⋯
                  </summary>
                  <div class="menu">
                    <button
                      type="button"
                      onClick={(e) => {
                        (e.currentTarget.closest('details') as HTMLDetailsElement).open = false;
                        setDraft(c.title);
                        setRenaming(c.id);
                      }}
                    >
                      <Icon name="pencil" size={14} /> Rename
                    </button>
                    <button type="button" onClick={() => onExport(c.id, 'md')}>
                      <Icon name="download" size={14} /> Export Markdown
                    </button>
                    <button type="button" onClick={() => onExport(c.id, 'json')}>
                      <Icon name="download" size={14} /> Export JSON
                    </button>
                    <button
                      type="button"
                      class="danger"
                      onClick={() => {
                        if (confirm(`Delete “${c.title}”? This cannot be undone.`)) onDelete(c.id);
                      }}
                    >
                      <Icon name="trash" size={14} /> Delete
                    </button>
                  </div>
                </details>
              </>
            )}
          </li>
        ))}
      </ul>
      <p class="muted small sidebar-foot">Conversations are kept in this browser only.</p>
    </nav>
  );
}
