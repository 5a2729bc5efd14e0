#!/usr/bin/env bash
# Issue #20's speed targets, each as a ratio to a limit measured in the same run (release build,
# loopback, the server, PostgreSQL and the load generator sharing this machine's cores):
#   (a) allow path: `POST /v1/actions` (bench/allow.lua, SQLite, durable) against the same
#       server's do-nothing ceiling (`GET /healthz`), same wrk, same connections; and its p99;
#   (c) PostgreSQL: the same allow path on a fresh PostgreSQL schema against (a)'s SQLite figure;
#   (b) MCP stdio: the added latency of an allowed `tools/call` (bench/mcp-latency.sh's tool)
#       against one durable SQLite commit measured alone, on the same disk, interleaved with
#       the calls (the tool's COMMIT_PROBE).
#   bench/ratios.sh [DURATION_SECONDS] [MCP_CALLS] [ROUNDS]
# Needs wrk, node and tests/node_modules (scripts/test installs them), and PostgreSQL
# (scripts/ensure-postgres finds or starts one). CONNECTIONS (default 64) sets wrk's -c.
# COUNTERSIGN_SKIP_BUILD=1 uses target/release as it is; COUNTERSIGN_BIN=PATH measures another
# build of the server (the bench tools still come from target/release). Each round runs (a) and (c) back to
# back; (b) runs once, after the rounds. The verdict lines use the median over the rounds.
# Per round it also prints what the ceiling and the SQLite allow path cost (the machine's busy
# share, CPU per request of the machine, the server and its SQLite writer thread, from /proc) and
# how long the allow path's writes waited for their durable commits (the server's /metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-15}"
calls="${2:-2000}"
rounds="${3:-1}"
conns="${CONNECTIONS:-64}"
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 2; }
base=$(scripts/ensure-postgres)
export PGOPTIONS="-c client_min_messages=warning"
[ -d tests/node_modules ] || (cd tests && npm ci --no-audit --no-fund --loglevel=error)
if [ -z "${COUNTERSIGN_SKIP_BUILD:-}" ]; then
  # One invocation for every binary, so they share one feature set (bench/mcp-latency.sh's).
  cargo build --release --locked -p countersign -p countersign-mcp --bins --examples >&2
fi
bin=${COUNTERSIGN_BIN:-$PWD/target/release/countersign}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"
echo "# $(date -u '+%F %T UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (modified)'), server $bin, duration ${duration}s, ${conns} connections"

serve() { # DATABASE_URL
  sed "s#^database = .*#database = \"$1\"#" examples/countersign.toml > "$work/countersign.toml"
  COUNTERSIGN_LOG=warn "$bin" serve --config "$work/countersign.toml" --listen 127.0.0.1:8798 \
    >> "$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:8798/healthz >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the server did not start" >&2; cat "$work/serve.log" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }
# wrk -t1 (the server gets the other core); PATH_OR_SCRIPT: /healthz, or allow.lua's POSTs.
load() { # OUT_FILE allow|healthz
  if [ "$2" = allow ]; then
    wrk -t1 -c"$conns" -d"${duration}s" --latency -s bench/allow.lua http://127.0.0.1:8798 > "$1"
    local bad; bad=$(awk '/non-201/ {print $3}' "$1")
    [ "$bad" = 0 ] || { echo "allow path: $bad answers were not 201" >&2; cat "$1" >&2; exit 1; }
  else
    wrk -t1 -c"$conns" -d"${duration}s" --latency http://127.0.0.1:8798/healthz > "$1"
  fi
  grep -q "Non-2xx" "$1" && { echo "non-2xx answers:" >&2; cat "$1" >&2; exit 1; }
  true
}
rps() { awk '/^Requests\/sec/ {printf "%.0f", $2}' "$1"; }
# p99 in ms from wrk's --latency distribution (units us, ms or s).
p99() {
  awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
       printf "%.2f", (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : v)) }' "$1"
}
. bench/proc-cpu.sh
# CPU ticks: the machine's busy and idle time, the server's, its SQLite writer thread's.
cpu() { echo "$(machine_ticks) $(process_ticks "$pid") $(writer_ticks "$pid")"; }
# What a load cost, per request: "BEFORE" "AFTER" WRK_OUT -> busy %, machine µs, server µs, writer µs.
cost() {
  local hz n; hz=$(getconf CLK_TCK); n=$(awk '/requests in/ {print $1}' "$3")
  awk -v hz="$hz" -v n="$n" -v a="$1" -v b="$2" 'BEGIN { split(a, x); split(b, y);
    busy = y[1] - x[1]; idle = y[2] - x[2];
    printf "machine %.0f%% busy, CPU per request: machine %.1f us, server %.1f us, its SQLite writer %.1f us",
      100 * busy / (busy + idle), busy / hz * 1e6 / n, (y[3] - x[3]) / hz * 1e6 / n, (y[4] - x[4]) / hz * 1e6 / n }'
}
# The server's writes' waits for their durable commits so far: "SECONDS_SUM COUNT" (its
# /metrics histogram: each write observes its wait, queued, batched and committed).
commits() {
  curl -fs http://127.0.0.1:8798/metrics | awk '
    /^countersign_store_commit_duration_seconds_sum/ { s += $NF }
    /^countersign_store_commit_duration_seconds_count/ { n += $NF }
    END { print s + 0, n + 0 }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "target met" : "target NOT met") }'; }

for r in $(seq "$rounds"); do
  echo "== round $r: SQLite server, GET /healthz then POST /v1/actions; PostgreSQL server, POST /v1/actions"
  rm -rf "$work/data"
  serve "sqlite://data/bench.db"
  c0=$(cpu)
  load "$work/ceiling.$r" healthz
  c1=$(cpu)
  m1=$(commits)
  load "$work/sqlite.$r" allow
  c2=$(cpu)
  m2=$(commits)
  rows=$("$PWD/target/release/examples/count_actions" "$work/data/bench.db")
  stop
  schema="bench_ratios_$r"
  psql -q "$base" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema;" >/dev/null
  db="$base?options=-csearch_path%3D$schema"
  serve "$db"
  load "$work/pg.$r" allow
  pgrows=$(psql -tA "$db" -c 'SELECT count(*) FROM actions')
  stop
  psql -q "$base" -c "DROP SCHEMA $schema CASCADE;" >/dev/null
  printf '  GET /healthz         %8s req/s  p99 %7s ms\n' "$(rps "$work/ceiling.$r")" "$(p99 "$work/ceiling.$r")"
  printf '  allow path, SQLite   %8s req/s  p99 %7s ms  (%s rows durably recorded)\n' \
    "$(rps "$work/sqlite.$r")" "$(p99 "$work/sqlite.$r")" "$rows"
  echo "    /healthz:   $(cost "$c0" "$c1" "$work/ceiling.$r")"
  echo "    allow path: $(cost "$c1" "$c2" "$work/sqlite.$r")"
  awk -v a="$m1" -v b="$m2" -v c="$conns" -v rps="$(rps "$work/sqlite.$r")" 'BEGIN {
    split(a, x); split(b, y);
    printf "    allow path: a write waited %.2f ms on average for its durable commit (queued, batched, committed), of a mean latency of %.2f ms (%d connections / throughput)\n",
      1000 * (y[1] - x[1]) / (y[2] - x[2]), 1000 * c / rps, c }'
  printf '  allow path, Postgres %8s req/s  p99 %7s ms  (%s rows durably recorded)\n' \
    "$(rps "$work/pg.$r")" "$(p99 "$work/pg.$r")" "$pgrows"
done
med() { for r in $(seq "$rounds"); do "$1" "$work/$2.$r"; echo; done | median; }
ceiling=$(med rps ceiling); sqlite=$(med rps sqlite); sqlite99=$(med p99 sqlite)
pg=$(med rps pg); pg99=$(med p99 pg)

echo "== (b) MCP stdio: $calls allowed tools/call direct and through countersign, and between the two"
echo "   calls of each pair one durable SQLite commit alone on the same disk (stdio_latency's COMMIT_PROBE)"
mkdir -p "$work/mcp/policies"
cat > "$work/mcp/policies/mcp.cedar" <<'CEDAR'
@id("mcp-echo") permit (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/echo");
CEDAR
hash=$(printf %s bench-agent-token | sha256sum | cut -d' ' -f1)
cat > "$work/mcp/countersign.toml" <<TOML
database = "sqlite://gw.db"
policies = "policies"
[[identities]]
id = "bench-agent"
kind = "agent"
api_key_sha256 = "$hash"
TOML
server=(node tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio)
COMMIT_PROBE="$work/mcp/probe.db" "$PWD/target/release/examples/stdio_latency" "$calls" -- "${server[@]}" -- \
  "$bin" mcp stdio --config "$work/mcp/countersign.toml" --token bench-agent-token \
  --server-name everything -- "${server[@]}" | tee "$work/mcp.txt" | sed 's/^/  /'
# The first "| added |" row is the allowed tools/call's (the second is ping's).
read -r a50 a99 < <(awk -F'|' '/^\| added/ { gsub(/ /, ""); print $3, $5; exit }' "$work/mcp.txt")
read -r c50 c99 < <(awk -F'|' '/^\| durable commit alone/ { gsub(/ /, ""); print $3, $5; exit }' "$work/mcp.txt")

echo "== ratios (median of $rounds round(s) for the allow path)"
awk -v a="$sqlite" -v c="$ceiling" -v p="$sqlite99" -v v1="$(verdict "$(awk -v a="$sqlite" -v c="$ceiling" 'BEGIN{print (a >= 0.30 * c)}')")" \
  -v v2="$(verdict "$(awk -v p="$sqlite99" 'BEGIN{print (p <= 5)}')")" 'BEGIN {
  printf "(a) allow path %d/s = %.1f%% of the /healthz ceiling %d/s (target >= 30%%): %s\n", a, 100 * a / c, c, v1
  printf "(a) allow path p99 %.2f ms (target <= 5 ms): %s\n", p, v2 }'
awk -v g="$pg" -v s="$sqlite" -v p="$pg99" -v v1="$(verdict "$(awk -v g="$pg" -v s="$sqlite" 'BEGIN{print (g >= 0.5 * s)}')")" \
  -v v2="$(verdict "$(awk -v p="$pg99" 'BEGIN{print (p <= 15)}')")" 'BEGIN {
  printf "(c) PostgreSQL allow path %d/s = %.1f%% of SQLite %d/s (target >= 50%%): %s\n", g, 100 * g / s, s, v1
  printf "(c) PostgreSQL allow path p99 %.2f ms (target <= 15 ms): %s\n", p, v2 }'
awk -v a="$a50" -v c="$c50" -v q="$a99" -v v1="$(verdict "$(awk -v a="$a50" -v c="$c50" 'BEGIN{print (a <= c + 0.15)}')")" \
  -v v2="$(verdict "$(awk -v q="$a99" 'BEGIN{print (q <= 2)}')")" 'BEGIN {
  printf "(b) MCP added p50 %.3f ms = commit alone %.3f ms + %.3f ms (target <= commit + 0.150 ms): %s\n", a, c, a - c, v1
  printf "(b) MCP added p99 %.3f ms (target <= 2 ms): %s\n", q, v2 }'
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
