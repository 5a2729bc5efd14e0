#!/usr/bin/env bash
# The allow path with masking on and off, side by side in one run (issue #17: "the allow path's
# throughput stays within 10 % of before"). For each mode: a release server on the demo config,
# wrk at 64 connections for DURATION seconds, and `perf stat` of the server process over the same
# window. Prints throughput and the server's CPU time per request (task-clock / requests), which
# holds on a machine shared with other work, where throughput alone swings with the load.
#   bench/masking-allow.sh [DURATION_SECONDS]
# Needs `wrk` and `perf` (Debian packages wrk, linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-15}"
for tool in wrk perf; do command -v "$tool" >/dev/null || { echo "install $tool" >&2; exit 2; }; done
cargo build --release -p countersign --bins >/dev/null
work=$(mktemp -d)
# Each run() (a subshell) stops its own server; only the scratch directory is left to remove.
trap 'rm -rf "$work"' EXIT

run() { # $1 = on|off
  local mode=$1 dir="$work/$1"
  mkdir -p "$dir"
  cp -r examples/policies "$dir/"
  sed 's#^database = .*#database = "sqlite://data/bench.db"#' examples/countersign.toml > "$dir/countersign.toml"
  if [ "$mode" = off ]; then printf '\n[masking]\nenabled = false\n' >> "$dir/countersign.toml"; fi
  COUNTERSIGN_LOG=warn target/release/countersign serve --config "$dir/countersign.toml" --listen 127.0.0.1:8798 > "$dir/serve.log" 2>&1 &
  local pid=$!
  trap 'kill "$pid" 2>/dev/null || true' RETURN
  for _ in $(seq 100); do curl -fs http://127.0.0.1:8798/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  wrk -t1 -c64 -d2s -s bench/allow.lua http://127.0.0.1:8798 >/dev/null # warm-up
  perf stat -x, -e task-clock -p "$pid" -o "$dir/perf.csv" -- sleep "$duration" &
  local perfpid=$!
  wrk -t1 -c64 -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8798 > "$dir/wrk.txt"
  wait "$perfpid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local requests rps p99 cpu_ms
  requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")
  cpu_ms=$(awk -F, '/task-clock/ {print $1}' "$dir/perf.csv")
  local per_req
  per_req=$(awk -v c="$cpu_ms" -v n="$requests" 'BEGIN {printf "%.1f", c * 1000 / n}')
  echo "$mode $rps $p99 $per_req"
}

# Four runs in the order on, off, off, on, so a drift of the machine's load over the run weighs
# on both modes alike; each mode's figures are the mean of its two runs.
results=()
for mode in on off off on; do results+=("$(run "$mode")"); done
echo "masking  requests/s  p99  server CPU µs/request"
printf '%s\n' "${results[@]}"
printf '%s\n' "${results[@]}" | awk '
  { rps[$1] += $2; cpu[$1] += $4 }
  END { printf "mean on/off: throughput %.3f, server CPU per request %.3f\n",
        rps["on"] / rps["off"], cpu["on"] / cpu["off"] }'
