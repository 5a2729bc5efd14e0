#!/usr/bin/env bash
# Notification latency through the outbox (issue #15): review opened -> webhook received, and
# vote -> `decided` webhook received, at 50 concurrent reviews, against a release build on
# loopback (the demo config plus one [[webhooks]] entry, durable SQLite).
#   bench/outbox-latency.sh [REVIEWS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
concurrency="${2:-50}"
port=${PORT:-18771}
hook=${HOOK_PORT:-18772}
profile=${PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
cargo build $flag -p countersign --bins --example webhook_latency >/dev/null
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"
sed 's#^database = .*#database = "sqlite://data/bench.db"#' examples/countersign.toml > "$work/countersign.toml"
cat >> "$work/countersign.toml" <<TOML

[[webhooks]]
name = "bench"
url = "http://127.0.0.1:$hook/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOML
COUNTERSIGN_LOG=warn "target/$profile/countersign" serve --config "$work/countersign.toml" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
"target/$profile/examples/webhook_latency" "http://127.0.0.1:$port" "$hook" "$n" "$concurrency"
