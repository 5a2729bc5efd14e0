#!/usr/bin/env bash
# Added latency of an allowed MCP tools/call through `countersign mcp stdio` (embedded gateway,
# durable SQLite) vs the same server called directly, side by side in one run.
#   bench/mcp-latency.sh [CALLS]
# Needs node and the npm packages of tests/ (scripts/test installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-2000}
[ -d tests/node_modules ] || (cd tests && npm ci --no-audit --no-fund --loglevel=error)
# One invocation, so both share one feature set (and one build of the dependencies).
cargo build --release --locked -p countersign -p countersign-mcp --bins --examples
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/policies"
cat > "$work/policies/mcp.cedar" <<'CEDAR'
@id("mcp-echo") permit (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/echo");
CEDAR
hash=$(printf %s bench-agent-token | sha256sum | cut -d' ' -f1)
cat > "$work/countersign.toml" <<TOML
database = "sqlite://gw.db"
policies = "policies"
[[identities]]
id = "bench-agent"
kind = "agent"
api_key_sha256 = "$hash"
TOML
server=(node tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio)
target/release/examples/stdio_latency "$calls" -- "${server[@]}" -- \
  target/release/countersign mcp stdio --config "$work/countersign.toml" --token bench-agent-token \
  --server-name everything -- "${server[@]}"
