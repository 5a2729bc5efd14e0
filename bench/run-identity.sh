#!/usr/bin/env bash
# OIDC verification with a cached JWKS (the per-request cost of an OIDC bearer token).
# Re-run on a quiet machine and copy the three `time:` lines into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p countersign-identity --bench verify 2>&1 | grep -E '^oidc_verify|time:'
