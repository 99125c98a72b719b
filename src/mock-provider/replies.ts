import { createHash } from 'node:crypto';
import { countWords, wordChunks } from './sse.ts';
import type { MockProfileName } from './types.ts';

/** Deterministic content of the simulated models: a fixed function of the request. */

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Text of a message content: a string, or the text parts of a content array. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (isObject(p) && typeof p.text === 'string' ? p.text : ''))
      .filter(Boolean)
      .join(' ');
  }
  return '';
}

export function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (isObject(m) && m.role === 'user') return contentText(m.content);
  }
  return '';
}

export function promptWords(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  return messages.reduce((n: number, m) => n + (isObject(m) ? countWords(contentText(m.content)) : 0), 0);
}

export const replyText = (profile: MockProfileName, said: string): string =>
  `Hello from ${profile}! You said: ${said}`;

export interface ToolCallPlan {
  id: string;
  name: string;
  arguments: string;
}

export interface ChatPlan {
  content: string | null;
  reasoning?: string;
  toolCall?: ToolCallPlan;
  finishReason: 'stop' | 'length' | 'tool_calls';
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

function firstToolName(tools: unknown): string | undefined {
  if (!Array.isArray(tools)) return undefined;
  for (const t of tools) {
    if (isObject(t) && isObject(t.function) && typeof t.function.name === 'string') return t.function.name;
  }
  return undefined;
}

/** What a chat completion answers, per profile quirk. */
export function planChat(profile: MockProfileName, model: string, body: Json, idSuffix: string): ChatPlan {
  const said = lastUserText(body.messages);
  const prompt = promptWords(body.messages);
  const tool = firstToolName(body.tools);
  if (tool && body.tool_choice !== 'none' && /\bweather\b/i.test(said)) {
    const args = JSON.stringify({ location: locationIn(said) });
    return {
      content: null,
      toolCall: { id: `call_${idSuffix}`, name: tool, arguments: args },
      finishReason: 'tool_calls',
      usage: usage(prompt, countWords(args) + 1),
    };
  }
  let content = replyText(profile, said);
  const format = isObject(body.response_format) ? body.response_format.type : undefined;
  if (format === 'json_object' || format === 'json_schema') {
    content = JSON.stringify({ profile, model, reply: content, you_said: said });
  }
  let finishReason: ChatPlan['finishReason'] = 'stop';
  const max = Number(body.max_completion_tokens ?? body.max_tokens);
  if (Number.isInteger(max) && max > 0 && countWords(content) > max) {
    content = wordChunks(content).slice(0, max).join('');
    finishReason = 'length';
  }
  let reasoning: string | undefined;
  if (profile === 'deepseek' && model === 'deepseek-reasoner') {
    reasoning = `The user said "${said}". I should greet them from deepseek.`;
  }
  if (profile === 'minimax') {
    content = `<think>\nThe user said "${said}". I should greet them from minimax.\n</think>\n\n${content}`;
  }
  const completion = countWords(content) + (reasoning ? countWords(reasoning) : 0);
  return { content, reasoning, finishReason, usage: usage(prompt, completion) };
}

function locationIn(text: string): string {
  const m = /\bin\s+([A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)/.exec(text);
  return m?.[1] ?? 'Paris';
}

export const usage = (prompt: number, completion: number) => ({
  prompt_tokens: prompt,
  completion_tokens: completion,
  total_tokens: prompt + completion,
});

export const PERPLEXITY_CITATIONS = [
  'https://example.com/plugboard/source-1',
  'https://example.com/plugboard/source-2',
];

/** Deterministic unit vector from the model and the input. */
export function embedding(model: string, input: string, dimensions: number): number[] {
  const seed = createHash('sha256').update(`${model}\0${input}`).digest();
  let state = seed.readUInt32LE(0) || 1;
  const v = new Array<number>(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    // mulberry32
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const x = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
    v[i] = x;
    norm += x * x;
  }
  const k = 1 / Math.sqrt(norm || 1);
  for (let i = 0; i < dimensions; i++) v[i] = Math.fround((v[i] as number) * k);
  return v;
}

export function embeddingBase64(v: number[]): string {
  const f = new Float32Array(v);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

export function defaultDimensions(model: string): number {
  if (model.includes('large')) return 3072;
  if (model.includes('gemini')) return 768;
  return 1536;
}

/** Embedding inputs as texts (token arrays are rendered as their numbers). */
export function embeddingInputs(input: unknown): string[] | undefined {
  if (typeof input === 'string') return [input];
  if (Array.isArray(input)) {
    if (input.length === 0) return undefined;
    if (input.every((x) => typeof x === 'number')) return [input.join(' ')];
    const out: string[] = [];
    for (const x of input) {
      if (typeof x === 'string') out.push(x);
      else if (Array.isArray(x)) out.push(x.join(' '));
      else return undefined;
    }
    return out;
  }
  return undefined;
}

/** A short mono 8 kHz 8-bit WAV whose length grows with the input (0.5 s to 3 s). */
export function wav(text: string): Buffer {
  const rate = 8000;
  const seconds = Math.min(3, Math.max(0.5, countWords(text) * 0.25));
  const samples = Math.round(rate * seconds);
  const buf = Buffer.alloc(44 + samples);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + samples, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate, 28); // byte rate
  buf.writeUInt16LE(1, 32); // block align
  buf.writeUInt16LE(8, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(samples, 40);
  for (let i = 0; i < samples; i++)
    buf[44 + i] = 128 + Math.round(60 * Math.sin((2 * Math.PI * 440 * i) / rate));
  return buf;
}

export const SPEECH_CONTENT_TYPES: Record<string, string> = {
  mp3: 'audio/mpeg',
  opus: 'audio/opus',
  aac: 'audio/aac',
  flac: 'audio/flac',
  wav: 'audio/wav',
  pcm: 'audio/pcm',
};

/** A valid 1×1 PNG. */
export const TINY_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);

/** Transcription text that lets a test check what reached the upstream. */
export function transcriptText(
  kind: 'transcriptions' | 'translations',
  model: string,
  file?: { filename: string; size: number },
): string {
  const verb = kind === 'translations' ? 'Translated' : 'Transcribed';
  return file
    ? `${verb} ${file.size} bytes of ${file.filename} with ${model}.`
    : `${verb} nothing with ${model}.`;
}

/** Text of a Responses API `input`: a string, or the last user item. */
export function responsesInputText(input: unknown): string {
  if (typeof input === 'string') return input;
  if (Array.isArray(input)) {
    for (let i = input.length - 1; i >= 0; i--) {
      const item = input[i];
      if (isObject(item) && (item.role === 'user' || item.role === undefined))
        return contentText(item.content);
    }
  }
  return '';
}
