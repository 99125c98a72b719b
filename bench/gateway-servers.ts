/**
 * Child processes of bench/gateway.ts (one role per process, so each gets its own core time and RSS):
 *   node bench/gateway-servers.ts upstream <port>   a minimal OpenAI-shaped upstream (JSON and SSE)
 *   node bench/gateway-servers.ts floor <port> <upstream origin>   the Node floor: node:http + undici Pool
 * Each prints `ready <port>` when listening.
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [role, portArg, target] = process.argv.slice(2);

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1700000000,
  model: 'gpt-4o',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Hello! How can I help you today?' },
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 },
});
const chunk = (content: string | null, finish: string | null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o', choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }] })}\n\n`;
const WORDS =
  'Hello there, this is a streamed benchmark reply with twenty small chunks of text in it ok'.split(' ');
const USAGE = `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o', choices: [], usage: { prompt_tokens: 9, completion_tokens: 20, total_tokens: 29 } })}\n\n`;

function upstream(port: number): void {
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      const stream = text.includes('"stream":true') || text.includes('"stream": true');
      if (!stream) {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(COMPLETION),
        });
        res.end(COMPLETION);
        return;
      }
      const delay = Number(/"bench_delay_ms":\s*(\d+)/.exec(text)?.[1] ?? 0);
      const usage = text.includes('"include_usage":true');
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const next = () => {
        if (res.destroyed) return;
        if (i < WORDS.length) {
          res.write(chunk(`${WORDS[i++]} `, null));
          if (delay) setTimeout(next, delay);
          else setImmediate(next);
          return;
        }
        res.write(chunk(null, 'stop'));
        if (usage) res.write(USAGE);
        res.end('data: [DONE]\n\n');
      };
      next();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => console.log(`ready ${(server.address() as { port: number }).port}`));
}

/** The floor: what any Node proxy must at least do (parse HTTP, pool upstream connections, stream both ways). */
function floor(port: number, origin: string): void {
  const pool = new Pool(origin, { connections: null, pipelining: 1 });
  const server = createServer(async (req, res) => {
    try {
      const r = await pool.request({
        method: req.method as 'POST',
        path: req.url ?? '/',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
        body: req,
      });
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(r.headers))
        if (v !== undefined && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding')
          headers[k] = v;
      res.writeHead(r.statusCode, headers);
      for await (const c of r.body) res.write(c);
      res.end();
    } catch {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    }
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => console.log(`ready ${(server.address() as { port: number }).port}`));
}

if (role === 'upstream') upstream(Number(portArg ?? 0));
else if (role === 'floor') floor(Number(portArg ?? 0), target as string);
else {
  console.error('usage: gateway-servers.ts upstream|floor <port> [upstream origin]');
  process.exit(2);
}
