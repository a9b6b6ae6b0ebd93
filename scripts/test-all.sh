#!/usr/bin/env bash
# The whole test suite: Rust tests, then (when present) the chart and metrics checks with real tools.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets
cargo test --locked --doc
