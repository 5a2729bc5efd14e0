#!/usr/bin/env bash
# The allow path with OpenTelemetry traces off and on (issue #20), and optionally against another
# build, run alternately on loopback:
#   bench/traces.sh [DURATION_SECONDS] [ROUNDS] [OTHER_BINARY]
#   (COUNTERSIGN_BIN=path/to/countersign to use a release build already made)
# For each round and each variant: wrk's requests/s and p99 at 64 connections, and the server's
# CPU per request (utime+stime from /proc over the run), the figure least moved by other load.
# "on" exports to a local OTLP/HTTP sink (python3, answers 200 to every POST). Needs `wrk`.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
rounds="${2:-3}"
other="${3:-}"
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 2; }
# COUNTERSIGN_BIN: a release binary already built (else this checkout's is built).
bin="${COUNTERSIGN_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release -p countersign --bins >/dev/null
  bin="$PWD/target/release/countersign"
fi
work=$(mktemp -d)
trap 'kill "${pid:-0}" "${sink:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"

python3 - 8797 > /dev/null 2>&1 <<'EOF' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
EOF
sink=$!

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # NAME BINARY TELEMETRY(0|1)
  local name=$1 binary=$2 traced=$3 port=8799
  rm -rf "$work/data"
  sed 's#^database = .*#database = "sqlite://data/bench.db"#' examples/countersign.toml > "$work/countersign.toml"
  if [ "$traced" = 1 ]; then
    printf '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:8797"\n' >> "$work/countersign.toml"
  fi
  COUNTERSIGN_LOG=warn "$binary" serve --config "$work/countersign.toml" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local before after out
  before=$(ticks "$pid")
  out=$(wrk -t1 -c64 -d"${duration}s" --latency -s bench/allow.lua "http://127.0.0.1:$port")
  after=$(ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps total p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '/latency p99:/ {print $3}' <<<"$out")
  bad=$(awk '/non-201/ {print $3}' <<<"$out")
  local hz; hz=$(getconf CLK_TCK)
  printf '%-6s %10s req/s  p99 %6s ms  %6.1f us CPU/request  (non-201: %s)\n' "$name" "$rps" "$p99" \
    "$(awk -v t=$((after - before)) -v n="$total" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}')" "$bad"
}

echo "== allow path, 64 connections, ${duration}s per run, ${rounds} rounds (server and wrk share the cores)"
for r in $(seq "$rounds"); do
  echo "-- round $r"
  [ -n "$other" ] && run other "$other" 0
  run off "$bin" 0
  run on "$bin" 1
done
