#!/usr/bin/env bash
# The whole test suite: Rust tests, then the chart, manifest and metrics checks with the
# real tools (helm, kubernetes-validate, promtool), installed into .tools/ on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The RBAC coverage test renders the chart with helm, so the tools come first.
scripts/install-tools.sh

cargo test --locked --all-targets
cargo test --locked --doc

scripts/check-chart.sh
scripts/test-checks.sh
cargo build --locked --bin relay-operator
scripts/check-metrics.sh target/debug/relay-operator
scripts/check-docker-context.sh
