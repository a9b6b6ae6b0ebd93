#!/usr/bin/env bash
# Generate the kubectl install from the Helm chart with default values, as two files:
#
#   deploy/crds.yaml       the CustomResourceDefinitions only (`helm show crds`)
#   deploy/operator.yaml   Namespace, ServiceAccount, RBAC, Service, Deployment: no CRDs, so
#                          `kubectl delete -f deploy/operator.yaml` removes the operator and
#                          leaves every RelayService, HealthPolicy and TestDeployment (and
#                          their pods) in place.
#
#   scripts/gen-install.sh            # (re)write both files
#   scripts/gen-install.sh --check    # exit 1 if a committed file drifted
#   OUT_DIR=dir scripts/gen-install.sh [--check]   # write (or check) dir/crds.yaml, dir/operator.yaml
#   IMAGE_REPOSITORY=ghcr.io/acme/relay-operator IMAGE_TAG=1.2.0 OUT_DIR=dist scripts/gen-install.sh
#                                     # a release's files: the Deployment runs that image
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/bin:$PATH"
CHART="$ROOT/charts/relay-operator"
OUT_DIR="${OUT_DIR:-$ROOT/deploy}"
NAMESPACE=relay-operator
RELEASE=relay-operator
FILES=(crds.yaml operator.yaml)

command -v helm >/dev/null || { echo "helm not found: run scripts/install-tools.sh" >&2; exit 2; }

# Chart values for the image: the chart's defaults unless IMAGE_REPOSITORY / IMAGE_TAG are set.
image_args=()
settings=""
if [[ -n "${IMAGE_REPOSITORY:-}" ]]; then
  image_args+=(--set "image.repository=$IMAGE_REPOSITORY")
  settings+=" image.repository=$IMAGE_REPOSITORY"
fi
if [[ -n "${IMAGE_TAG:-}" ]]; then
  image_args+=(--set-string "image.tag=$IMAGE_TAG")
  settings+=" image.tag=$IMAGE_TAG"
fi

# header SOURCE: the comment every generated file starts with.
header() {
  cat <<YAML
# GENERATED FILE - DO NOT EDIT.
# Source: $1, by scripts/gen-install.sh.
# Install:   kubectl apply --server-side -f deploy/crds.yaml && kubectl apply -f deploy/operator.yaml
# Uninstall: kubectl delete -f deploy/operator.yaml (custom resources and their pods stay)
YAML
}

render_crds() {
  header "the CRDs of charts/relay-operator (helm show crds)"
  echo "# This file: the CustomResourceDefinitions. Deleting them deletes every RelayService,"
  echo "# HealthPolicy and TestDeployment in the cluster and, through owner references, their pods."
  helm show crds "$CHART"
}

render_operator() {
  header "charts/relay-operator with default values${settings:+ and$settings}"
  cat <<YAML
# This file: the operator (no CRDs).
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
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --skip-crds ${image_args[@]+"${image_args[@]}"}
}

render() {
  case "$1" in
    crds.yaml) render_crds ;;
    operator.yaml) render_operator ;;
  esac
}

rel() { printf '%s' "${1#"$ROOT"/}"; }

case "${1:-}" in
  --check)
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    drifted=0
    for f in "${FILES[@]}"; do
      out="$OUT_DIR/$f"
      render "$f" > "$tmp"
      if ! diff -u --label "$(rel "$out") (committed)" --label "$(rel "$out") (generated)" "$out" "$tmp"; then
        echo "ERROR: $(rel "$out") is out of date with the chart; run scripts/gen-install.sh and commit the result" >&2
        drifted=1
      else
        echo "$(rel "$out") is up to date"
      fi
    done
    exit "$drifted"
    ;;
  "")
    mkdir -p "$OUT_DIR"
    for f in "${FILES[@]}"; do
      render "$f" > "$OUT_DIR/$f"
      echo "wrote $(rel "$OUT_DIR/$f")"
    done
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
