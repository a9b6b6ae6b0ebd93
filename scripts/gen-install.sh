#!/usr/bin/env bash
# Generate deploy/install.yaml (one file for `kubectl apply -f`) from the Helm
# chart with default values: Namespace + CRDs + RBAC + Deployment + Service.
#
#   scripts/gen-install.sh           # (re)write deploy/install.yaml
#   scripts/gen-install.sh --check   # exit 1 if the committed file drifted
#   OUT=path scripts/gen-install.sh --check   # check another file (used by tests)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/bin:$PATH"
CHART="$ROOT/charts/relay-operator"
OUT="${OUT:-$ROOT/deploy/install.yaml}"
NAMESPACE=relay-operator
RELEASE=relay-operator

command -v helm >/dev/null || { echo "helm not found: run scripts/install-tools.sh" >&2; exit 2; }

render() {
  cat <<YAML
# GENERATED FILE - DO NOT EDIT.
# Source: charts/relay-operator with default values, by scripts/gen-install.sh.
# Install: kubectl apply -f deploy/install.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: ${NAMESPACE}
  labels:
    app.kubernetes.io/name: relay-operator
    app.kubernetes.io/part-of: relay-operator
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
YAML
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --include-crds
}

case "${1:-}" in
  --check)
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    render > "$tmp"
    if ! diff -u --label "${OUT#$ROOT/} (committed)" --label "${OUT#$ROOT/} (generated)" "$OUT" "$tmp"; then
      echo "ERROR: ${OUT#$ROOT/} is out of date with the chart; run scripts/gen-install.sh and commit the result" >&2
      exit 1
    fi
    echo "${OUT#$ROOT/} is up to date"
    ;;
  "")
    mkdir -p "$(dirname "$OUT")"
    render > "$OUT"
    echo "wrote ${OUT#$ROOT/}"
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
