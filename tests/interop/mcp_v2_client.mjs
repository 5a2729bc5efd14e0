// Drives an MCP server through countersign's proxy with the official MCP TypeScript SDK v2 client
// (`@modelcontextprotocol/client`) on protocol 2026-07-28, and the official Tasks extension client
// (`@modelcontextprotocol/ext-tasks`, SEP-2663) for calls the proxy turns into tasks.
//
// Usage: node mcp_v2_client.mjs SCRIPT_JSON
// SCRIPT_JSON: {"stdio": [cmd, args...]} or {"url": "http://...", "headers": {...}} (Streamable
// HTTP), and "steps": a list of
//   {"op": "discover"}                          the era and extensions the client negotiated
//   {"op": "call", "tool": NAME, "args": {..}}  through the Tasks session: prints "call" (kind
//                                               immediate|task, taskId) at once, then "settled"
//   {"op": "plain_call", "tool": NAME, "args": {..}}  the SDK's own callTool (no extension; it
//                                               answers `input_required` rounds itself: each
//                                               elicitation is accepted with {"confirm": true})
//   {"op": "cancel", "tool": NAME, "args": {..}}      a call that becomes a task, then cancelled
//   {"op": "raw", "request": {"method", "params"}, "extension": BOOL}
//       a raw 2026-07-28 request (framed with the protocol version; with the extension declared
//       when "extension" is true); "$task" in params.taskId is the last task's id
//   {"op": "pause"}                             waits for a line on stdin
// Prints one JSON line per step.
import { Client } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createTaskSessionFromClient } from '@modelcontextprotocol/ext-tasks/client';
import { createInterface } from 'node:readline';

const VERSION = '2026-07-28';
const EXTENSION = 'io.modelcontextprotocol/tasks';
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const textOf = (r) => (r?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

const spec = JSON.parse(process.argv[2]);
let transport;
if (spec.stdio) {
  const [command, ...args] = spec.stdio;
  transport = new StdioClientTransport({ command, args, stderr: 'inherit' });
} else {
  transport = new StreamableHTTPClientTransport(new URL(spec.url), { requestInit: { headers: spec.headers ?? {} } });
}
const client = new Client(
  { name: 'countersign-v2-interop', version: '1.0.0' },
  { versionNegotiation: { mode: { pin: VERSION } }, capabilities: { elicitation: {} } },
);
// Servers ask for input in `input_required` results; the SDK fulfils them through this handler
// (the user "confirms") and retries the call with the answers.
let elicitations = 0;
client.setRequestHandler('elicitation/create', async () => {
  elicitations += 1;
  return { action: 'accept', content: { confirm: true } };
});
await client.connect(transport);

// The host's raw request path the Tasks extension asks for (the SDK's codecs do not know its
// result shapes): our requests get string ids; their responses are taken off the transport.
let nextRaw = 0;
const waiting = new Map();
const sdkOnMessage = transport.onmessage;
transport.onmessage = (message, extra) => {
  if (typeof message?.id === 'string' && waiting.has(message.id) && !('method' in message)) {
    const done = waiting.get(message.id);
    waiting.delete(message.id);
    done(message.error ? { kind: 'error', error: message.error } : { kind: 'result', result: message.result });
    return;
  }
  sdkOnMessage(message, extra);
};
const rawDispatch = (request) =>
  new Promise((resolve, reject) => {
    const id = `raw-${++nextRaw}`;
    waiting.set(id, resolve);
    transport.send({ ...request, jsonrpc: '2.0', id }).catch(reject);
  });
const clientInfo = { name: 'countersign-v2-interop', version: '1.0.0' };
const session = createTaskSessionFromClient(client, {
  endpointId: 'countersign-proxy',
  rawDispatch,
  v2RequestFraming: { protocolVersion: VERSION, clientInfo, clientCapabilities: { elicitation: {} } },
  // A task that asks for input (`input_required`): the user "confirms"; the session answers
  // with `tasks/update`.
  onInputRequest: async (request) => {
    elicitations += 1;
    if (request.kind !== 'elicitation') throw new Error(`unexpected input request ${request.kind}`);
    return { action: 'accept', content: { confirm: true } };
  },
});

let lastTask = null;
for (const s of spec.steps) {
  switch (s.op) {
    case 'discover': {
      const caps = client.getServerCapabilities() ?? {};
      say({ op: s.op, era: client.getProtocolEra(), extensions: Object.keys(caps.extensions ?? {}) });
      break;
    }
    case 'call':
    case 'cancel': {
      const execution = await session.callTool(s.tool, s.args ?? {});
      lastTask = execution.kind === 'task' ? execution.handle.taskId : null;
      say({ op: 'call', tool: s.tool, kind: execution.kind, taskId: lastTask });
      if (s.op === 'cancel') {
        await execution.cancel();
        say({ op: 'cancelled', tool: s.tool });
        break;
      }
      const messages = [];
      const { outcome } = await execution.settle({
        onEvent: (e) => {
          if (e.type === 'task' && e.task.statusMessage) messages.push(`${e.task.status}: ${e.task.statusMessage}`);
        },
      });
      say({
        op: 'settled', tool: s.tool, status: outcome.status,
        isError: Boolean(outcome.result?.isError), text: textOf(outcome.result),
        resultType: outcome.result?.resultType ?? null, messages, elicitations,
        ...(outcome.status === 'failed' ? { error: { message: outcome.error.message, code: outcome.error.code ?? null } } : {}),
      });
      break;
    }
    case 'plain_call': {
      const r = await client.callTool({ name: s.tool, arguments: s.args ?? {} });
      say({ op: 'settled', tool: s.tool, status: 'completed', isError: Boolean(r.isError), text: textOf(r), elicitations });
      break;
    }
    case 'raw': {
      const params = structuredClone(s.request.params ?? {});
      if (params.taskId === '$task') params.taskId = lastTask;
      const capabilities = s.extension ? { extensions: { [EXTENSION]: {} } } : {};
      params._meta = {
        'io.modelcontextprotocol/protocolVersion': VERSION,
        'io.modelcontextprotocol/clientInfo': clientInfo,
        'io.modelcontextprotocol/clientCapabilities': capabilities,
      };
      const response = await rawDispatch({ method: s.request.method, params });
      say({ op: s.op, method: s.request.method, ...response });
      break;
    }
    case 'pause':
      say({ op: 'paused' });
      await stdinLines.next();
      break;
    default:
      throw new Error(`unknown step ${s.op}`);
  }
}
await session.close();
await client.close();
process.exit(0);
