# Sourced by the check scripts: repository paths, the tools of scripts/install-tools.sh on
# PATH (fails when one is missing), and a scratch directory removed on exit.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$ROOT/.tools/bin:$ROOT/.tools/venv/bin:$PATH"
CHART="$ROOT/charts/relay-operator"
PY="$ROOT/.tools/venv/bin/python"
cd "$ROOT"
for tool in helm promtool "$PY"; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-tools.sh" >&2; exit 2; }
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
