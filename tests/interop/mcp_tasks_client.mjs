// Drives an MCP server (through countersign's proxy) with the official MCP TypeScript SDK's task
// API (protocol 2025-11-25): the MCP Python SDK has no client side for tasks.
//
// Usage: node mcp_tasks_client.mjs SCRIPT_JSON
// SCRIPT_JSON: {"stdio": [cmd, args...]} or {"url": "http://...", "headers": {...}} (Streamable
// HTTP), and "steps": a list of
//   {"op": "list"} | {"op": "task_call", "tool": NAME, "args": {...}, "ttl": MS}
//   (a task-augmented tools/call; the task becomes the current one)
//   | {"op": "task_get"} | {"op": "task_wait", "until": [STATUS...]} (polls tasks/get)
//   | {"op": "task_result"} | {"op": "task_cancel"} | {"op": "task_list"}
//   | {"op": "pause"} (waits for a line on stdin: the caller's go-ahead)
// Prints one JSON line per step so the caller can follow along; a JSON-RPC error becomes
// {"op": OP, "error": {"code", "message"}}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { createInterface } from 'node:readline';

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function step(client, s, task) {
  switch (s.op) {
    case 'list': {
      const r = await client.listTools();
      say({ op: 'list', tools: r.tools.map((t) => ({ name: t.name, taskSupport: t.execution?.taskSupport ?? null })) });
      return task;
    }
    case 'pause':
      say({ op: 'paused' });
      await stdinLines.next();
      return task;
    case 'task_call': {
      const params = { name: s.tool, arguments: s.args ?? {} };
      const r = await client.request({ method: 'tools/call', params }, CreateTaskResultSchema, {
        task: s.ttl === undefined ? {} : { ttl: s.ttl },
      });
      say({ op: s.op, task: r.task });
      return r.task.taskId;
    }
    case 'task_get':
    case 'task_wait':
      for (;;) {
        const t = await client.getTask({ taskId: task });
        if (s.op === 'task_get' || s.until.includes(t.status)) {
          say({ op: s.op, task: t });
          return task;
        }
        await sleep(t.pollInterval ?? 1000);
      }
    case 'task_result': {
      const r = await client.getTaskResult({ taskId: task }, CallToolResultSchema);
      const text = r.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      const related = r._meta?.['io.modelcontextprotocol/related-task']?.taskId ?? null;
      say({ op: s.op, isError: Boolean(r.isError), text, related });
      return task;
    }
    case 'task_cancel': {
      const r = await client.cancelTask({ taskId: task });
      say({ op: s.op, status: r.status });
      return task;
    }
    case 'task_list': {
      const r = await client.listTasks();
      say({ op: s.op, tasks: r.tasks.map((t) => ({ taskId: t.taskId, status: t.status })) });
      return task;
    }
    default:
      throw new Error(`unknown step ${s.op}`);
  }
}

const spec = JSON.parse(process.argv[2]);
let transport;
if (spec.stdio) {
  const [command, ...args] = spec.stdio;
  transport = new StdioClientTransport({ command, args, stderr: 'inherit' });
} else {
  transport = new StreamableHTTPClientTransport(new URL(spec.url), { requestInit: { headers: spec.headers ?? {} } });
}
const client = new Client({ name: 'countersign-interop', version: '0' });
await client.connect(transport);
say({ op: 'connected', tasks: client.getServerCapabilities()?.tasks ?? null });
let task = null;
for (const s of spec.steps) {
  try {
    task = await step(client, s, task);
  } catch (e) {
    if (typeof e?.code !== 'number') throw e;
    say({ op: s.op, error: { code: e.code, message: e.message } });
  }
}
await client.close();
process.exit(0);
