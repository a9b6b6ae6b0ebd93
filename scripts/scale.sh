#!/usr/bin/env bash
# The scale harness of issue #12 at full size: for each N (default 1000 and 10000) a fresh
# control plane, N RelayServices (one pod, a port and a config each) plus N unrelated
# Secrets, the operator built in release mode, and a reload of one service of
# RELAY_SCALE_RELOAD_PODS pods (default 1000). Prints the harness's `e2e: scale` lines:
# time to the first reconcile of all, time to converge, RSS, requests while idle
# (RELAY_SCALE_IDLE_SECS, default 60), writes after a restart, RSS during the reload.
#
# Usage: scripts/scale.sh [N ...]
# Needs scripts/install-tools.sh (the control plane). A 10,000 run takes tens of minutes
# on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(1000 10000)

nice -n 5 cargo build --locked --release --bin relay-operator
nice -n 5 cargo test --locked --test e2e --no-run
for n in "${SIZES[@]}"; do
  echo "== N = $n ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
  RELAY_SCALE_N="$n" \
  RELAY_SCALE_RELOAD_PODS="${RELAY_SCALE_RELOAD_PODS:-1000}" \
  RELAY_SCALE_IDLE_SECS="${RELAY_SCALE_IDLE_SECS:-60}" \
  RELAY_E2E_OPERATOR_BIN="$TARGET/release/relay-operator" \
    cargo test --locked --test e2e -- --exact \
      scale::many_services_converge_then_idle_and_restart_without_requests --nocapture 2>&1 \
    | grep -E '^e2e: scale|panicked|test result'
done
