import { describe, expect, it } from 'vitest';
import { ApiError, describeError } from '../../src/ui/api.ts';
import { SseParser } from '../../src/ui/sse.ts';
import { type Conversation, toMarkdown } from '../../src/ui/store.ts';
import { answerOnly, splitThink } from '../../src/ui/think.ts';

describe('splitThink', () => {
  it('separates a <think> block from the answer', () => {
    expect(splitThink('<think>\nplan it\n</think>\n\nHello!')).toEqual({
      thinking: 'plan it',
      answer: 'Hello!',
      open: false,
    });
  });

  it('treats an unterminated block as reasoning still being written', () => {
    expect(splitThink('<think>half a tho', true)).toEqual({ thinking: 'half a tho', answer: '', open: true });
  });

  it('holds back a half-received tag while streaming, not after', () => {
    expect(splitThink('Hi <thi', true).answer).toBe('Hi');
    expect(splitThink('<think>a</thi', true).thinking).toBe('a');
    expect(splitThink('a <b', false).answer).toBe('a <b');
  });

  it('handles a reply that only closes the block (the template opened it)', () => {
    expect(splitThink('reasoning here</think>The answer')).toEqual({
      thinking: 'reasoning here',
      answer: 'The answer',
      open: false,
    });
  });

  it('joins several blocks and keeps plain text untouched', () => {
    const s = splitThink('<think>a</think>one <think>b</think>two');
    expect(s.thinking).toBe('a\n\nb');
    expect(s.answer).toBe('one two');
    expect(splitThink('no tags at all')).toEqual({ thinking: '', answer: 'no tags at all', open: false });
    expect(answerOnly('<think>x</think>y')).toBe('y');
  });
});

describe('SseParser', () => {
  it('parses events split across arbitrary chunk boundaries and line endings', () => {
    const text = 'data: {"a":1}\r\n\r\n: comment\n\ndata: line1\ndata:line2\n\nevent: x\ndata: [DONE]\n\n';
    for (const size of [1, 2, 3, 7, text.length]) {
      const p = new SseParser();
      const out: string[] = [];
      for (let i = 0; i < text.length; i += size) out.push(...p.push(text.slice(i, i + size)));
      expect(out).toEqual(['{"a":1}', 'line1\nline2', '[DONE]']);
    }
  });
});

describe('describeError', () => {
  it('names the connection and keeps the upstream reason', () => {
    const e = new ApiError(
      502,
      'Upstream ai/openai answered 401: Incorrect API key provided',
      'upstream_error',
    );
    const w = describeError(e, 'gpt-4o', 'ai/openai');
    expect(w.title).toContain('ai/openai');
    expect(w.detail).toContain('Incorrect API key');
  });

  it('says plainly when the model is unknown, the gateway needs a key, or it is unreachable', () => {
    expect(describeError(new ApiError(404, 'no', '', 'model_not_found'), 'x', '').title).toBe(
      'Model x is not available',
    );
    expect(describeError(new ApiError(401, 'Missing or invalid API key'), 'x', '', true).title).toBe(
      'The gateway needs a valid API key',
    );
    expect(describeError(new ApiError(401, 'Incorrect API key'), 'x', 'ai/p').title).toBe(
      'The provider refused the request (connection ai/p)',
    );
    expect(describeError(new ApiError(504, 'timed out'), 'x', 'ns/c').title).toContain(
      'did not answer in time',
    );
    expect(describeError(new ApiError(0, 'offline'), 'x', '').title).toBe('Cannot reach the gateway');
  });
});

describe('toMarkdown', () => {
  it('exports reasoning in a details block and the answer without think tags', () => {
    const c: Conversation = {
      id: '1',
      title: 'T',
      createdAt: 0,
      updatedAt: 0,
      model: 'm',
      system: 'be brief',
      messages: [
        { id: 'a', role: 'user', content: 'hi', createdAt: 0 },
        { id: 'b', role: 'assistant', content: '<think>hmm</think>Hello', createdAt: 0, model: 'm' },
      ],
    };
    const md = toMarkdown(c);
    expect(md).toContain('## System\n\nbe brief');
    expect(md).toContain('<details><summary>Thinking</summary>\n\nhmm');
    expect(md).toContain('Hello');
    expect(md).not.toContain('<think>');
  });
});
