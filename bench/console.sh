#!/usr/bin/env bash
# The web console's figures (issue #16): the queue page with 1,000 open reviews rendered on the
# server (GET /console latency over loopback, p50/p99), and an API vote reaching an open
# console page's event stream (p50/p99). A release build of crates/server/examples/console_bench.rs.
#   bench/console.sh            REVIEWS=1000 RUNS=200 by default
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked -p countersign-server --example console_bench
