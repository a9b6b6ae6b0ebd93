#!/usr/bin/env python3
"""Generate charts/relay-operator/dashboards/relay-operator.json (Grafana dashboard).

Run: python3 scripts/gen-dashboard.py            # write the file
     python3 scripts/gen-dashboard.py --check    # fail if the committed file differs
The metric names are the operator's fixed metric names (see the chart README).
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "charts/relay-operator/dashboards/relay-operator.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

_next_id = 0


def panel(title, targets, x, y, w=12, h=8, unit="short", kind="timeseries", description=""):
    global _next_id
    _next_id += 1
    return {
        "id": _next_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}}
        if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def quantiles(metric, by, selector):
    grp = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (f"histogram_quantile(0.5, sum by ({grp}) (rate({metric}_bucket{{{selector}}}[{RI}])))", "p50" + suffix),
        (f"histogram_quantile(0.99, sum by ({grp}) (rate({metric}_bucket{{{selector}}}[{RI}])))", "p99" + suffix),
    ]


def row(title, y):
    global _next_id
    _next_id += 1
    return {"id": _next_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


# Every query selects the scrape job ($job); the per-object series also the namespace of
# the objects ($namespace). scripts/check-rendered-policy.py enforces both.
JOB = 'job=~"$job"'
OBJ = 'job=~"$job", namespace=~"$namespace"'

panels = [
    row("Reconciliation", 0),
    panel("Reconcile rate by kind",
          [(f"sum by (kind) (rate(relay_operator_reconciliations_total{{{JOB}}}[{RI}]))", "{{kind}}")],
          0, 1, unit="ops"),
    panel("Reconcile errors by kind and error",
          [(f"sum by (kind, error) (rate(relay_operator_reconcile_errors_total{{{JOB}}}[{RI}]))", "{{kind}}: {{error}}")],
          12, 1, unit="ops"),
    panel("Reconcile duration (p50 / p99) by kind",
          quantiles("relay_operator_reconcile_duration_seconds", "kind", JOB), 0, 9, unit="s"),
    panel("Reconcile queue depth and retries by kind",
          [(f"sum by (kind) (relay_operator_reconcile_queue_depth{{{JOB}}})", "waiting {{kind}}"),
           (f"sum by (kind) (rate(relay_operator_reconcile_retries_total{{{JOB}}}[{RI}])) * 60", "retries/min {{kind}}")],
          12, 9, unit="short",
          description="Waiting: objects whose reconcile is scheduled (a retry after an error, or held until the caches synced) but not started. Retries: reconciles scheduled again after an error."),
    row("RelayServices ($namespace)", 17),
    panel("RelayServices not Ready",
          [(f'count(relay_operator_service_condition{{{OBJ}, type="Ready", status="True"}} == 0) or vector(0)', "not Ready")],
          0, 18, w=6, unit="short", kind="stat"),
    panel("Ready / desired replicas by service",
          [(f"sum by (namespace, name) (relay_operator_service_ready_replicas{{{OBJ}}})", "{{namespace}}/{{name}} ready"),
           (f"sum by (namespace, name) (relay_operator_service_desired_replicas{{{OBJ}}})", "{{namespace}}/{{name}} desired")],
          6, 18, w=18, unit="short"),
    panel("Services with a condition True, by type",
          [(f'sum by (type) (relay_operator_service_condition{{{OBJ}, status="True"}})', "{{type}}")],
          0, 26, w=24, unit="short",
          description="Ready, Progressing, ConfigInSync, DependenciesReady, Degraded, ImagePinned: how many services have each condition True."),
    row("Hot config reload", 34),
    panel("Reload propagation latency (p50 / p99)",
          quantiles("relay_operator_reload_propagation_seconds", "", JOB), 0, 35, unit="s"),
    panel("Reload hook calls by result, and restarts",
          [(f"sum by (result) (rate(relay_operator_reload_hook_calls_total{{{JOB}}}[{RI}]))", "hook {{result}}"),
           (f"sum(rate(relay_operator_reload_restarts_total{{{JOB}}}[{RI}]))", "restarts (reload fell back to restart)")],
          12, 35, unit="ops",
          description="Hook failures are the series whose result is not a success; restarts count reloads that had to restart the pod."),
    panel("Canary reverts by reason",
          [(f"sum by (reason) (increase(relay_operator_config_rollbacks_total{{{JOB}}}[{RI}]))", "{{reason}}")],
          0, 43, unit="short",
          description="Configurations reverted to the last good one because a canary's hook failed, it turned unready or its health endpoint answered unhealthy during the hold."),
    panel("Pod restarts under --max-concurrent-restarts",
          [(f"sum by (state) (relay_operator_pod_restarts{{{JOB}}})", "{{state}}")],
          12, 43, unit="short",
          description="in_flight: pods deleted for a restart whose replacement is not Ready yet; queued: restarts waiting for a slot."),
    row("Managed workloads", 51),
    panel("Managed pods by state",
          [(f"sum by (state) (relay_operator_managed_pods{{{JOB}}})", "{{state}}")], 0, 52, unit="short"),
    panel("Test deployments by phase",
          [(f"sum by (phase) (relay_operator_test_deployments{{{JOB}}})", "{{phase}}")], 12, 52, unit="short"),
    panel("Test deployment time to Running (p50 / p99)",
          quantiles("relay_operator_test_deployment_time_to_running_seconds", "", JOB), 0, 60, unit="s"),
    panel("Test deployment expirations",
          [(f"sum(increase(relay_operator_test_deployment_expirations_total{{{JOB}}}[{RI}]))", "expired")],
          12, 60, unit="short"),
    panel("Test deployments in $namespace: time left before expiry",
          [(f'(relay_operator_test_deployment_expiry_timestamp_seconds{{{OBJ}}} - time()) > 0', "{{namespace}}/{{name}}")],
          0, 68, unit="s"),
    panel("Failed test deployments in $namespace",
          [(f'relay_operator_test_deployment_phase{{{OBJ}, phase="Failed"}} == 1', "{{namespace}}/{{name}}")],
          12, 68, unit="short"),
    row("Operator process", 76),
    panel("Leader by instance",
          [(f"max by (instance) (relay_operator_leader{{{JOB}}})", "{{instance}}")], 0, 77, w=8, unit="short",
          description="1 for the replica that reconciles: the lease holder, or the only replica without leader election."),
    panel("CPU",
          [(f"sum by (instance) (rate(process_cpu_seconds_total{{{JOB}}}[{RI}]))", "{{instance}}")],
          8, 77, w=8, unit="percentunit"),
    panel("Resident memory and open file descriptors",
          [(f"sum by (instance) (process_resident_memory_bytes{{{JOB}}})", "{{instance}} RSS"),
           (f"sum by (instance) (process_open_fds{{{JOB}}})", "{{instance}} open fds")],
          16, 77, w=8, unit="short"),
]

dashboard = {
    "uid": "relay-operator",
    "title": "relay-operator",
    "description": "Reconciliation, RelayServices, hot reload, test deployments and the process of relay-operator.",
    "tags": ["relay-operator", "kubernetes", "operator"],
    "editable": True,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "timezone": "browser",
    "graphTooltip": 1,
    "annotations": {"list": []},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": []},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS,
         "query": {"query": "label_values(relay_operator_build_info, job)", "refId": "job"},
         "definition": "label_values(relay_operator_build_info, job)",
         "current": {}, "hide": 0, "refresh": 2, "options": [], "sort": 1,
         "multi": True, "includeAll": True, "allValue": ".*"},
        {"name": "namespace", "label": "Namespace (of the RelayServices and TestDeployments)", "type": "query",
         "datasource": DS,
         "query": {"query": 'label_values(relay_operator_service_desired_replicas{job=~"$job"}, namespace)',
                   "refId": "namespace"},
         "definition": 'label_values(relay_operator_service_desired_replicas{job=~"$job"}, namespace)',
         "current": {}, "hide": 0, "refresh": 2, "options": [], "sort": 1,
         "multi": True, "includeAll": True, "allValue": ".*"},
    ]},
    "panels": panels,
}

text = json.dumps(dashboard, indent=2) + "\n"
if "--check" in sys.argv[1:]:
    if not OUT.exists() or OUT.read_text() != text:
        sys.exit(f"{OUT} is out of date: run python3 scripts/gen-dashboard.py")
    print(f"{OUT.name} is up to date")
else:
    OUT.write_text(text)
    print(f"wrote {OUT}")
