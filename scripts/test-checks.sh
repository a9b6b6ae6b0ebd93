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
expect_pass "deploy/crds.yaml + deploy/operator.yaml" \
  "$PY" scripts/validate-manifests.py -k 1.34 deploy/crds.yaml deploy/operator.yaml
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
expect_fail "rbac-wildcard" "wildcard in verbs" "$PY" scripts/check-rendered-policy.py deploy/operator.yaml "$FIX/rbac-wildcard.yaml"
expect_fail "rbac-wildcard: lease outside leader-election Role" "leases granted outside" \
  "$PY" scripts/check-rendered-policy.py deploy/operator.yaml "$FIX/rbac-wildcard.yaml"
expect_fail "rbac-secrets-cluster-wide: controller ClusterRole" "reads-every-secret: secrets granted outside" \
  "$PY" scripts/check-rendered-policy.py deploy/operator.yaml "$FIX/rbac-secrets-cluster-wide.yaml"
expect_fail "rbac-secrets-cluster-wide: secrets ClusterRole" "secrets-everywhere: secrets rules must be a namespaced Role" \
  "$PY" scripts/check-rendered-policy.py deploy/operator.yaml "$FIX/rbac-secrets-cluster-wide.yaml"

echo "--- kubectl install drift (scripts/gen-install.sh --check)"
expect_pass "committed deploy/crds.yaml + deploy/operator.yaml" scripts/gen-install.sh --check
mkdir -p "$WORK/drifted"
cp deploy/crds.yaml "$WORK/drifted/"
sed -f "$FIX/install-drift.sed" deploy/operator.yaml > "$WORK/drifted/operator.yaml"
if cmp -s deploy/operator.yaml "$WORK/drifted/operator.yaml"; then
  echo "FAIL  install-drift.sed changed nothing (fixture stale?)"; failed=$((failed + 1))
else
  expect_fail "drifted operator.yaml" "operator.yaml is out of date" env OUT_DIR="$WORK/drifted" scripts/gen-install.sh --check
fi

echo "--- uninstall keeps data: no CRD in deploy/operator.yaml (scripts/check-install-split.py)"
expect_pass "deploy/crds.yaml + deploy/operator.yaml" "$PY" scripts/check-install-split.py deploy/crds.yaml deploy/operator.yaml
cat deploy/operator.yaml deploy/crds.yaml > "$WORK/operator-with-crds.yaml"
expect_fail "operator file carrying the CRDs" "relayservices.relayops.io: CRDs belong in" \
  "$PY" scripts/check-install-split.py deploy/crds.yaml "$WORK/operator-with-crds.yaml"
expect_fail "CRD file carrying the operator" "Deployment/relay-operator is not a CustomResourceDefinition" \
  "$PY" scripts/check-install-split.py "$WORK/operator-with-crds.yaml" deploy/operator.yaml

echo "--- release files (scripts/release-artifacts.sh, as .github/workflows/release.yml runs it)"
crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
digest="sha256:$(printf '%064d' 7)"
expect_pass "release files for v$crate_version" \
  env OUT_DIR="$WORK/release" scripts/release-artifacts.sh "v$crate_version" Acme "$digest"
expect_pass "release operator.yaml runs the pushed image, by digest" \
  grep -qF "image: \"ghcr.io/acme/relay-operator:$crate_version@$digest\"" "$WORK/release/operator.yaml"
expect_pass "release crds.yaml is deploy/crds.yaml" cmp "$WORK/release/crds.yaml" deploy/crds.yaml
expect_pass "release chart: version, appVersion and image" bash -c \
  "helm show chart '$WORK/release/relay-operator-$crate_version.tgz' | grep -qx 'version: $crate_version' \
   && helm show chart '$WORK/release/relay-operator-$crate_version.tgz' | grep -qx 'appVersion: $crate_version' \
   && helm template r '$WORK/release/relay-operator-$crate_version.tgz' | grep -qF 'image: \"ghcr.io/acme/relay-operator:$crate_version\"'"
expect_fail "release of a tag that is not Cargo.toml's version" "does not match Cargo.toml's version" \
  env OUT_DIR="$WORK/release-bad" scripts/release-artifacts.sh v0.0.0-nope acme
expect_fail "release with a malformed digest" "is not sha256:<64 hex digits>" \
  env OUT_DIR="$WORK/release-bad" scripts/release-artifacts.sh "v$crate_version" acme sha256:xyz

echo "--- GitHub Actions workflows (actionlint)"
if command -v actionlint >/dev/null; then
  expect_pass ".github/workflows/*.yml" actionlint .github/workflows/ci.yml .github/workflows/release.yml
  expect_fail "workflows/broken.yml: output of a job it does not need" 'property "image" is not defined' \
    actionlint "$ROOT/tests/fixtures/workflows/broken.yml"
else
  echo "FAIL  actionlint is missing: run scripts/install-tools.sh"; failed=$((failed + 1))
fi
expect_pass "workflows do their job (scripts/check-workflows.py)" "$PY" scripts/check-workflows.py
mkdir -p "$WORK/workflows"
cp .github/workflows/ci.yml "$WORK/workflows/"
sed 's|linux/amd64,linux/arm64|linux/amd64|' .github/workflows/release.yml > "$WORK/workflows/release.yml"
expect_fail "release.yml without arm64" "the image job lacks 'linux/arm64'" \
  "$PY" scripts/check-workflows.py "$WORK/workflows"

echo "--- alerts (scripts/check-alerts.sh: promtool check rules + promtool test rules)"
helm template relay-operator "$CHART" --namespace relay-operator -f "$CHART/ci/observability-values.yaml" \
  > "$WORK/observability.yaml"
expect_pass "rendered PrometheusRule" scripts/check-alerts.sh "$WORK/observability.yaml"
# A rule that waits longer than its unit test expects must fail the unit test ...
sed 's/^          for: 10m$/          for: 30m/' "$WORK/observability.yaml" > "$WORK/alerts-late.yaml"
expect_fail "alert firing later than tested" "alertname: RelayServiceNotReady, time: 11m" \
  scripts/check-alerts.sh "$WORK/alerts-late.yaml"
# ... and PromQL that does not parse must fail the lint.
sed 's/^          expr: relay_operator_test_deployment_phase{/          expr: relay_operator_test_deployment_phase{{/' \
  "$WORK/observability.yaml" > "$WORK/alerts-unparsable.yaml"
expect_fail "unparsable alert expression" "parse error|unexpected" scripts/check-alerts.sh "$WORK/alerts-unparsable.yaml"

echo "--- metrics lint (scripts/check-metrics.sh with a fake operator)"
expect_pass "fake operator, good exposition" env FAKE_METRICS=good scripts/check-metrics.sh "$FIX/fake-operator.py"
expect_fail "fake operator, a family missing from the first scrape" \
  "missing from the first scrape .*relay_operator_reconcile_errors_total" \
  env FAKE_METRICS=partial scripts/check-metrics.sh "$FIX/fake-operator.py"
expect_fail "fake operator, counter without _total" 'should have "_total" suffix' \
  env FAKE_METRICS=bad scripts/check-metrics.sh "$FIX/fake-operator.py"
expect_fail "fake operator, no /metrics served" "exited before serving /metrics" \
  env FAKE_METRICS=none scripts/check-metrics.sh "$FIX/fake-operator.py"

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
