#!/usr/bin/env bash
# HTTP load benchmarks against a release build on loopback, with the demo config and policies.
#   bench/run-http.sh [DURATION_SECONDS]
# Needs `wrk` (Debian package). Prints wrk's summary for the allow path at 64 connections, then
# the long-poll release latency.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20}"
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 2; }
cargo build --release -p countersign --bins --examples >/dev/null
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"
sed 's#^database = .*#database = "sqlite://data/bench.db"#' examples/countersign.toml > "$work/countersign.toml"
COUNTERSIGN_LOG=warn target/release/countersign serve --config "$work/countersign.toml" --listen 127.0.0.1:8799 > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -fs http://127.0.0.1:8799/healthz >/dev/null 2>&1 && break; sleep 0.1; done

echo "== allow path: POST /v1/actions, 64 connections, ${duration}s (wrk -t1; server and wrk share the 2 cores)"
wrk -t1 -c64 -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8799
echo "rows durably recorded: $(target/release/examples/count_actions "$work/data/bench.db")"

echo "== long-poll release: vote -> waiting GET ?wait=30 answered"
target/release/examples/longpoll http://127.0.0.1:8799 500
