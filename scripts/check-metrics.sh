#!/usr/bin/env bash
# Start the operator binary against an unreachable API server, scrape /metrics,
# require every family the operator exposes from the start (with HELP and TYPE,
# error counters at 0, relay_operator_leader 1 without leader election, process
# metrics) and lint the exposition with `promtool check metrics`.
#
#   scripts/check-metrics.sh target/debug/relay-operator
#   KEEP_METRICS=FILE scripts/check-metrics.sh ...   # also keep the scrape in FILE
#
# Contract relied on: `BINARY run --metrics-addr ADDR` serves /metrics even when
# the API server cannot be reached (here: a kubeconfig pointing at
# https://127.0.0.1:1, which refuses connections).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/bin:$PATH"
BINARY="${1:?usage: $0 BINARY}"
TIMEOUT_S="${METRICS_TIMEOUT_S:-10}"
[[ -x "$BINARY" ]] || { echo "not an executable: $BINARY" >&2; exit 2; }
command -v promtool >/dev/null || { echo "promtool not found: run scripts/install-tools.sh" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }

WORK="$(mktemp -d)"
PID=""
cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$PID" 2>/dev/null || true
  fi
  [[ -n "${KEEP_METRICS:-}" ]] && cp "$WORK/metrics.txt" "$KEEP_METRICS"
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port (bind to port 0, read what the kernel picked).
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"

cat > "$WORK/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: unreachable
    cluster:
      server: https://127.0.0.1:1
      insecure-skip-tls-verify: true
users:
  - name: nobody
    user:
      token: not-a-real-token
contexts:
  - name: unreachable
    context: {cluster: unreachable, user: nobody, namespace: default}
current-context: unreachable
YAML

echo "starting: $BINARY run --metrics-addr 127.0.0.1:$PORT (KUBECONFIG -> https://127.0.0.1:1)"
KUBECONFIG="$WORK/kubeconfig" POD_NAMESPACE=default POD_NAME=check-metrics \
  "$BINARY" run --metrics-addr "127.0.0.1:$PORT" > "$WORK/operator.log" 2>&1 < /dev/null &
PID=$!

deadline=$((SECONDS + TIMEOUT_S))
until curl -fsS --max-time 2 "http://127.0.0.1:$PORT/metrics" -o "$WORK/metrics.txt" 2>/dev/null; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "ERROR: the operator exited before serving /metrics; its output:" >&2
    sed 's/^/  | /' "$WORK/operator.log" >&2
    exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "ERROR: no /metrics on 127.0.0.1:$PORT after ${TIMEOUT_S}s; operator output:" >&2
    tail -n 30 "$WORK/operator.log" | sed 's/^/  | /' >&2
    exit 1
  fi
  sleep 0.5
done
echo "fetched /metrics: $(wc -l < "$WORK/metrics.txt") lines"

# Every family the operator exposes from the first scrape, with HELP and TYPE (the
# per-object families appear only with objects, which an unreachable API server never lists).
missing=0
for family in relay_operator_reconciliations_total:counter relay_operator_reconcile_errors_total:counter \
    relay_operator_reconcile_duration_seconds:histogram relay_operator_reconcile_retries_total:counter \
    relay_operator_reconcile_queue_depth:gauge relay_operator_managed_pods:gauge \
    relay_operator_reload_hook_calls_total:counter relay_operator_reload_propagation_seconds:histogram \
    relay_operator_reload_restarts_total:counter relay_operator_config_rollbacks_total:counter \
    relay_operator_pod_restarts:gauge \
    relay_operator_test_deployments:gauge \
    relay_operator_test_deployment_expirations_total:counter \
    relay_operator_test_deployment_time_to_running_seconds:histogram relay_operator_leader:gauge \
    relay_operator_build_info:gauge relay_operator_unreadable_objects_total:counter \
    process_cpu_seconds_total:counter process_resident_memory_bytes:gauge process_open_fds:gauge \
    process_start_time_seconds:gauge; do
  name="${family%%:*}"; type="${family#*:}"
  if grep -q "^# HELP $name " "$WORK/metrics.txt" && grep -qx "# TYPE $name $type" "$WORK/metrics.txt"; then
    echo "  present: $name ($type)"
  else
    echo "ERROR: missing from the first scrape (HELP and TYPE $type): $name" >&2; missing=1
  fi
done
# Error counters exist at zero before the first error, so rate() sees the first one.
grep -q '^relay_operator_reconcile_errors_total{error="api",kind="RelayService"} 0$' "$WORK/metrics.txt" || {
  echo "ERROR: relay_operator_reconcile_errors_total{error=\"api\",kind=\"RelayService\"} 0 missing" >&2; missing=1; }
# Run without --leader-election, the replica acts alone and leads.
grep -qx 'relay_operator_leader 1' "$WORK/metrics.txt" || {
  echo "ERROR: relay_operator_leader is not 1 on a replica without leader election" >&2; missing=1; }
[[ $missing -eq 0 ]] || exit 1

echo "promtool check metrics:"
if ! promtool check metrics < "$WORK/metrics.txt"; then
  echo "ERROR: promtool check metrics found problems" >&2
  exit 1
fi
echo "check-metrics: OK"
