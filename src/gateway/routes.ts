import type { RequestTarget } from './request-target.ts';
import { type Endpoint, JSON_ENDPOINTS, MULTIPART_ENDPOINTS } from './upstream.ts';

/**
 * Every route the gateway serves, in one table: what each serves, who may call it, and which part of the
 * gateway answers. Authentication is deny-by-default: a route needs a client key (when keys are configured)
 * unless it says `access: 'public'`, and the public ones are exactly these:
 * - `GET /healthz` and `GET /readyz`: the kubelet's probes carry no key;
 * - `GET /openapi.json`: the API's description, the same for everyone (no connections, models or keys in it);
 * - `GET /` and the chat UI's static files: the page asks for a key before it calls the API.
 * `/metrics` is public only on its own listener (`--metrics-listen`, what the chart scrapes); on the API port it
 * needs a key like any other route.
 */
export type Access = 'public' | 'client';

/** Which part answers: the node:http data plane (`json`, `multipart`) or the fastify app (`app`). */
export type Serve = 'json' | 'multipart' | 'app';

export interface Route {
  readonly method: 'GET' | 'POST';
  /** The route as documented (`/v1/models/{model}`); also its name in logs and metrics. */
  readonly path: string;
  readonly access: Access;
  readonly serve: Serve;
  /** The proxied endpoint, for `json` and `multipart` routes. */
  readonly endpoint?: Endpoint;
  /** The last segment is a parameter that takes the rest of the path: a model ID may contain `/`. */
  readonly restParam?: boolean;
}

/** The chat UI: any other GET outside `/v1` and `/api`, when the gateway serves a UI. */
export const UI_ROUTE: Route = Object.freeze({ method: 'GET', path: '/*', access: 'public', serve: 'app' });

export const ROUTES: readonly Route[] = Object.freeze([
  { method: 'GET', path: '/healthz', access: 'public', serve: 'app' },
  { method: 'GET', path: '/readyz', access: 'public', serve: 'app' },
  { method: 'GET', path: '/openapi.json', access: 'public', serve: 'app' },
  { method: 'GET', path: '/', access: 'public', serve: 'app' },
  { method: 'GET', path: '/metrics', access: 'client', serve: 'app' },
  { method: 'GET', path: '/v1/models', access: 'client', serve: 'app' },
  { method: 'GET', path: '/v1/models/{model}', access: 'client', serve: 'app', restParam: true },
  { method: 'GET', path: '/api/connections', access: 'client', serve: 'app' },
  ...JSON_ENDPOINTS.map(
    (endpoint): Route => ({
      method: 'POST',
      path: `/v1/${endpoint}`,
      access: 'client',
      serve: 'json',
      endpoint,
    }),
  ),
  ...MULTIPART_ENDPOINTS.map(
    (endpoint): Route => ({
      method: 'POST',
      path: `/v1/${endpoint}`,
      access: 'client',
      serve: 'multipart',
      endpoint,
    }),
  ),
] satisfies Route[]);

export type RouteMatch =
  | { kind: 'route'; route: Route /** The decoded rest parameter (a model ID). */; param?: string }
  /** The path exists, with other methods. */
  | { kind: 'method'; allow: string[] }
  /** An encoded `/` where no parameter takes one. */
  | { kind: 'ambiguous' }
  | { kind: 'none' };

/** Matches canonical targets against the route table; the UI route only when `ui` is set. */
export class Router {
  private readonly exact = new Map<string, Route[]>();
  private readonly rest: { prefix: string[]; route: Route }[] = [];
  private readonly ui: boolean;
  private readonly matches = new Map<Route, RouteMatch>();

  constructor(routes: readonly Route[] = ROUTES, opts: { ui?: boolean } = {}) {
    this.ui = opts.ui ?? false;
    for (const r of routes) {
      if (r.restParam) {
        this.rest.push({ prefix: r.path.split('/').slice(1, -1), route: r });
        continue;
      }
      const list = this.exact.get(r.path) ?? [];
      list.push(r);
      this.exact.set(r.path, list);
    }
  }

  match(method: string, t: RequestTarget): RouteMatch {
    const m = method === 'HEAD' ? 'GET' : method;
    let candidates: readonly Route[] | undefined = t.encodedSlash ? undefined : this.exact.get(t.path);
    let param: string | undefined;
    if (!candidates) {
      for (const { prefix, route } of this.rest) {
        if (t.segments.length <= prefix.length) continue;
        if (!prefix.every((s, i) => t.segments[i] === s)) continue;
        candidates = [route];
        param = t.segments.slice(prefix.length).join('/');
        break;
      }
    }
    if (candidates) {
      for (const route of candidates) {
        if (route.method !== m) continue;
        if (param === undefined) return this.found(route);
        return { kind: 'route', route, param };
      }
      const allow: string[] = [...new Set(candidates.map((r) => r.method))];
      if (allow.includes('GET')) allow.push('HEAD');
      return { kind: 'method', allow };
    }
    if (t.encodedSlash) return { kind: 'ambiguous' };
    if (this.ui && m === 'GET' && t.segments[0] !== 'v1' && t.segments[0] !== 'api')
      return this.found(UI_ROUTE);
    return NONE;
  }

  /** One frozen match per route: the common case allocates nothing. */
  private found(route: Route): RouteMatch {
    let m = this.matches.get(route);
    if (!m) {
      m = Object.freeze({ kind: 'route', route }) as RouteMatch;
      this.matches.set(route, m);
    }
    return m;
  }
}

const NONE: RouteMatch = Object.freeze({ kind: 'none' });
