import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { ModelInfo } from './api.ts';
import { Icon } from './widgets.tsx';

const MAX_SHOWN = 300;

interface Group {
  label: string;
  tags: string[];
  models: ModelInfo[];
}

export function groupModels(models: ModelInfo[], query: string): { groups: Group[]; total: number } {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const byKey = new Map<string, Group>();
  let total = 0;
  for (const m of models) {
    const label = m.connection || m.ownedBy || 'Other';
    const hay = `${m.id} ${label} ${m.tags.join(' ')}`.toLowerCase();
    if (!words.every((w) => hay.includes(w))) continue;
    total++;
    let g = byKey.get(label);
    if (!g) {
      g = { label, tags: m.tags, models: [] };
      byKey.set(label, g);
    }
    g.models.push(m);
  }
  const groups = [...byKey.values()].sort((a, b) => a.label.localeCompare(b.label));
  for (const g of groups) g.models.sort((a, b) => a.id.localeCompare(b.id));
  return { groups, total };
}

/** Searchable model combobox, grouped by connection (and its tags); renders at most MAX_SHOWN options. */
export function ModelPicker({
  models,
  value,
  onChange,
  error,
}: {
  models: ModelInfo[] | null;
  value: string;
  onChange: (id: string) => void;
  error?: string;
}) {
  const [open, setOpen] = useState(false);
  const [query, setQuery] = useState('');
  const [active, setActive] = useState(0);
  const root = useRef<HTMLDivElement>(null);
  const button = useRef<HTMLButtonElement>(null);
  const input = useRef<HTMLInputElement>(null);
  const { groups, total } = useMemo(() => groupModels(models ?? [], query), [models, query]);
  const flat = useMemo(() => groups.flatMap((g) => g.models).slice(0, MAX_SHOWN), [groups]);

  useEffect(() => {
    if (!open) return;
    input.current?.focus();
    const i = flat.findIndex((m) => m.id === value);
    setActive(Math.max(i, 0));
    const onDown = (e: PointerEvent) => {
      if (!root.current?.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener('pointerdown', onDown);
    return () => document.removeEventListener('pointerdown', onDown);
  }, [open]);

  useEffect(() => {
    document.getElementById(`model-opt-${active}`)?.scrollIntoView({ block: 'nearest' });
  }, [active, open]);

  const choose = (id: string) => {
    onChange(id);
    setOpen(false);
    setQuery('');
    button.current?.focus();
  };

  const onKey = (e: { key: string; preventDefault(): void }) => {
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      setActive((a) => Math.min(a + 1, flat.length - 1));
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      setActive((a) => Math.max(a - 1, 0));
    } else if (e.key === 'Enter') {
      e.preventDefault();
      const m = flat[active];
      if (m) choose(m.id);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      setOpen(false);
      button.current?.focus();
    }
  };

  let index = 0;
  const label =
    value || (models === null ? 'Loading models…' : models.length ? 'Choose a model' : 'No models');
  return (
    <div class="picker" ref={root}>
      <button
        ref={button}
        type="button"
        class="picker-button"
        aria-haspopup="listbox"
        aria-expanded={open}
        aria-label={`Model: ${value || 'none chosen'}. Change model`}
        title={error ?? value}
        onClick={() => setOpen(!open)}
      >
        <span class="picker-value">{label}</span>
        <Icon name="chevron" size={16} />
      </button>
      {open && (
        <div class="picker-pop">
          <input
            ref={input}
            type="search"
            // biome-ignore lint/a11y/noRedundantRoles: without a list attribute the role is needed.
            role="combobox"
            list={undefined}
            aria-label="Search models"
            aria-expanded="true"
            aria-controls="model-list"
            aria-autocomplete="list"
            aria-activedescendant={flat.length ? `model-opt-${active}` : undefined}
            placeholder={`Search ${models?.length ?? 0} models`}
            value={query}
            onInput={(e) => {
              setQuery(e.currentTarget.value);
              setActive(0);
            }}
            onKeyDown={onKey}
          />
          <div id="model-list" role="listbox" aria-label="Models" class="picker-list">
            {error && <p class="picker-empty">{error}</p>}
            {!error && total === 0 && <p class="picker-empty">No model matches “{query}”.</p>}
            {groups.map((g, gi) => {
              if (index >= MAX_SHOWN) return null;
              return (
                // biome-ignore lint/a11y/useSemanticElements: ARIA listbox groups are role=group, not fieldsets.
                <div role="group" aria-labelledby={`model-group-${gi}`} key={g.label}>
                  <div id={`model-group-${gi}`} class="picker-group">
                    {g.label}
                    {g.tags.map((t) => (
                      <span class="tag" key={t}>
                        {t}
                      </span>
                    ))}
                  </div>
                  {g.models.map((m) => {
                    if (index >= MAX_SHOWN) return null;
                    const i = index++;
                    return (
                      // biome-ignore lint/a11y/useKeyWithClickEvents: keyboard handled by the combobox input.
                      <div
                        key={m.id}
                        id={`model-opt-${i}`}
                        role="option"
                        tabIndex={-1}
                        aria-selected={m.id === value}
                        class={`picker-option${i === active ? ' active' : ''}`}
                        onClick={() => choose(m.id)}
                        onPointerMove={() => setActive(i)}
                      >
                        {m.id}
                      </div>
                    );
                  })}
                </div>
              );
            })}
            {total > MAX_SHOWN && (
              <p class="picker-empty">
                Showing {MAX_SHOWN} of {total}; type to narrow the list.
              </p>
            )}
          </div>
        </div>
      )}
    </div>
  );
}
