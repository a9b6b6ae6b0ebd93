#!/usr/bin/env bash
# The whole test suite: Rust tests, the end-to-end suite on a real control plane, then the
# chart, manifest and metrics checks with the real tools (helm, kubernetes-validate,
# promtool, and etcd/kube-apiserver/kube-controller-manager built from Go modules),
# installed on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The RBAC coverage test renders the chart with helm, so the tools come first.
scripts/install-tools.sh

cargo test --locked --all-targets
cargo test --locked --doc
# The end-to-end suite on the real control plane built by install-tools.sh; --show-output
# prints each scenario's measured figures (lines starting with `e2e:`). Without backtraces a
# failed scenario ends in its panic message, not in 40 lines of tokio frames.
RUST_BACKTRACE=0 cargo test --locked --test e2e -- --show-output --test-threads 4

scripts/check-chart.sh
scripts/test-checks.sh
cargo build --locked --bin relay-operator
scripts/check-metrics.sh target/debug/relay-operator
scripts/check-docker-context.sh
