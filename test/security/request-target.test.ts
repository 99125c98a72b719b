/**
 * The request-target normaliser and the router (issue 13): every spelling of a route that a server or a proxy
 * might read as that route reads as it here too, and every spelling two readers could disagree on is refused.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isRefusal, parseRequestTarget, type RequestTarget } from '../../src/gateway/request-target.ts';
import { ROUTES, Router, UI_ROUTE } from '../../src/gateway/routes.ts';
import { propertyRun } from '../support/property.ts';
import { REFUSED_TARGETS, spelling } from './spellings.ts';

const read = (raw: string): RequestTarget => {
  const t = parseRequestTarget(raw);
  if (isRefusal(t)) throw new Error(`${raw} refused: ${t.reason}`);
  return t;
};

describe('request target normaliser', () => {
  it('reads every spelling of every route as the route', () => {
    const paths = ROUTES.map((r) => r.path.replace('{model}', 'gpt-4o'));
    fc.assert(
      fc.property(
        fc.constantFrom(...paths).chain((p) => fc.tuple(fc.constant(p), spelling(p))),
        ([path, raw]) => {
          expect(read(raw).path, raw).toBe(path);
        },
      ),
      propertyRun('spellings read as the route', 2000),
    );
  });

  it('is idempotent and its canonical form has no dot or empty segments and upper-case escapes', () => {
    const char = fc.constantFrom(..."abz09-._~!$&'()*+,=:@/%2F%2f%41%7e%C3%A9%20.".split(''));
    fc.assert(
      fc.property(fc.array(char, { maxLength: 40 }), (chars) => {
        const raw = `/${chars.join('')}`;
        const t = parseRequestTarget(raw);
        if (isRefusal(t)) return;
        expect(t.path).not.toMatch(/\/\/|\/\.\.?(\/|$)|%[0-9a-f][a-f]|%[a-f]/);
        const again = read(t.path);
        expect(again.path).toBe(t.path);
        expect(again.segments).toEqual(t.segments);
      }),
      propertyRun('idempotent', 3000),
    );
  });

  it.each(REFUSED_TARGETS)('refuses %s', (_why, raw) => {
    expect(isRefusal(parseRequestTarget(raw))).toBe(true);
  });

  it('keeps an encoded / inside its segment and never reads it as a separator', () => {
    const t = read('/v1/models/vendor%2fmodel:tag');
    expect(t.segments).toEqual(['v1', 'models', 'vendor/model:tag']);
    expect(t.path).toBe('/v1/models/vendor%2Fmodel:tag');
    expect(t.encodedSlash).toBe(true);
    expect(read('/v1%2Fmodels').segments).toEqual(['v1/models']);
  });
});

describe('router', () => {
  const router = new Router(ROUTES, { ui: true });
  const match = (method: string, raw: string) => router.match(method, read(raw));

  it('finds every route by its own path, HEAD as GET', () => {
    for (const r of ROUTES) {
      const path = r.path.replace('{model}', 'gpt-4o');
      expect(match(r.method, path)).toMatchObject({ kind: 'route', route: r });
      if (r.method === 'GET') expect(match('HEAD', path)).toMatchObject({ kind: 'route', route: r });
    }
  });

  it('takes a model ID with / (plain or encoded) as the rest parameter', () => {
    for (const raw of [
      '/v1/models/vendor/model:tag',
      '/v1/models/vendor%2Fmodel:tag',
      '/v1//models/./vendor/model:tag',
    ])
      expect(match('GET', raw)).toMatchObject({ kind: 'route', param: 'vendor/model:tag' });
  });

  it('refuses an encoded / anywhere but in the model ID', () => {
    for (const raw of [
      '/v1%2Fmodels',
      '/v1%2Fchat/completions',
      '/v1/chat%2Fcompletions',
      '/api%2Fconnections',
    ])
      expect(match(raw.includes('chat') ? 'POST' : 'GET', raw).kind, raw).toBe('ambiguous');
    // and the UI never receives one
    expect(match('GET', '/assets%2Findex.js').kind).toBe('ambiguous');
  });

  it('answers 405 for a known path with another method, and nothing for unknown API paths', () => {
    expect(match('GET', '/v1/chat/completions')).toEqual({ kind: 'method', allow: ['POST'] });
    expect(match('DELETE', '/v1/models')).toEqual({ kind: 'method', allow: ['GET', 'HEAD'] });
    expect(match('GET', '/v1/nothing').kind).toBe('none');
    expect(match('GET', '/api/nothing').kind).toBe('none');
    expect(match('POST', '/anything').kind).toBe('none');
    // matching is case-sensitive, as OpenAI's API is
    expect(match('POST', '/V1/chat/completions').kind).toBe('none');
  });

  it('sends other GETs to the UI only when there is one', () => {
    expect(match('GET', '/assets/index.js')).toMatchObject({ kind: 'route', route: UI_ROUTE });
    expect(new Router(ROUTES, { ui: false }).match('GET', read('/assets/index.js')).kind).toBe('none');
  });
});
