import { useEffect, useState } from 'preact/hooks';
import { ApiError, listConnections, type PublicConnection, type PublicConnections } from './api.ts';
import { Icon, relativeTime } from './widgets.tsx';

function Condition({ label, c }: { label: string; c: PublicConnection['ready'] }) {
  const tone = c.status === 'True' ? 'ok' : c.status === 'False' ? 'bad' : 'unknown';
  return (
    <div class="cond">
      <dt>{label}</dt>
      <dd>
        <span class={`badge ${tone}`}>
          {c.status === 'True' ? label : c.status === 'False' ? `Not ${label.toLowerCase()}` : 'Unknown'}
        </span>
        {c.reason && <span class="reason">{c.reason}</span>}
        {c.message && <span class="message">{c.message}</span>}
      </dd>
    </div>
  );
}

function ConnectionCard({ c, now }: { c: PublicConnection; now: number }) {
  const id = `conn-${c.namespace}-${c.name}`;
  const ok = c.ready.status === 'True';
  return (
    <article class={`conn ${ok ? 'conn-ok' : 'conn-bad'}`} aria-labelledby={id}>
      <header class="conn-head">
        <h2 id={id}>
          <span class="ns">{c.namespace}/</span>
          {c.name}
        </h2>
        <span class="badge provider">{c.provider}</span>
        {!c.serving && <span class="badge bad">not serving</span>}
        {c.tags.map((t) => (
          <span class="tag" key={t}>
            {t}
          </span>
        ))}
      </header>
      <dl class="conn-facts">
        <div>
          <dt>URL</dt>
          <dd class="mono">{c.url}</dd>
        </div>
        <Condition label="Ready" c={c.ready} />
        <Condition label="Verified" c={c.verified} />
        <div>
          <dt>Last verified</dt>
          <dd>
            {c.lastVerifiedTime ? (
              <time dateTime={c.lastVerifiedTime} title={c.lastVerifiedTime}>
                {relativeTime(c.lastVerifiedTime, now)}
              </time>
            ) : (
              'never'
            )}
          </dd>
        </div>
        <div>
          <dt>Models</dt>
          <dd>
            {c.exposedModelCount} exposed
            {c.discoveredModelCount !== undefined && ` of ${c.discoveredModelCount} discovered`}
            {c.modelPrefix && (
              <>
                {' '}
                · prefix <code>{c.modelPrefix}.</code>
              </>
            )}
          </dd>
        </div>
      </dl>
      {c.models.length > 0 && (
        <details class="conn-models" open={c.models.length <= 12}>
          <summary>
            {c.models.length} model{c.models.length === 1 ? '' : 's'}
          </summary>
          <ul>
            {c.models.slice(0, 500).map((m) => (
              <li key={m} class="mono">
                {m}
              </li>
            ))}
            {c.models.length > 500 && <li>… and {c.models.length - 500} more</li>}
          </ul>
        </details>
      )}
    </article>
  );
}

export function StatusView({
  onNeedKey,
  keyVersion,
}: {
  onNeedKey: (reason: string) => void;
  keyVersion: number;
}) {
  const [data, setData] = useState<PublicConnections | null>(null);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(false);
  const [now, setNow] = useState(Date.now());

  const load = async () => {
    setLoading(true);
    try {
      setData(await listConnections());
      setError('');
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, String(err));
      if (e.status === 401) onNeedKey(e.message);
      setError(e.status ? `${e.message} (HTTP ${e.status})` : e.message);
    } finally {
      setLoading(false);
      setNow(Date.now());
    }
  };

  useEffect(() => {
    load();
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') load();
    }, 30_000);
    return () => clearInterval(t);
  }, [keyVersion]);

  const conns = data?.connections ?? [];
  const ready = conns.filter((c) => c.ready.status === 'True').length;
  return (
    <main class="status" id="main" aria-labelledby="status-title">
      <div class="status-head">
        <h1 id="status-title">Connections</h1>
        <p class="summary" aria-live="polite">
          {data
            ? `${conns.length} connection${conns.length === 1 ? '' : 's'} · ${ready} ready · ${conns.length - ready} not ready`
            : loading
              ? 'Loading…'
              : ''}
          {data && (
            <span class="muted">
              {' '}
              · snapshot {data.generation}, {relativeTime(data.generatedAt, now)}
            </span>
          )}
        </p>
        <button type="button" class="btn" onClick={load} disabled={loading} aria-label="Refresh connections">
          <Icon name="retry" size={16} /> Refresh
        </button>
      </div>
      {error && (
        <div class="alert" role="alert">
          <strong>Could not load the connections.</strong> {error}
        </div>
      )}
      {data && conns.length === 0 && <p class="muted">No connections are configured yet.</p>}
      <div class="conn-list">
        {[...conns]
          .sort(
            (a, b) =>
              Number(a.ready.status === 'True') - Number(b.ready.status === 'True') ||
              `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
          )
          .map((c) => (
            <ConnectionCard key={`${c.namespace}/${c.name}`} c={c} now={now} />
          ))}
      </div>
    </main>
  );
}
