#!/usr/bin/env bash
# No Docker engine runs here, so check the next best thing: the builder stage's COPY lines
# bring everything `cargo build --locked` needs. Copies exactly those paths into a scratch
# directory and builds there, reusing this checkout's target directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

# COPY lines of the build stage (not --from copies of later stages).
awk '/^FROM /{stage++} stage==1 && /^COPY / && !/--from/' Dockerfile | while read -r _ args; do
  # shellcheck disable=SC2086
  set -- $args
  dest="${*: -1}"
  for src in "${@:1:$#-1}"; do
    case "$dest" in
      ./|.) cp -r "$src" "$WORK/" ;;
      *) mkdir -p "$WORK/$dest" && cp -r "$src"/. "$WORK/$dest"/ ;;
    esac
  done
done
build=$(awk '/^RUN cargo build/ {sub(/^RUN /, ""); sub(/ *\\$/, ""); print; exit}' Dockerfile)
build=${build/--release/}   # a debug build checks the same inputs, faster
echo "check-docker-context: '$build' on the copied context: $(ls "$WORK" | tr '\n' ' ')"
(cd "$WORK" && CARGO_TARGET_DIR="$ROOT/target" $build)
echo "check-docker-context: OK"
