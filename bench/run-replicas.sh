#!/usr/bin/env bash
# Replicas on PostgreSQL, side by side with SQLite, in one run (release build, loopback):
#   1. allow-path throughput: 1 replica on SQLite, 1 replica on PostgreSQL, 2 replicas on one
#      PostgreSQL database (two wrk processes, one per replica, half the connections each);
#   2. cross-replica wake-up: a long poll parked on replica A, the vote sent to replica B.
#   bench/run-replicas.sh [DURATION_SECONDS] [WAKEUP_SAMPLES]
# Needs `wrk` and a PostgreSQL server (scripts/ensure-postgres finds or starts one; each scenario
# gets a fresh schema in it).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20}"
samples="${2:-500}"
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 2; }
base=$(scripts/ensure-postgres)
cargo build --release -p countersign --bins --examples >/dev/null
bin=target/release/countersign
work=$(mktemp -d)
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pids=(); }
trap 'stop; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"

fresh_schema() { # NAME -> URL of an empty schema NAME in the test database
  psql -q "$base" -c "DROP SCHEMA IF EXISTS $1 CASCADE; CREATE SCHEMA $1;" >/dev/null
  echo "$base?options=-csearch_path%3D$1"
}
serve() { # DATABASE PORT
  sed "s#^database = .*#database = \"$1\"#" examples/countersign.toml > "$work/countersign.toml"
  COUNTERSIGN_LOG=warn "$bin" serve --config "$work/countersign.toml" --listen "127.0.0.1:$2" >> "$work/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "replica on port $2 did not start" >&2; cat "$work/serve.log" >&2; exit 1
}
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
report() { # LABEL FILE...
  local label=$1; shift
  local total=0 bad=0
  for f in "$@"; do
    total=$(awk -v a="$total" -v b="$(rps "$f")" 'BEGIN {printf "%.0f", a + b}')
    bad=$((bad + $(awk '/non-201/ {print $3}' "$f")))
    grep -E "latency p(50|99):" "$f" | sed "s/^/  $(basename "$f" .txt) /"
  done
  echo "$label: $total actions/s, non-201: $bad"
}

echo "== 1 replica, SQLite: wrk -t1 -c64 -d${duration}s"
serve "sqlite://$work/data/bench.db" 8791
wrk -t1 -c64 -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8791 > "$work/sqlite.txt"
report "1x SQLite" "$work/sqlite.txt"
stop

echo "== 1 replica, PostgreSQL: wrk -t1 -c64 -d${duration}s"
db=$(fresh_schema bench_one)
serve "$db" 8792
wrk -t1 -c64 -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8792 > "$work/pg1.txt"
report "1x PostgreSQL" "$work/pg1.txt"
echo "  rows durably recorded: $(psql -tA "$db" -c 'SELECT count(*) FROM actions')"
stop

echo "== 2 replicas, one PostgreSQL database: 2 x wrk -t1 -c32 -d${duration}s"
db=$(fresh_schema bench_two)
serve "$db" 8793
serve "$db" 8794
wrk -t1 -c32 -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8793 > "$work/pg2a.txt" &
w1=$!
wrk -t1 -c32 -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8794 > "$work/pg2b.txt" &
w2=$!
wait "$w1" "$w2"
report "2x PostgreSQL" "$work/pg2a.txt" "$work/pg2b.txt"
echo "  rows durably recorded: $(psql -tA "$db" -c 'SELECT count(*) FROM actions')"

echo "== cross-replica wake-up: long poll on :8793, vote on :8794, $samples samples"
target/release/examples/longpoll http://127.0.0.1:8793 "$samples" http://127.0.0.1:8794
echo "== same replica, for comparison"
target/release/examples/longpoll http://127.0.0.1:8793 "$samples"
