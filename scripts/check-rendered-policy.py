#!/usr/bin/env python3
"""Policy checks on `helm template` output (read from the files given, or stdin).

- RBAC: no "*" anywhere in rules; every controller Role/ClusterRole carries the
  same rules; the Lease rule only in the release-namespace leader-election Role;
  Secrets only in per-namespace `secrets` Roles (never in a ClusterRole), which
  grant nothing else.
- Deployment: restricted Pod Security Standard fields + readOnlyRootFilesystem,
  probes on the `metrics` port, POD_NAMESPACE/POD_NAME from the downward API.
- Grafana dashboard ConfigMap (if rendered): valid JSON, every query uses only
  the operator's metric names, every metric is shown, every selector filters by the
  $job variable (per-object series also by $namespace); the queries are written
  to --promql-rules FILE as recording rules so `promtool check rules` parses them.
"""
import argparse
import json
import re
import sys

import yaml

METRICS = {
    "relay_operator_reconciliations_total", "relay_operator_reconcile_errors_total",
    "relay_operator_reconcile_duration_seconds", "relay_operator_managed_pods",
    "relay_operator_reload_hook_calls_total", "relay_operator_reload_propagation_seconds",
    "relay_operator_reload_restarts_total", "relay_operator_config_rollbacks_total",
    "relay_operator_pod_restarts",
    "relay_operator_test_deployments",
    "relay_operator_test_deployment_expirations_total",
    "relay_operator_test_deployment_time_to_running_seconds",
    "relay_operator_reconcile_retries_total", "relay_operator_reconcile_queue_depth",
    "relay_operator_leader",
    "relay_operator_service_ready_replicas", "relay_operator_service_desired_replicas",
    "relay_operator_service_condition", "relay_operator_test_deployment_phase",
    "relay_operator_test_deployment_expiry_timestamp_seconds",
}
# Series per RelayService / TestDeployment: their `namespace` label is the object's.
PER_OBJECT = {
    "relay_operator_service_ready_replicas", "relay_operator_service_desired_replicas",
    "relay_operator_service_condition", "relay_operator_test_deployment_phase",
    "relay_operator_test_deployment_expiry_timestamp_seconds",
}
HISTOGRAMS = {m for m in METRICS if m.endswith("_seconds") and m not in PER_OBJECT}

SECRET_RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]

errors = []


def err(msg):
    errors.append(msg)


def check_rbac(docs):
    controller = []
    for d in docs:
        if d["kind"] not in ("Role", "ClusterRole"):
            continue
        name = f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"
        for r in d.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in r.get(field, []):
                    err(f"{name}: wildcard in {field}: {r}")
            if "leases" in r.get("resources", []) and d["metadata"]["labels"].get("relayops.io/rbac") != "leader-election":
                err(f"{name}: leases granted outside the leader-election Role")
            if "secrets" in r.get("resources", []) and d["metadata"]["labels"].get("relayops.io/rbac") != "secrets":
                err(f"{name}: secrets granted outside a per-namespace secrets Role")
        role = d["metadata"]["labels"].get("relayops.io/rbac")
        if role == "controller":
            controller.append((name, d["rules"]))
        elif role == "leader-election":
            if d["kind"] != "Role":
                err(f"{name}: leader-election rules must be a namespaced Role")
        elif role == "secrets":
            if d["kind"] != "Role":
                err(f"{name}: secrets rules must be a namespaced Role")
            if d.get("rules") != SECRET_RULES:
                err(f"{name}: a secrets Role grants exactly {SECRET_RULES}, not {d.get('rules')}")
        else:
            err(f"{name}: missing label relayops.io/rbac (controller|secrets|leader-election)")
    if not controller:
        err("no controller Role/ClusterRole rendered")
    for name, rules in controller[1:]:
        if rules != controller[0][1]:
            err(f"{name}: rules differ from {controller[0][0]}")


def check_deployment(d):
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        err("pod securityContext.runAsNonRoot must be true")
    if psc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        err("pod seccompProfile must be RuntimeDefault")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        want = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                "runAsUser": 65532}
        for k, v in want.items():
            if sc.get(k, psc.get(k)) != v:
                err(f"container {c['name']}: securityContext.{k} must be {v}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            err(f"container {c['name']}: capabilities must drop ALL and add nothing")
        if sc.get("privileged"):
            err(f"container {c['name']}: privileged")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("metrics") != 8080:
            err(f"container {c['name']}: port 8080 named metrics missing")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            hg = c.get(probe, {}).get("httpGet", {})
            if hg.get("path") != path or hg.get("port") != "metrics":
                err(f"container {c['name']}: {probe} must be httpGet {path} on port metrics")
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env", [])}
        if env.get("POD_NAMESPACE") != "metadata.namespace" or env.get("POD_NAME") != "metadata.name":
            err(f"container {c['name']}: POD_NAMESPACE/POD_NAME must come from the downward API")
        args = c.get("args", [])
        if args[:1] != ["run"] or "--metrics-addr" not in args:
            err(f"container {c['name']}: args must start with `run --metrics-addr ...`: {args}")


def check_dashboard(d, rules_out):
    raw = next(iter(d.get("data", {}).values()))
    dash = json.loads(raw)
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    used = set()
    for e in exprs:
        for name in re.findall(r"\brelay_operator_[a-z_]+", e):
            base = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in HISTOGRAMS else name
            if base not in METRICS:
                err(f"dashboard: unknown metric {name} in {e}")
            used.add(base)
    # Every selector uses the dashboard's variables: $job always, $namespace for per-object series.
    for e in exprs:
        for name, matchers in re.findall(r"\b((?:relay_operator|process)_[a-z_]+)(\{[^}]*\})?", e):
            if 'job=~"$job"' not in matchers:
                err(f"dashboard: {name} without job=~\"$job\" in {e}")
            if name in PER_OBJECT and 'namespace=~"$namespace"' not in matchers:
                err(f"dashboard: {name} without namespace=~\"$namespace\" in {e}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    for v in ("datasource", "job", "namespace"):
        if v not in variables:
            err(f"dashboard: no template variable {v}")
    for m in sorted(METRICS - used):
        err(f"dashboard: metric {m} not shown")
    if rules_out:
        rules = [{"record": f"dashboard:query_{i}",
                  "expr": e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$namespace", ".*")}
                 for i, e in enumerate(exprs)]
        with open(rules_out, "w") as f:
            yaml.safe_dump({"groups": [{"name": "relay-operator-dashboard", "rules": rules}]}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--promql-rules", help="write the dashboard queries here as a Prometheus rules file")
    ap.add_argument("files", nargs="*", default=["-"])
    a = ap.parse_args()
    docs = []
    for f in a.files:
        docs += [d for d in yaml.safe_load_all(sys.stdin if f == "-" else open(f)) if d]
    check_rbac(docs)
    deps = [d for d in docs if d["kind"] == "Deployment"]
    if len(deps) != 1:
        err(f"expected exactly one Deployment, got {len(deps)}")
    for d in deps:
        check_deployment(d)
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    for d in dashboards:
        check_dashboard(d, a.promql_rules)
    for e in errors:
        print(f"POLICY ERROR {e}")
    print(f"check-rendered-policy: {len(docs)} documents, {len(errors)} policy errors"
          + (f", dashboard with {len(dashboards)} ConfigMap(s)" if dashboards else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
