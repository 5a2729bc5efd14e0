#!/usr/bin/env bash
# Teams channel latency (issue #15): review opened -> card sent at local doubles of Entra ID and
# the Bot Connector, and click (an adaptiveCard/action invoke with a Bot Connector token) ->
# invoke answered with the updated card, -> vote committed -> agent's long poll released, and
# -> card updated in place with the final state, at 50 concurrent reviews, against a build on
# loopback (the demo config plus [teams] pointing at the doubles and alice's
# teams_aad_object_id, durable SQLite).
#   bench/teams-latency.sh [REVIEWS] [CONCURRENCY]      # PROFILE=debug to use a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
concurrency="${2:-50}"
port=${PORT:-18783}
double=${DOUBLE_PORT:-18784}
profile=${PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
app_id="6f1c2b6e-0d1a-4c59-9d7e-2b1f3c4d5e6f"
cargo build $flag -p countersign --bins --example teams_latency >/dev/null
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r examples/policies "$work/"
sed -e 's#^database = .*#database = "sqlite://data/bench.db"#' \
    -e 's#^id = "alice" .*#&\nteams_aad_object_id = "00000000-0000-0000-0000-0000000a11ce"#' \
    examples/countersign.toml > "$work/countersign.toml"
cat >> "$work/countersign.toml" <<TOML

[teams]
app_id = "$app_id"
app_password = "bench-client-secret"
tenant_id = "tenant"
token_url = "http://127.0.0.1:$double/tenant/oauth2/v2.0/token"
openid_metadata_url = "http://127.0.0.1:$double/v1/.well-known/openidconfiguration"
service_url = "http://127.0.0.1:$double/teams/"
default_channel = "bench"

[teams.conversations]
bench = "19:bench@thread.tacv2"
TOML
COUNTERSIGN_LOG=warn "target/$profile/countersign" serve --config "$work/countersign.toml" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
"target/$profile/examples/teams_latency" "http://127.0.0.1:$port" "$double" "$app_id" "$n" "$concurrency"
