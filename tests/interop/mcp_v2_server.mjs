// A 2026-07-28 MCP server built on the official MCP TypeScript SDK v2 (`@modelcontextprotocol/server`):
// `@modelcontextprotocol/server-everything` still speaks 2025-era protocols only, so the 2026-07-28
// interop tests put this behind countersign's proxy instead. Its tools mirror server-everything's
// (`echo`, `get-sum`, `get-env`) so the same policies apply.
//
// Usage: node mcp_v2_server.mjs            (stdio; the era is chosen by the client's opening)
//        node mcp_v2_server.mjs --http PORT  (Streamable HTTP at http://127.0.0.1:PORT/mcp; prints
//                                             "listening" once it accepts connections)
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import { McpServer, acceptedContent, createMcpHandler, inputRequired } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import * as z from 'zod';

function build() {
  const server = new McpServer({ name: 'v2-everything', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.registerTool('echo', { description: 'Echoes back the input', inputSchema: z.object({ message: z.string() }) },
    async ({ message }) => ({ content: [{ type: 'text', text: `Echo: ${message}` }] }));
  server.registerTool('get-sum', { description: 'Returns the sum of two numbers', inputSchema: z.object({ a: z.number(), b: z.number() }) },
    async ({ a, b }) => ({ content: [{ type: 'text', text: `The sum of ${a} and ${b} is ${a + b}.` }] }));
  server.registerTool('get-env', { description: 'Returns the environment', inputSchema: z.object({}) },
    async () => ({ content: [{ type: 'text', text: JSON.stringify(process.env) }] }));
  const confirmation = z.object({ confirm: z.boolean() });
  const confirmed = (ctx, message) => {
    const answer = acceptedContent(ctx.mcpReq.inputResponses, 'confirm', confirmation);
    if (answer?.confirm === true) return null;
    return inputRequired({
      inputRequests: { confirm: inputRequired.elicit({ message, requestedSchema: confirmation }) },
      requestState: `round-for-${message}`,
    });
  };
  server.registerTool('simulate-research-query', { description: 'Researches a topic once the user confirms', inputSchema: z.object({ topic: z.string() }) },
    async ({ topic }, ctx) => confirmed(ctx, `Research ${topic}?`) ?? { content: [{ type: 'text', text: `Research on ${topic}: confirmed and done.` }] });
  server.registerTool('confirm-echo', { description: 'Echoes once the user confirms', inputSchema: z.object({ message: z.string() }) },
    async ({ message }, ctx) => confirmed(ctx, `Echo ${message}?`) ?? { content: [{ type: 'text', text: `Confirmed echo: ${message}` }] });
  return server;
}

const http = process.argv.indexOf('--http');
if (http < 0) {
  serveStdio(build);
} else {
  // The SDK's web-standard handler behind Node's http server (Node 20 has fetch's Request).
  const handler = createMcpHandler(build);
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const request = new Request(`http://${req.headers.host}${req.url}`, {
      method: req.method,
      headers: Object.entries(req.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]])),
      body: ['GET', 'HEAD'].includes(req.method) ? undefined : body,
    });
    const response = await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) Readable.fromWeb(response.body).pipe(res);
    else res.end();
  });
  server.listen(Number(process.argv[http + 1]), '127.0.0.1', () => console.log('listening'));
}
