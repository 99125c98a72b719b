/**
 * Conversations, kept in this browser only (localStorage): an index plus one entry per conversation, so saving
 * the conversation being streamed into does not rewrite the others.
 */
import { splitThink } from './think.ts';

export interface MessageError {
  title: string;
  detail: string;
}

export interface Message {
  id: string;
  role: 'user' | 'assistant';
  /** As received: may contain <think> blocks, which the view separates. */
  content: string;
  /** reasoning_content deltas. */
  reasoning?: string;
  model?: string;
  status?: 'streaming' | 'done' | 'stopped' | 'error';
  error?: MessageError;
  createdAt: number;
}

export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  model: string;
  system: string;
  temperature?: number;
  maxTokens?: number;
  messages: Message[];
}

interface IndexEntry {
  id: string;
  title: string;
  updatedAt: number;
}

const INDEX = 'plugboard.conversations';
const PREFIX = 'plugboard.conversation.';

export function newId(): string {
  return crypto.randomUUID?.() ?? `${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
}

function readJson<T>(key: string): T | undefined {
  try {
    const s = localStorage.getItem(key);
    return s ? (JSON.parse(s) as T) : undefined;
  } catch {
    return undefined;
  }
}

export function loadAll(): Conversation[] {
  const index = readJson<IndexEntry[]>(INDEX) ?? [];
  const out: Conversation[] = [];
  for (const e of index) {
    const c = readJson<Conversation>(PREFIX + e.id);
    if (!c) continue;
    // A reply that was streaming when the page closed is kept as far as it got.
    for (const m of c.messages) if (m.status === 'streaming') m.status = 'stopped';
    out.push(c);
  }
  return out.sort((a, b) => b.updatedAt - a.updatedAt);
}

/** Saves one conversation; returns false when the browser's storage is full. */
export function save(conv: Conversation, all: Conversation[]): boolean {
  try {
    localStorage.setItem(PREFIX + conv.id, JSON.stringify(conv));
    writeIndex(all);
    return true;
  } catch {
    return false;
  }
}

function writeIndex(all: Conversation[]): void {
  const index: IndexEntry[] = all.map((c) => ({ id: c.id, title: c.title, updatedAt: c.updatedAt }));
  localStorage.setItem(INDEX, JSON.stringify(index));
}

export function remove(id: string, all: Conversation[]): void {
  try {
    localStorage.removeItem(PREFIX + id);
    writeIndex(all.filter((c) => c.id !== id));
  } catch {
    // nothing to free
  }
}

export function titleFrom(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || 'New chat';
}

export function toMarkdown(c: Conversation): string {
  const lines = [`# ${c.title}`, ''];
  lines.push(`- Model: \`${c.model}\``, `- Exported: ${new Date().toISOString()}`);
  if (c.temperature !== undefined) lines.push(`- Temperature: ${c.temperature}`);
  if (c.maxTokens !== undefined) lines.push(`- Max tokens: ${c.maxTokens}`);
  lines.push('');
  if (c.system.trim()) lines.push('## System', '', c.system.trim(), '');
  for (const m of c.messages) {
    if (m.role === 'user') {
      lines.push('## User', '', m.content, '');
      continue;
    }
    const { thinking, answer } = splitThink(m.content);
    const reasoning = [m.reasoning?.trim(), thinking].filter(Boolean).join('\n\n');
    lines.push(`## Assistant${m.model ? ` (${m.model})` : ''}`, '');
    if (reasoning) lines.push('<details><summary>Thinking</summary>', '', reasoning, '', '</details>', '');
    if (answer) lines.push(answer, '');
    if (m.error) lines.push(`> **Error:** ${m.error.title}: ${m.error.detail}`, '');
  }
  return lines.join('\n');
}

export function download(filename: string, text: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function fileSlug(title: string): string {
  return (
    title
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '')
      .slice(0, 50) || 'chat'
  );
}
