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


def quantiles(metric, by=""):
    grp = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (f"histogram_quantile(0.5, sum by ({grp}) (rate({metric}_bucket[{RI}])))", "p50" + suffix),
        (f"histogram_quantile(0.99, sum by ({grp}) (rate({metric}_bucket[{RI}])))", "p99" + suffix),
    ]


def row(title, y):
    global _next_id
    _next_id += 1
    return {"id": _next_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


panels = [
    row("Reconciliation", 0),
    panel("Reconcile rate by kind",
          [(f"sum by (kind) (rate(relay_operator_reconciliations_total[{RI}]))", "{{kind}}")],
          0, 1, unit="ops"),
    panel("Reconcile errors by kind and error",
          [(f"sum by (kind, error) (rate(relay_operator_reconcile_errors_total[{RI}]))", "{{kind}}: {{error}}")],
          12, 1, unit="ops"),
    panel("Reconcile duration (p50 / p99) by kind",
          quantiles("relay_operator_reconcile_duration_seconds", "kind"), 0, 9, w=24, unit="s"),
    row("Hot config reload", 17),
    panel("Reload propagation latency (p50 / p99)",
          quantiles("relay_operator_reload_propagation_seconds"), 0, 18, unit="s"),
    panel("Reload hook calls by result, and restarts",
          [(f"sum by (result) (rate(relay_operator_reload_hook_calls_total[{RI}]))", "hook {{result}}"),
           (f"sum(rate(relay_operator_reload_restarts_total[{RI}]))", "restarts (reload fell back to restart)")],
          12, 18, unit="ops",
          description="Hook failures are the series whose result is not a success; restarts count reloads that had to restart the pod."),
    row("Managed workloads", 26),
    panel("Managed pods by state",
          [("sum by (state) (relay_operator_managed_pods)", "{{state}}")], 0, 27, unit="short"),
    panel("Test deployments by phase",
          [("sum by (phase) (relay_operator_test_deployments)", "{{phase}}")], 12, 27, unit="short"),
    panel("Test deployment time to Running (p50 / p99)",
          quantiles("relay_operator_test_deployment_time_to_running_seconds"), 0, 35, unit="s"),
    panel("Test deployment expirations",
          [(f"sum(increase(relay_operator_test_deployment_expirations_total[{RI}]))", "expired")],
          12, 35, unit="short"),
]

dashboard = {
    "uid": "relay-operator",
    "title": "relay-operator",
    "description": "Reconciliation, hot reload and test deployments of relay-operator.",
    "tags": ["relay-operator", "kubernetes", "operator"],
    "editable": True,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "timezone": "browser",
    "graphTooltip": 1,
    "annotations": {"list": []},
    "templating": {"list": [{
        "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "refresh": 1, "options": [],
    }]},
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
