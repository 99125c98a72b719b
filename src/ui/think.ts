/**
 * Separates reasoning from the answer in a message's content. MiniMax and similar models put their reasoning in
 * `<think>…</think>` blocks inside `content`; some templates open the block in the prompt, so the reply starts
 * with the reasoning and only the closing tag appears. Works on partial (streaming) text: an unterminated block
 * is reasoning still being written, and a half-received tag at the end is held back.
 */
export interface Split {
  thinking: string;
  answer: string;
  /** The reasoning is still open (streaming inside a block). */
  open: boolean;
}

const OPEN = '<think>';
const CLOSE = '</think>';

export function splitThink(raw: string, streaming = false): Split {
  const thinking: string[] = [];
  let answer = '';
  let open = false;
  let rest = raw;
  const firstClose = rest.indexOf(CLOSE);
  const firstOpen = rest.indexOf(OPEN);
  if (firstClose !== -1 && (firstOpen === -1 || firstClose < firstOpen)) {
    thinking.push(rest.slice(0, firstClose));
    rest = rest.slice(firstClose + CLOSE.length);
  }
  for (;;) {
    const o = rest.indexOf(OPEN);
    if (o === -1) {
      answer += rest;
      break;
    }
    answer += rest.slice(0, o);
    rest = rest.slice(o + OPEN.length);
    const c = rest.indexOf(CLOSE);
    if (c === -1) {
      thinking.push(streaming ? holdBackPartial(rest, CLOSE) : rest);
      open = true;
      break;
    }
    thinking.push(rest.slice(0, c));
    rest = rest.slice(c + CLOSE.length);
  }
  if (!open && streaming) answer = holdBackPartial(answer, OPEN);
  return {
    thinking: thinking
      .map((t) => t.trim())
      .filter(Boolean)
      .join('\n\n'),
    answer: answer.trim(),
    open,
  };
}

/** Drops a trailing prefix of `tag` (e.g. "<thi") that may become the tag when more text arrives. */
function holdBackPartial(text: string, tag: string): string {
  for (let n = Math.min(tag.length - 1, text.length); n >= 2; n--) {
    if (text.endsWith(tag.slice(0, n))) return text.slice(0, -n);
  }
  return text;
}

/** Content to send back to the model: the answer only (DeepSeek rejects reasoning in the history). */
export function answerOnly(raw: string): string {
  return splitThink(raw).answer;
}
