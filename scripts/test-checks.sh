#!/usr/bin/env bash
# Negative tests of the checks: each check must FAIL on a broken input from
# tests/fixtures/chart/ (and, as a control, pass on the matching good input).
# Exits non-zero if any check unexpectedly passes (or a control fails).
#
#   scripts/test-checks.sh
set -uo pipefail

# shellcheck source=lib/tools-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tools-env.sh"
FIX="$ROOT/tests/fixtures/chart"

passed=0
failed=0
# expect_fail NAME PATTERN CMD...: CMD must exit non-zero and print PATTERN
# (an extended regex; proves it failed for the intended reason).
expect_fail() {
  local name="$1" pattern="$2"; shift 2
  if "$@" > "$WORK/out" 2>&1; then
    echo "FAIL  $name: the check unexpectedly PASSED"; sed 's/^/      | /' "$WORK/out" | tail -n 5
    failed=$((failed + 1))
  elif ! grep -Eq -- "$pattern" "$WORK/out"; then
    echo "FAIL  $name: failed, but without /$pattern/:"; sed 's/^/      | /' "$WORK/out" | tail -n 8
    failed=$((failed + 1))
  else
    echo "ok    $name: rejected ($(grep -Em1 -- "$pattern" "$WORK/out" | sed 's/^ *//' | cut -c1-110))"
    passed=$((passed + 1))
  fi
}
# expect_pass NAME CMD...: control case.
expect_pass() {
  local name="$1"; shift
  if "$@" > "$WORK/out" 2>&1; then
    echo "ok    $name: accepted (control)"; passed=$((passed + 1))
  else
    echo "FAIL  $name: control case failed:"; sed 's/^/      | /' "$WORK/out" | tail -n 8
    failed=$((failed + 1))
  fi
}

echo "--- values.schema.json: helm lint --strict and helm template must refuse bad values"
expect_pass "defaults: helm lint --strict" helm lint --strict "$CHART"
for bad in values-unknown-key:"additional properties 'replicas'" \
           values-replicas-zero:"/replicaCount.*minimum" \
           values-bad-scope:"/rbac/scope.*must be one of" \
           values-namespaced-no-namespaces:"/watchNamespaces.*minItems" \
           values-wrong-type:"/requirePinnedImages.*want boolean"; do
  f="${bad%%:*}"; pattern="${bad#*:}"
  expect_fail "$f: helm lint --strict" "$pattern" helm lint --strict "$CHART" -f "$FIX/$f.yaml"
  expect_fail "$f: helm template" "$pattern" helm template relay-operator "$CHART" -f "$FIX/$f.yaml"
done

expect_fail "values-secret-namespace-not-watched: helm template" '"team-b" is not in watchNamespaces' \
  helm template relay-operator "$CHART" -f "$FIX/values-secret-namespace-not-watched.yaml"

echo "--- manifest validation (kubernetes-validate --strict via scripts/validate-manifests.py)"
expect_pass "deploy/install.yaml" "$PY" scripts/validate-manifests.py -k 1.34 deploy/install.yaml
expect_fail "manifest-invalid-field: unknown field" "'replica' was unexpected" \
  "$PY" scripts/validate-manifests.py -k 1.34 "$FIX/manifest-invalid-field.yaml"
expect_fail "manifest-invalid-field: wrong type" "containerPort.*'eighty'" \
  "$PY" scripts/validate-manifests.py -k 1.34 "$FIX/manifest-invalid-field.yaml"
expect_fail "manifest-invalid-field: kubernetes-validate CLI" "did not validate for resource deployment/broken" \
  kubernetes-validate --strict -k 1.34 "$FIX/manifest-invalid-field.yaml"
expect_fail "manifest-unknown-kind" "Couldn't find schema for kind Deployment with api version app/v1" \
  "$PY" scripts/validate-manifests.py -k 1.34 "$FIX/manifest-unknown-kind.yaml"
expect_pass "relayservice-valid (CRD schema)" \
  "$PY" scripts/validate-manifests.py --crd crds/relayservices.relayops.io.yaml "$FIX/relayservice-valid.yaml"
expect_fail "relayservice-invalid (CRD schema)" "spec.replicas: 'three' is not of type 'integer'" \
  "$PY" scripts/validate-manifests.py --crd crds/relayservices.relayops.io.yaml "$FIX/relayservice-invalid.yaml"
expect_fail "relayservice-invalid: unknown field (CRD schema)" "'imageTag' was unexpected" \
  "$PY" scripts/validate-manifests.py --crd crds/relayservices.relayops.io.yaml "$FIX/relayservice-invalid.yaml"

echo "--- rendered-chart policy (scripts/check-rendered-policy.py)"
expect_fail "rbac-wildcard" "wildcard in verbs" "$PY" scripts/check-rendered-policy.py deploy/install.yaml "$FIX/rbac-wildcard.yaml"
expect_fail "rbac-wildcard: lease outside leader-election Role" "leases granted outside" \
  "$PY" scripts/check-rendered-policy.py deploy/install.yaml "$FIX/rbac-wildcard.yaml"
expect_fail "rbac-secrets-cluster-wide: controller ClusterRole" "reads-every-secret: secrets granted outside" \
  "$PY" scripts/check-rendered-policy.py deploy/install.yaml "$FIX/rbac-secrets-cluster-wide.yaml"
expect_fail "rbac-secrets-cluster-wide: secrets ClusterRole" "secrets-everywhere: secrets rules must be a namespaced Role" \
  "$PY" scripts/check-rendered-policy.py deploy/install.yaml "$FIX/rbac-secrets-cluster-wide.yaml"

echo "--- deploy/install.yaml drift (scripts/gen-install.sh --check)"
expect_pass "committed install.yaml" scripts/gen-install.sh --check
sed -f "$FIX/install-drift.sed" deploy/install.yaml > "$WORK/install-drifted.yaml"
if cmp -s deploy/install.yaml "$WORK/install-drifted.yaml"; then
  echo "FAIL  install-drift.sed changed nothing (fixture stale?)"; failed=$((failed + 1))
else
  expect_fail "drifted install.yaml" "out of date" env OUT="$WORK/install-drifted.yaml" scripts/gen-install.sh --check
fi

echo "--- metrics lint (scripts/check-metrics.sh with a fake operator)"
expect_pass "fake operator, good exposition" env FAKE_METRICS=good scripts/check-metrics.sh "$FIX/fake-operator.py"
expect_fail "fake operator, counter without _total" 'should have "_total" suffix' \
  env FAKE_METRICS=bad scripts/check-metrics.sh "$FIX/fake-operator.py"
expect_fail "fake operator, no /metrics served" "exited before serving /metrics" \
  env FAKE_METRICS=none scripts/check-metrics.sh "$FIX/fake-operator.py"

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
