/** Server-sent event framing exactly as OpenAI writes it. */
export const sseData = (payload: unknown): string => `data: ${JSON.stringify(payload)}\n\n`;

/** Named event, as the Responses API writes it. */
export const sseEvent = (event: string, payload: unknown): string =>
  `event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`;

export const SSE_DONE = 'data: [DONE]\n\n';

/** Splits a text into word-sized pieces that concatenate back to the text ("Hello", " world"). */
export function wordChunks(text: string): string[] {
  const parts: string[] = text.match(/\s*\S+/g) ?? [];
  const joined = parts.join('');
  if (joined.length < text.length) parts.push(text.slice(joined.length));
  return parts.length ? parts : [text];
}

export const countWords = (text: string): number => text.split(/\s+/).filter(Boolean).length;
