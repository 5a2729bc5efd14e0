"""Drives an MCP server (through countersign's proxy) with the official MCP Python SDK.

Usage: mcp_client.py SCRIPT_JSON
SCRIPT_JSON: {"stdio": [cmd, args...]} or {"url": "http://..."}, optional "headers",
"mode" ("auto", "legacy" or a protocol version), and "steps": a list of
  {"op": "list"} | {"op": "call", "tool": NAME, "args": {...}, "progress": bool}
  | {"op": "pause"} (waits for a line on stdin: the caller's go-ahead)
Prints one JSON line per step (flushed at once) so the caller can follow along.
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters


def say(obj):
    print(json.dumps(obj), flush=True)


async def main(spec):
    if "stdio" in spec:
        cmd = spec["stdio"]
        target = StdioServerParameters(command=cmd[0], args=cmd[1:], env=spec.get("env"))
    else:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        http = create_mcp_http_client(headers=spec.get("headers"))
        target = streamable_http_client(spec["url"], http_client=http)
    async with Client(target, mode=spec.get("mode", "auto")) as client:
        say({"op": "connected", "protocol": client.protocol_version})
        for step in spec["steps"]:
            if step["op"] == "list":
                tools = await client.list_tools()
                say({"op": "list", "tools": [{"name": t.name, "description": t.description} for t in tools.tools]})
            elif step["op"] == "pause":
                say({"op": "paused"})
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            elif step["op"] == "call":
                progress = []

                async def on_progress(p, total, message):
                    progress.append(message)

                say({"op": "calling", "tool": step["tool"]})
                r = await client.call_tool(
                    step["tool"],
                    step.get("args", {}),
                    progress_callback=on_progress if step.get("progress") else None,
                )
                text = "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text")
                say({"op": "call", "tool": step["tool"], "isError": bool(r.is_error), "text": text, "progress": progress})


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
