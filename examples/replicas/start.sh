#!/usr/bin/env bash
# Starts three countersign replicas on 127.0.0.1:8761-8763, all on the PostgreSQL database named
# in countersign.toml beside this script (the local server by default; override with
# DATABASE=postgres://...). Ctrl-C stops all three.
#   examples/replicas/start.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
db="${DATABASE:-postgres://postgres@127.0.0.1:5432/test}"
scripts/ensure-postgres >/dev/null
cargo build --release -p countersign --bins
bin=target/release/countersign
"$bin" migrate --database "$db"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
# The first replica creates the shared key files (beside the config) before the others start.
for port in 8761 8762 8763; do
  "$bin" serve --config "$here/countersign.toml" --database "$db" --listen "127.0.0.1:$port" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "three replicas up: http://127.0.0.1:8761 http://127.0.0.1:8762 http://127.0.0.1:8763"
echo "try: a long poll on one, the vote on another (README.md, 'Several replicas')"
wait
