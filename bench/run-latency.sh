#!/usr/bin/env bash
# Added latency of `countersign run` of an allowed `true` against a local gateway (`countersign
# serve` on the demo config, durable SQLite), side by side with running `true` directly.
#   bench/run-latency.sh [RUNS]
# Needs hyperfine (Debian: apt-get install -y hyperfine). Prints hyperfine's table and the
# medians; the JSON is left in $OUT (default target/bench-run-latency.json).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-500}
out=${OUT:-target/bench-run-latency.json}
port=${PORT:-18761}
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install -y hyperfine" >&2; exit 2; }
cargo build --release --locked -p countersign --bins
bin=$PWD/target/release/countersign
work=$(mktemp -d)
cp -r examples/countersign.toml examples/policies "$work/"
"$bin" serve --config "$work/countersign.toml" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
export COUNTERSIGN_URL="http://127.0.0.1:$port" COUNTERSIGN_TOKEN=demo-agent-token
# logs.read is allowed outright by the demo policies (examples/policies/routine.cedar).
run="$bin run --action logs.read --resource logs://bench -- true"
# Check it runs (exit 0) before timing it.
$run
hyperfine -N --warmup 20 --runs "$runs" --export-json "$out" \
  -n direct "true" -n "countersign run" "$run"
python3 - "$out" <<'PY'
import json, sys
r = {x["command"]: sorted(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
def pct(ts, p): return ts[min(len(ts) - 1, int(p * len(ts)))] * 1000
d, c = r["direct"], r["countersign run"]
for name, ts in (("direct", d), ("countersign run", c)):
    print(f"{name:16} p50 {pct(ts, .5):7.3f} ms  p90 {pct(ts, .9):7.3f} ms  p99 {pct(ts, .99):7.3f} ms")
print(f"added p50: {pct(c, .5) - pct(d, .5):.3f} ms (target <= 5 ms)")
PY
