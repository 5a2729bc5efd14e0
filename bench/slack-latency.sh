#!/usr/bin/env bash
# Slack channel latency (issue #15): review opened -> chat.postMessage at a local Slack Web API
# double, and click (signed block_actions) -> vote committed -> agent's long poll released ->
# chat.update with the final state, at 50 concurrent reviews, against a build on loopback (the
# demo config plus [slack] pointing at the double and alice's slack_user_id, durable SQLite).
#   bench/slack-latency.sh [REVIEWS] [CONCURRENCY]      # PROFILE=debug to use a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
concurrency="${2:-50}"
port=${PORT:-18781}
double=${DOUBLE_PORT:-18782}
profile=${PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
secret="bench-signing-secret-0123456789abcdef"
cargo build $flag -p countersign --bins --example slack_latency >/dev/null
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"
sed -e 's#^database = .*#database = "sqlite://data/bench.db"#' \
    -e 's#^id = "alice" .*#&\nslack_user_id = "UALICE"#' \
    examples/countersign.toml > "$work/countersign.toml"
cat >> "$work/countersign.toml" <<TOML

[slack]
mode = "http"
bot_token = "xoxb-bench-token"
signing_secret = "$secret"
api_base_url = "http://127.0.0.1:$double/api/"
default_channel = "#approvals"
TOML
COUNTERSIGN_LOG=warn "target/$profile/countersign" serve --config "$work/countersign.toml" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
"target/$profile/examples/slack_latency" "http://127.0.0.1:$port" "$double" "$secret" "$n" "$concurrency"
