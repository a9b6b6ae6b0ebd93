#!/usr/bin/env bash
# The chart's alerts: render the PrometheusRule (ci/observability-values.yaml, release and
# namespace relay-operator), extract its rule groups, lint them with `promtool check rules`
# and run the unit tests tests/promtool/alerts.test.yaml with `promtool test rules`.
#
#   scripts/check-alerts.sh                  # render the chart
#   scripts/check-alerts.sh RENDERED.yaml    # check an already rendered manifest instead
set -euo pipefail

# shellcheck source=lib/tools-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-env.sh"

if [[ $# -ge 1 ]]; then
  cp "$1" "$WORK/rendered.yaml"
else
  helm template relay-operator "$CHART" --namespace relay-operator \
    -f "$CHART/ci/observability-values.yaml" > "$WORK/rendered.yaml"
fi

"$PY" - "$WORK/rendered.yaml" "$WORK/rules.yaml" <<'PY'
import sys, yaml
rules = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"expected exactly one PrometheusRule in the rendered chart, got {len(rules)}")
with open(sys.argv[2], "w") as f:
    yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, f, sort_keys=False)
print(f"extracted {sum(len(g['rules']) for g in rules[0]['spec']['groups'])} rules")
PY

# rule_files in the test file are relative to it: rules.yaml sits beside the copy.
cp "$ROOT/tests/promtool/alerts.test.yaml" "$WORK/alerts.test.yaml"
promtool check rules "$WORK/rules.yaml"
promtool test rules "$WORK/alerts.test.yaml"
echo "check-alerts: OK"
