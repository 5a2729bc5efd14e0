#!/usr/bin/env bash
# Added latency of `countersign run` of an allowed `true` against a local gateway (`countersign
# serve` on the demo config, durable SQLite), side by side with running `true` directly.
#   bench/run-latency.sh [RUNS]
# Needs hyperfine (Debian: apt-get install -y hyperfine). Prints hyperfine's table and the
# medians; the JSON is left in $OUT (default target/bench-run-latency.json).
# In the same run it measures the parts `run` cannot avoid, to show the floor under it:
# process start (of the front binary that `run` is: `countersign run` stopped at its first step by
# an unknown log format, through `env`, which adds its own exec; and of `countersign --version`,
# which the front hands to `countersign-full`: both binaries start), one durable round trip alone (POST /v1/actions of an
# allowed action over a kept-alive connection: HTTP + policy + the SQLite commit), one
# round trip that commits nothing (GET /readyz), one 4 KiB O_DSYNC write (back to back and after idle) on the database's
# disk, and the server's own commit latency histogram over the `run`s.
# The same `run` through `countersign-full` (the one big binary every command was before the
# front binary) is timed beside it, so the front's saving is measured in the same run.
# COUNTERSIGN_BIN=PATH skips the build (countersign-full is taken from beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-500}
out=${OUT:-target/bench-run-latency.json}
port=${PORT:-18761}
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install -y hyperfine" >&2; exit 2; }
if [ -n "${COUNTERSIGN_BIN:-}" ]; then
  bin=$COUNTERSIGN_BIN
else
  cargo build --release --locked -p countersign --bins
  bin=$PWD/target/release/countersign
fi
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
full_run="$(dirname "$bin")/countersign-full run --action logs.read --resource logs://bench -- true"
# Check it runs (exit 0) before timing it.
$run
commits() { curl -sf "http://127.0.0.1:$port/metrics" | grep '^countersign_store_commit_duration_seconds' ; }
commits >"$work/commits.before"
# -i: the front-start probe exits 2 by design (`$run` was checked above).
hyperfine -N -i --warmup 20 --runs "$runs" --export-json "$out" \
  -n direct "true" -n "countersign run" "$run" -n "countersign-full run" "$full_run" \
  -n "countersign --version" "$bin --version" \
  -n "front start" "env COUNTERSIGN_LOG_FORMAT=none-such $run"
commits >"$work/commits.after"
# One durable round trip alone, and one that commits nothing, over one kept-alive connection.
python3 - "$port" "$runs" >"$work/rtt.json" <<'PY'
import http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
hdr = {"Authorization": "Bearer demo-agent-token", "Content-Type": "application/json"}
body = json.dumps({"action": "logs.read", "resource": "logs://bench-rtt"})
def timed(method, path, body=None):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.request(method, path, body=body, headers=hdr)
        r = c.getresponse(); r.read()
        out.append(time.perf_counter() - t)
        assert r.status in (200, 201), r.status
    return sorted(out)
def idle(method, path, body=None, gap=0.005):
    # As `run` meets the gateway: idle for a few ms (hyperfine starts the next `run`).
    out = []
    for _ in range(n // 2):
        time.sleep(gap)
        t = time.perf_counter()
        c.request(method, path, body=body, headers=hdr)
        r = c.getresponse(); r.read()
        out.append(time.perf_counter() - t)
    return sorted(out)
timed("GET", "/readyz")  # warm-up
print(json.dumps({"submit": timed("POST", "/v1/actions", body), "readyz": timed("GET", "/readyz"),
                  "submit_idle": idle("POST", "/v1/actions", body), "readyz_idle": idle("GET", "/readyz")}))
PY
# The machine's own wake-up cost: a one-byte echo between two processes on the two CPUs,
# back to back and after 5 ms idle (no countersign code involved).
python3 - "$runs" >"$work/wake.json" <<'PY'
import json, os, socket, sys, time
n = int(sys.argv[1])
a, b = socket.socketpair()
if os.fork() == 0:
    os.sched_setaffinity(0, {1}); a.close()
    while True:
        d = b.recv(64)
        if not d: os._exit(0)
        b.send(d)
os.sched_setaffinity(0, {0}); b.close()
def go(gap):
    ts = []
    for _ in range(n):
        if gap: time.sleep(gap)
        t = time.perf_counter(); a.send(b"x"); a.recv(64); ts.append(time.perf_counter() - t)
    return sorted(ts)
print(json.dumps({"echo": go(0), "echo_idle": go(0.005)}))
PY
# The disk's own flush: one 4 KiB O_DSYNC write on the database's disk, back to back and after
# 5 ms idle (as a lone commit meets it; no countersign code involved).
python3 - "$runs" "$work/dsync.probe" >"$work/dsync.json" <<'PY'
import json, os, sys, time
n, path = int(sys.argv[1]), sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
buf = b"x" * 4096
def go(gap):
    ts = []
    for i in range(n):
        if gap: time.sleep(gap)
        t = time.perf_counter(); os.pwrite(fd, buf, (i % 64) * 4096); ts.append(time.perf_counter() - t)
    return sorted(ts)
print(json.dumps({"dsync": go(0), "dsync_idle": go(0.005)}))
PY
python3 - "$out" "$work" <<'PY'
import json, re, sys
out, work = sys.argv[1], sys.argv[2]
r = {x["command"]: sorted(x["times"]) for x in json.load(open(out))["results"]}
rtt = json.load(open(f"{work}/rtt.json"))
wake = json.load(open(f"{work}/wake.json"))
dsync = json.load(open(f"{work}/dsync.json"))
def pct(ts, p): return ts[min(len(ts) - 1, int(p * len(ts)))] * 1000
d, c, v, f = r["direct"], r["countersign run"], r["countersign --version"], r["front start"]
for name, ts in (("direct", d), ("countersign run", c), ("countersign-full run", r["countersign-full run"]),
                 ("countersign --version", v),
                 ("front start (+ env)", f),
                 ("POST /v1/actions", rtt["submit"]), ("GET /readyz", rtt["readyz"]),
                 ("POST after 5 ms idle", rtt["submit_idle"]), ("GET after 5 ms idle", rtt["readyz_idle"]),
                 ("echo (2 processes)", wake["echo"]), ("echo after 5 ms idle", wake["echo_idle"]),
                 ("4 KiB O_DSYNC write", dsync["dsync"]), ("O_DSYNC after 5 ms idle", dsync["dsync_idle"])):
    print(f"{name:22} p50 {pct(ts, .5):7.3f} ms  p90 {pct(ts, .9):7.3f} ms  p99 {pct(ts, .99):7.3f} ms")
def hist(path):
    h = {}
    for line in open(path):
        m = re.match(r'countersign_store_commit_duration_seconds_(sum|count)\S* (\S+)', line)
        if m: h[m.group(1)] = float(m.group(2))
    return h
a, b = hist(f"{work}/commits.after"), hist(f"{work}/commits.before")
n = a.get("count", 0) - b.get("count", 0)
if n > 0:
    print(f"server commits during the runs: {int(n)}, mean {1000 * (a['sum'] - b.get('sum', 0)) / n:.3f} ms (queue + fsync)")
added = pct(c, .5) - pct(d, .5)
print(f"added p50 through countersign-full (before the front binary): {pct(r['countersign-full run'], .5) - pct(d, .5):.3f} ms")
floor = pct(f, .5) + 2 * pct(rtt["submit"], .5)
print(f"added p50: {added:.3f} ms (target <= 5 ms)")
print(f"floor: front start {pct(f, .5):.3f} + 2 durable round trips {2 * pct(rtt['submit'], .5):.3f} = {floor:.3f} ms; "
      f"run above the floor: {pct(c, .5) - pct(d, .5) - floor:.3f} ms")
idle_floor = pct(f, .5) + 2 * pct(rtt["submit_idle"], .5)
print(f"floor with the gateway idle between runs, as hyperfine leaves it: front start {pct(f, .5):.3f} + 2 durable "
      f"round trips after idle {2 * pct(rtt['submit_idle'], .5):.3f} = {idle_floor:.3f} ms")
# What no code of ours is in: one more process start (the direct `true`), and per durable round
# trip a request that does no work after idle (GET /readyz) plus the disk's flush after idle.
machine = pct(d, .5) + 2 * (pct(rtt["readyz_idle"], .5) + pct(dsync["dsync_idle"], .5))
print(f"machine floor: a process start {pct(d, .5):.3f} + 2 x (GET after idle {pct(rtt['readyz_idle'], .5):.3f} "
      f"+ O_DSYNC after idle {pct(dsync['dsync_idle'], .5):.3f}) = {machine:.3f} ms")
PY
