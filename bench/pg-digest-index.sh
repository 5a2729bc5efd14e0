#!/usr/bin/env bash
# A/B of PostgreSQL's digest index on the allow path (issue #20), one binary: the partial index
# of migration 10 against the full `(requester, digest)` index it replaced, created by hand in the
# fresh schema after the server migrated. Three rounds of alternating 10 s `wrk -t1 -c64` runs of
# bench/allow.lua; CPU per recorded action of the postgres processes and of the server, from
# /proc/PID/stat around each run. Needs a release build (cargo build --release -p countersign
# --bins), wrk and PostgreSQL (scripts/ensure-postgres).
#   bench/pg-digest-index.sh
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(scripts/ensure-postgres)
bin=$PWD/target/release/countersign-full
work=$(mktemp -d); cp -r examples/policies "$work/"
. bench/proc-cpu.sh
for round in 1 2 3; do
for variant in partial full; do
  schema="bench_ab_${variant}_$round"
  psql -q "$base" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema;" >/dev/null
  db="$base?options=-csearch_path%3D$schema"
  sed "s#^database = .*#database = \"$db\"#" examples/countersign.toml > "$work/countersign.toml"
  COUNTERSIGN_LOG=warn "$bin" serve --config "$work/countersign.toml" --listen 127.0.0.1:8797 >> "$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:8797/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  if [ $variant = full ]; then psql -q "$base" -c "CREATE INDEX actions_requester_digest ON $schema.actions(requester, digest);" >/dev/null; fi
  pgp=$(pgrep -x postgres | tr '\n' ' '); pgp="$pgp $(pgrep -f 'postgres:' | tr '\n' ' ')"
  a=$(process_ticks $pgp); s=$(process_ticks $pid)
  wrk -t1 -c64 -d10s --latency -s bench/allow.lua http://127.0.0.1:8797 > "$work/wrk.txt"
  b=$(process_ticks $pgp); e=$(process_ticks $pid)
  n=$(psql -tA "$base" -c "SELECT count(*) FROM $schema.actions")
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
  echo "$variant round $round: $rps req/s p99 $p99, rows $n, postgres CPU $(( (b-a)*10000000/n )) ns/action, server CPU $(( (e-s)*10000000/n )) ns/action"
  kill $pid; wait $pid 2>/dev/null || true
  psql -q "$base" -c "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1
done
done
rm -rf "$work"
