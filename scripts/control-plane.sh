#!/usr/bin/env bash
# A throwaway Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and
# kube-controller-manager on loopback, with no kubelet, scheduler or container runtime. It is
# a real apiserver (RBAC, admission incl. Pod Security, audit, finalizers) and a real
# controller manager for the controllers that need no nodes: garbage collection, namespace
# deletion, service accounts and their tokens, kube-root-ca.crt.
#
#   scripts/control-plane.sh start DIR [--watch-pid PID]
#       Creates DIR (empty, or left by an earlier run of this script), generates
#       certificates and keys there, starts the three processes in the background and waits
#       until the apiserver is ready and the controller manager has created the `default`
#       ServiceAccount. Prints one line on stdout:
#         control plane ready in N.N s: KUBECONFIG=DIR/kubeconfig
#       Everything else goes to stderr and to DIR/*.log. DIR/env holds `export KUBECONFIG=...`.
#       With --watch-pid PID, a watchdog stops the control plane as soon as PID exits (the
#       test process passes its own pid, so nothing outlives the tests even on a panic/kill).
#   scripts/control-plane.sh stop DIR
#       Stops the processes (TERM, then KILL after 5 s). Idempotent; removes nothing.
#
# Binaries: $RELAY_CONTROL_PLANE_BIN, else the cache of scripts/install-tools.sh.
# Tunables: RELAY_CONTROL_PLANE_TIMEOUT (seconds to wait for readiness, default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/control-plane.sh"
TIMEOUT="${RELAY_CONTROL_PLANE_TIMEOUT:-60}"
# The controllers that work without nodes or a cloud. namespace + garbagecollector make
# namespace deletion and ownerReference cascades work; serviceaccount creates `default` in every
# namespace (the ServiceAccount admission plugin rejects pods without it);
# serviceaccount-token fills legacy token Secrets; root-ca-cert-publisher writes kube-root-ca.crt
# (projected SA volumes reference it); clusterrole-aggregation fills admin/edit/view, which
# RoleBindings in tests may reference.
CONTROLLERS="garbagecollector,namespace,serviceaccount,serviceaccount-token,root-ca-cert-publisher,clusterrole-aggregation"
# A /16: the scale harness (tests/e2e/scale.rs) creates a ClusterIP Service per RelayService,
# 10,000 at its largest; a /24 holds 254.
SERVICE_CIDR="10.96.0.0/16"
MARKER=".relay-control-plane"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

find_bin() {
  local dir="${RELAY_CONTROL_PLANE_BIN:-}"
  if [[ -z "$dir" ]]; then
    # Ask install-tools.sh so the cache path and version live in one place.
    dir="$("$ROOT/scripts/install-tools.sh" --print-env | sed -n 's/^export RELAY_CONTROL_PLANE_BIN="\(.*\)"$/\1/p')"
  fi
  local b
  for b in etcd kube-apiserver kube-controller-manager; do
    [[ -x "$dir/$b" ]] || die "missing $dir/$b: run scripts/install-tools.sh (builds the control plane with go)"
  done
  BIN_DIR="$dir"
}

# Free loopback ports, all bound at once so they are distinct. Another process could grab
# one before our server binds it; unlikely on loopback and it shows up as a failed start.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Fields of /proc/PID/stat after "(comm)": state is the 1st, ppid the 2nd. Fails if gone.
proc_stat() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  printf '%s\n' "${stat##*) }"
}

# Running (not a zombie waiting to be reaped, which `kill -0` still reports as alive)?
pid_alive() {
  local stat
  stat="$(proc_stat "$1")" || return 1
  [[ "${stat%% *}" != Z ]]
}

# Is PID alive and one of our processes named NAME? Guards against killing a recycled pid.
# A child of this very shell is ours whatever its cmdline: right after `launch` forks it may not
# have exec'd the binary yet (still "bash control-plane.sh"), e.g. with a cold page cache.
is_ours() {
  local pid="$1" name="$2" stat ppid
  stat="$(proc_stat "$pid")" || return 1
  [[ "${stat%% *}" != Z ]] || return 1
  ppid="${stat#* }"; ppid="${ppid%% *}"
  [[ "$ppid" == "$$" ]] && return 0
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | head -1 | grep -q -- "/$name\$"
}

stop_cmd() {
  local dir="$1" keep_watchdog="${2:-}"
  [[ -d "$dir" ]] || return 0
  if [[ -z "$keep_watchdog" && -f "$dir/watchdog.pid" ]]; then
    local wpid
    wpid="$(cat "$dir/watchdog.pid")"
    # The watchdog is this script (bash) re-executed with `_watch` (or, right after `start`
    # forked it, still a child of this shell).
    if is_ours "$wpid" control-plane.sh \
      || { pid_alive "$wpid" && tr '\0' ' ' < "/proc/$wpid/cmdline" | grep -q "control-plane.sh _watch "; }; then
      kill "$wpid" 2>/dev/null || true
    fi
    rm -f "$dir/watchdog.pid"
  fi
  [[ -f "$dir/pids" ]] || return 0
  local name pid alive=()
  # Reverse start order: controller manager, apiserver, then etcd under them.
  while read -r name pid; do
    if is_ours "$pid" "$name"; then
      kill -TERM "$pid" 2>/dev/null || true
      alive+=("$name:$pid")
    fi
  done < <(tac "$dir/pids")
  local deadline=$((SECONDS + 5)) entry left
  while ((${#alive[@]} > 0)); do
    left=()
    for entry in "${alive[@]}"; do
      is_ours "${entry#*:}" "${entry%%:*}" && left+=("$entry")
    done
    alive=("${left[@]+"${left[@]}"}")
    ((${#alive[@]} > 0)) || break
    if ((SECONDS >= deadline)); then
      for entry in "${alive[@]}"; do
        log "killing ${entry%%:*} (pid ${entry#*:}) after 5 s"
        kill -KILL "${entry#*:}" 2>/dev/null || true
      done
      break
    fi
    sleep 0.1
  done
  rm -f "$dir/pids"
}

# Background watchdog: wait for PID to exit, then stop the control plane.
watch_cmd() {
  local dir="$1" pid="$2"
  while pid_alive "$pid"; do sleep 0.5; done
  log "watched pid $pid exited; stopping the control plane in $dir"
  stop_cmd "$dir" keep-watchdog
  rm -f "$dir/watchdog.pid"
}

gen_certs() {
  local dir="$1"
  # EC P-256 everywhere: key generation is instant (RSA costs ~100 ms a key), and the
  # apiserver accepts ECDSA for serving and for signing service-account tokens (ES256).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=relay-e2e-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=kube-apiserver" -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null
  # rustls/webpki (the Rust client) insists on a SAN and on an end-entity (CA:FALSE) cert.
  cat > "$dir/apiserver.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1
EOF
  openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 30 -extfile "$dir/apiserver.ext" \
    -out "$dir/apiserver.crt" 2>/dev/null
  rm -f "$dir/apiserver.csr" "$dir/apiserver.ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/sa.key" 2>/dev/null
  openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  chmod 600 "$dir"/*.key
}

# kubeconfig FILE PORT TOKEN USER: a kubeconfig for https://127.0.0.1:PORT trusting our CA.
write_kubeconfig() {
  local dir="$1" file="$2" port="$3" token="$4" user="$5" ca_data
  ca_data="$(base64 -w0 < "$dir/ca.crt")"
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: relay-e2e
    cluster:
      server: https://127.0.0.1:$port
      certificate-authority-data: $ca_data
users:
  - name: $user
    user:
      token: $token
contexts:
  - name: relay-e2e
    context:
      cluster: relay-e2e
      user: $user
      namespace: default
current-context: relay-e2e
EOF
  chmod 600 "$file"
}

write_config() {
  local dir="$1" api_port="$2" admin_token kcm_token
  admin_token="$(openssl rand -hex 32)"
  kcm_token="$(openssl rand -hex 32)"
  # token,user,uid,"groups". admin is in system:masters, which bypasses RBAC (cluster-admin).
  # The controller manager gets its own user, the one the bootstrap RBAC policy binds to
  # system:kube-controller-manager; with --use-service-account-credentials each controller then
  # acts as its own ServiceAccount (e.g. system:serviceaccount:kube-system:generic-garbage-collector),
  # so the audit log tells the tests' and the controllers' requests apart, as in a real cluster.
  {
    printf '%s,admin,admin,"system:masters"\n' "$admin_token"
    printf '%s,system:kube-controller-manager,system:kube-controller-manager\n' "$kcm_token"
  } > "$dir/tokens.csv"
  # For curl -H @file: keeps the token out of `ps` output.
  printf 'Authorization: Bearer %s\n' "$admin_token" > "$dir/auth-header"
  chmod 600 "$dir/tokens.csv" "$dir/auth-header"

  cat > "$dir/audit-policy.yaml" <<'EOF'
# Every request, metadata only (user, verb, objectRef, response code), once per request.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
EOF

  write_kubeconfig "$dir" "$dir/kubeconfig" "$api_port" "$admin_token" admin
  write_kubeconfig "$dir" "$dir/kube-controller-manager.kubeconfig" "$api_port" "$kcm_token" kube-controller-manager
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig" > "$dir/env"
}

# Start NAME in the background: stdin from /dev/null and all output to DIR/NAME.log, so a
# caller reading our stdout through a pipe gets EOF when this script exits.
launch() {
  local dir="$1" name="$2"
  shift 2
  "$BIN_DIR/$name" "$@" </dev/null >"$dir/$name.log" 2>&1 &
  printf '%s %s\n' "$name" "$!" >> "$dir/pids"
  # Not our job to report on: no "Killed" notices from bash when `stop` has to SIGKILL it.
  disown "$!"
}

print_logs() {
  local dir="$1" f
  for f in etcd kube-apiserver kube-controller-manager; do
    [[ -f "$dir/$f.log" ]] || continue
    log "---- last lines of $dir/$f.log ----"
    tail -n 25 "$dir/$f.log" >&2 || true
  done
}

api_get() {
  local dir="$1" port="$2" path="$3"
  curl -fsS --max-time 2 --cacert "$dir/ca.crt" -H "@$dir/auth-header" "https://127.0.0.1:$port$path" 2>/dev/null
}

start_cmd() {
  local dir="" watch_pid=""
  while (($#)); do
    case "$1" in
      --watch-pid) watch_pid="${2:?--watch-pid needs a pid}"; shift 2 ;;
      -*) usage ;;
      *) [[ -z "$dir" ]] || usage; dir="$1"; shift ;;
    esac
  done
  [[ -n "$dir" ]] || usage
  if [[ -n "$watch_pid" ]]; then
    pid_alive "$watch_pid" || die "--watch-pid $watch_pid: no such process"
  fi
  find_bin

  local t0=$EPOCHREALTIME
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/$MARKER" ]]; then
    if [[ -f "$dir/pids" ]]; then
      local name pid
      while read -r name pid; do
        ! is_ours "$pid" "$name" || die "a control plane is already running in $dir (scripts/control-plane.sh stop $dir)"
      done < "$dir/pids"
    fi
    # Left over from an earlier run: start from a fresh etcd, but only delete what we made.
    rm -rf "$dir/etcd" "$dir/kcm" "$dir/pids" "$dir/watchdog.pid" "$dir"/*.log "$dir"/*kubeconfig "$dir/env"
  elif [[ -n "$(ls -A "$dir")" ]]; then
    die "$dir is not empty and was not created by this script; refusing to use it"
  fi
  touch "$dir/$MARKER"

  local etcd_port peer_port api_port kcm_port
  read -r etcd_port peer_port api_port kcm_port < <(free_ports 4)
  [[ -n "$kcm_port" ]] || die "could not pick free loopback ports (python3 missing?)"
  gen_certs "$dir"
  write_config "$dir" "$api_port"

  # From here on, any failure (timeout, error, signal) must not leave processes behind.
  # (Globals: the EXIT trap runs after this function's locals are gone.)
  CP_DIR="$dir" CP_READY=""
  trap 'if [[ -z "$CP_READY" ]]; then stop_cmd "$CP_DIR"; fi' EXIT
  trap 'exit 130' INT TERM

  # --unsafe-no-fsync: the data is thrown away anyway; fsync dominates etcd latency on CI disks.
  launch "$dir" etcd \
    --name=relay-e2e --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="relay-e2e=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level=warn

  # --allow-privileged: otherwise the apiserver's own validation rejects privileged pods before
  #   Pod Security admission sees them, and tests could not tell the two apart.
  # --audit-log-mode=blocking: each event is written before the response goes out, so a test
  #   can read audit.log right after its request. (--audit-log-format=json is the default.)
  # --endpoint-reconciler-type=none: the `kubernetes` Service would otherwise get the endpoint
  #   127.0.0.1, which nothing in this cluster can use.
  launch "$dir" kube-apiserver \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" \
    --client-ca-file="$dir/ca.crt" \
    --token-auth-file="$dir/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log" \
    --audit-log-format=json --audit-log-mode=blocking \
    --profiling=false

  # The controller manager needs the apiserver; it retries until it answers, so start it now.
  # Without --authentication/authorization-kubeconfig its own /healthz is served unauthenticated
  # (enough; nothing else is needed from that port). --cert-dir keeps its self-signed serving
  # cert in DIR instead of /var/run/kubernetes.
  launch "$dir" kube-controller-manager \
    --kubeconfig="$dir/kube-controller-manager.kubeconfig" --use-service-account-credentials=true \
    --controllers="$CONTROLLERS" \
    --service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/ca.crt" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$kcm_port" --cert-dir="$dir/kcm" \
    --profiling=false

  if [[ -n "$watch_pid" ]]; then
    "$SELF" _watch "$dir" "$watch_pid" </dev/null >>"$dir/watchdog.log" 2>&1 &
    echo "$!" > "$dir/watchdog.pid"
  fi

  local deadline=$((SECONDS + TIMEOUT)) phase="apiserver /readyz" name pid
  while :; do
    while read -r name pid; do
      is_ours "$pid" "$name" || { print_logs "$dir"; die "$name exited during startup"; }
    done < "$dir/pids"
    if [[ "$phase" == "apiserver /readyz" ]]; then
      [[ "$(api_get "$dir" "$api_port" /readyz || true)" == ok ]] && phase="ServiceAccount default/default"
    fi
    # Created by the controller manager's serviceaccount controller: proves it is running.
    if [[ "$phase" != "apiserver /readyz" ]] \
      && api_get "$dir" "$api_port" /api/v1/namespaces/default/serviceaccounts/default >/dev/null; then
      break
    fi
    if ((SECONDS >= deadline)); then
      print_logs "$dir"
      die "timed out after ${TIMEOUT} s waiting for $phase"
    fi
    sleep 0.1
  done
  CP_READY=1

  local elapsed
  elapsed="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
  echo "control plane ready in $elapsed s: KUBECONFIG=$dir/kubeconfig"
}

case "${1:-}" in
  start) shift; start_cmd "$@" ;;
  stop) [[ $# -eq 2 ]] || usage; stop_cmd "$2" ;;
  _watch) [[ $# -eq 3 ]] || usage; watch_cmd "$2" "$3" ;;
  *) usage ;;
esac
