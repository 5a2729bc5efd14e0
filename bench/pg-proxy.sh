#!/usr/bin/env bash
# pgbench through the PostgreSQL proxy (`countersign pg`) side by side with pgbench straight to
# the server, in one run, with every statement durably recorded (a local `countersign serve`,
# durable SQLite: each statement is a submission and a result report).
#   bench/pg-proxy.sh [SECONDS]
# Env: COUNTERSIGN_TEST_POSTGRES (a superuser URL; default the local server), PROFILE=debug to
# time a debug build (default release), CLIENTS (default 16), GATE=embedded to run the gateway
# inside the proxy (`countersign pg --config`, API on GW_PORT for /metrics) instead of a separate
# `countersign serve` reached over HTTP (default), COUNTERSIGN_BIN=PATH to time that build (no
# build; countersign-full beside it).
# Prints: select-only throughput direct, through a do-nothing TCP relay (the ceiling any proxy
# process reaches on this machine: crates/pgproxy/examples/relay.rs) and through the proxy at
# CLIENTS clients, with the ratios; the CPU each costs per transaction over those runs (the whole
# machine's, the relay's, countersign's and its SQLite writer thread's, from /proc) and the
# budget a proxy has per statement at 50 % of direct; p50 latency at 1 client direct and through
# the proxy and the added latency; the gateway's mean durable commit during that 1-client run
# (from its /metrics, before and after).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
clients=${CLIENTS:-16}
admin=${COUNTERSIGN_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
gw_port=${GW_PORT:-18771}
pg_port=${PG_PORT:-18772}
db=countersign_bench
for tool in pgbench psql curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: postgresql-client, curl, python3)" >&2; exit 2; }
done
if [ -n "${COUNTERSIGN_BIN:-}" ]; then
  bin=$COUNTERSIGN_BIN
elif [ "${PROFILE:-release}" = debug ]; then
  cargo build --locked -p countersign --bins
  bin=$PWD/target/debug/countersign
else
  cargo build --release --locked -p countersign --bins
  bin=$PWD/target/release/countersign
fi
relay_bin=${RELAY_BIN:-}
if [ -z "$relay_bin" ]; then
  if [ "${PROFILE:-release}" = debug ]; then
    cargo build --locked -p countersign-pgproxy --example relay
    relay_bin=$PWD/target/debug/examples/relay
  else
    cargo build --release --locked -p countersign-pgproxy --example relay
    relay_bin=$PWD/target/release/examples/relay
  fi
fi
relay_port=${RELAY_PORT:-18773}
server_url=${admin%/*}
psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
pgbench -i -q -s 1 "$server_url/$db" >/dev/null 2>&1

work=$(mktemp -d)
mkdir "$work/policies"
token=bench-agent-token
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
cat >"$work/countersign.toml" <<TOML
database = "sqlite://data/gw.db"
policies = "policies"
grants_for_allowed = false
[[identities]]
id = "bench-agent"
kind = "agent"
groups = ["automation"]
api_key_sha256 = "$hash"
TOML
cat >"$work/policies/pg.cedar" <<'CEDAR'
@id("reads") permit (principal, action == Action::"sql.select", resource);
@id("session") permit (principal, action == Action::"sql.other", resource)
when { context.tags.contains("sql:session") };
CEDAR
server=
proxy=
relay=
cleanup() {
  # (Each line must not fail: a failing line would end this trap under `set -e`.)
  local p
  for p in $relay $proxy $server; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
}
trap cleanup EXIT
if [ "${GATE:-remote}" = embedded ]; then
  "$bin" pg --listen "127.0.0.1:$pg_port" --upstream "$server_url/$db" --server-name bench \
    --config "$work/countersign.toml" --api-listen "127.0.0.1:$gw_port" 2>"$work/pg.log" &
  proxy=$!
else
  "$bin" serve --config "$work/countersign.toml" --listen "127.0.0.1:$gw_port" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gw_port/readyz" >/dev/null && break; sleep 0.1; done
  "$bin" pg --listen "127.0.0.1:$pg_port" --upstream "$server_url/$db" --server-name bench \
    --gateway "http://127.0.0.1:$gw_port" 2>"$work/pg.log" &
  proxy=$!
fi
for _ in $(seq 100); do grep -q listening "$work/pg.log" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gw_port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$gw_port/readyz" >/dev/null || { cat "$work"/*.log >&2; exit 1; }

upstream_addr=${server_url#*://}
upstream_addr=${upstream_addr#*@}
"$relay_bin" "127.0.0.1:$relay_port" "$upstream_addr" 2>"$work/relay.log" &
relay=$!
for _ in $(seq 100); do grep -q listening "$work/relay.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/relay.log" || { cat "$work/relay.log" >&2; exit 1; }

direct() { pgbench -n -S "$@" "$server_url/$db"; }
relayed() { pgbench -n -S "$@" "${server_url%%@*}@127.0.0.1:$relay_port/$db"; }
proxied() { PGPASSWORD=$token pgbench -n -S "$@" "postgresql://bench-agent@127.0.0.1:$pg_port/$db"; }
tps() { sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
. bench/proc-cpu.sh
# CPU ticks: the whole machine's busy time, the relay's, countersign's (proxy and gateway) and
# its SQLite writer thread's.
cpu() {
  local busy _idle
  read -r busy _idle < <(machine_ticks)
  # shellcheck disable=SC2086 # $server is empty with the embedded gate
  echo "$busy $(process_ticks "$relay") $(process_ticks $proxy $server) $(writer_ticks $proxy $server)"
}

proxied -c 1 -t 10 >/dev/null   # it works before it is timed
relayed -c 1 -t 10 >/dev/null
c0=$(cpu)
d_tps=$(direct -c "$clients" -j 2 -T "$secs" | tps)
c1=$(cpu)
r_tps=$(relayed -c "$clients" -j 2 -T "$secs" | tps)
c2=$(cpu)
p_tps=$(proxied -c "$clients" -j 2 -T "$secs" | tps)
c3=$(cpu)
# Per-transaction latencies at one client (pgbench -l: the 3rd field is the latency in µs).
(cd "$work" && direct -c 1 -T "$secs" -l --log-prefix=direct >/dev/null)
# The gateway's commit histogram around the one-client run: the durable commit measured in the
# same minutes as the latency it is compared with (each statement: a submission and a report).
before=$(curl -sf "http://127.0.0.1:$gw_port/metrics")
(cd "$work" && proxied -c 1 -T "$secs" -l --log-prefix=proxied >/dev/null)
metrics=$(curl -sf "http://127.0.0.1:$gw_port/metrics")
python3 - "$work" "$d_tps" "$p_tps" "$clients" "$metrics" "$before" "$r_tps" "$secs" "$(getconf CLK_TCK)" "$(nproc)" "$c0" "$c1" "$c2" "$c3" <<'PY'
import glob, sys
work, d_tps, p_tps, clients, metrics, before = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
r_tps, secs, hz, cores = float(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9]), int(sys.argv[10])
snaps = [[int(x) for x in s.split()] for s in sys.argv[11:15]]
def per_tx(i, k, rate):  # µs of CPU per transaction, field k, between snapshots i and i+1
    return (snaps[i + 1][k] - snaps[i][k]) / hz * 1e6 / max(1.0, rate * secs)
def p50(prefix):
    ts = sorted(int(l.split()[2]) for f in glob.glob(f"{work}/{prefix}.*") for l in open(f))
    return ts[len(ts) // 2] / 1000, len(ts)
(d, dn), (p, pn) = p50("direct"), p50("proxied")
def hist(text):
    vals = {}
    for line in text.splitlines():
        for k in ("countersign_store_commit_duration_seconds_sum", "countersign_store_commit_duration_seconds_count"):
            if line.startswith(k):
                vals[k] = vals.get(k, 0) + float(line.split()[-1])
    return vals.get("countersign_store_commit_duration_seconds_sum", 0), vals.get("countersign_store_commit_duration_seconds_count", 0)
(s1, n1), (s0, n0) = hist(metrics), hist(before)
commit = 1000 * (s1 - s0) / max(1, n1 - n0)
print(f"pgbench -S, {clients} clients: direct {d_tps:.0f} tps, through the proxy {p_tps:.0f} tps: {100 * p_tps / d_tps:.1f} % (target >= 50 %)")
print(f"  through a do-nothing relay (the ceiling of any proxy process here): {r_tps:.0f} tps, {100 * r_tps / d_tps:.1f} % of direct; the proxy reaches {100 * p_tps / r_tps:.1f} % of the relay")
md, mr, mp = per_tx(0, 0, d_tps), per_tx(1, 0, r_tps), per_tx(2, 0, p_tps)
print(f"  machine CPU per transaction: direct {md:.0f} us, relayed {mr:.0f} us, proxied {mp:.0f} us ({cores} cores)")
print(f"  per statement: the relay process {per_tx(1, 1, r_tps):.0f} us; countersign {per_tx(2, 2, p_tps):.0f} us, of it the SQLite writer thread {per_tx(2, 3, p_tps):.0f} us")
budget = cores * 1e6 / (0.5 * d_tps) - md
print(f"  at 50 % of direct ({0.5 * d_tps:.0f} tps) the {cores} cores give {cores * 1e6 / (0.5 * d_tps):.0f} us per transaction; less direct's {md:.0f} us leaves a proxy {budget:.0f} us per statement, the relay's added machine CPU ({mr - md:.0f} us) included")
print(f"1 client p50: direct {d:.3f} ms ({dn} tx), through the proxy {p:.3f} ms ({pn} tx): added {p - d:.3f} ms")
print(f"mean durable commit during the 1-client run: {commit:.3f} ms; added p50 - commit = {p - d - commit:.3f} ms (target <= 0.2 ms)")
PY
