#!/usr/bin/env python3
"""Validate Kubernetes manifests offline, failing on anything it cannot check.

Built-in kinds: kubernetes-validate's schemas, strict mode (unknown fields are
errors), pinned Kubernetes version. Unlike the `kubernetes-validate` CLI, a kind
without a schema is an ERROR, not a warning, so a typo in apiVersion/kind can't
slip through.
Custom resources: validated with jsonschema against the openAPIV3Schema of a
CRD passed with --crd (or found in the input), strictly (unknown fields are
errors unless the schema says x-kubernetes-preserve-unknown-fields). CEL rules
(x-kubernetes-validations) are NOT evaluated here.
ServiceMonitor: validated against scripts/schemas/servicemonitor-subset.schema.json,
a hand-written subset (the upstream CRD is not vendored); reported as such.

Usage: .tools/venv/bin/python scripts/validate-manifests.py [-k 1.34] [--crd FILE]... FILE|-...
"""
import argparse
import copy
import json
import pathlib
import sys

import re

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent
SUBSET_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): HERE / "schemas/servicemonitor-subset.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): HERE / "schemas/prometheusrule-subset.schema.json",
}


def load_docs(path):
    text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def strictify(schema):
    """Structural schema -> JSON schema that rejects unknown fields (like the API server's strict field validation)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        for key in ("x-kubernetes-validations",):
            node.pop(key, None)
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "nullable" in node:
            if node.pop("nullable") and "type" in node:
                node["type"] = [node["type"], "null"]
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") \
                and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.get("properties", {}).values():
            walk(v)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for v in node.get(key, []):
                walk(v)
    walk(s)
    # apiVersion/kind/metadata are implicit in every CR schema.
    s.setdefault("properties", {})
    s["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                            "metadata": {"type": "object"}})
    return s


def crd_schemas(docs):
    out = {}
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = d["spec"]["group"], d["spec"]["names"]["kind"]
        for v in d["spec"]["versions"]:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                out[(f"{group}/{v['name']}", kind)] = strictify(schema)
    return out


def builtin_errors(d, desired):
    """kubernetes_validate.utils.validate(strict=True), but reporting every error, not only the first.
    Same schema lookup as kubernetes-validate (pinned in scripts/install-tools.sh)."""
    if kv.major_minor(desired) > kv.latest_version():
        raise kv.VersionNotSupportedError(version=kv.major_minor(desired))
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(desired)][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", d["apiVersion"])
    sdir = f"v{version}-local-strict"
    try:
        schema = kv.schema_contents(f"kubernetes-json-schema/{sdir}/{d['kind'].lower()}-{api}.json", desired)
    except FileNotFoundError:
        raise kv.SchemaNotFoundError(version=kv.major_minor(desired), kind=d["kind"], api_version=d["apiVersion"])
    defs = kv.schema_contents(f"kubernetes-json-schema/{sdir}/_definitions.json", desired)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return kv.major_minor(version), sorted(validator.iter_errors(d), key=lambda e: list(map(str, e.absolute_path)))


def report(fname, what, errs):
    for e in errs:
        path = ".".join(str(p) for p in e.absolute_path) or "<root>"
        print(f"ERROR {fname}: {what}: {path}: {e.message}")
    return len(errs)


def name_of(d):
    md = d.get("metadata") or {}
    ns = md.get("namespace")
    return f"{d.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", "--kubernetes-version", default="1.34")
    ap.add_argument("--crd", action="append", default=[], help="CRD file(s) whose schemas validate custom resources")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    inputs = [(f, load_docs(f)) for f in args.files]
    crds = crd_schemas([d for f in args.crd for d in load_docs(f)] + [d for _, ds in inputs for d in ds])
    failures = checked = 0
    for fname, docs in inputs:
        for d in docs:
            checked += 1
            if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
                print(f"ERROR {fname}: document without apiVersion/kind: {str(d)[:80]}")
                failures += 1
                continue
            key = (d["apiVersion"], d["kind"])
            what = name_of(d)
            try:
                if key in crds:
                    how = "custom resource, CRD openAPIV3Schema, strict; CEL rules not evaluated"
                    errs = list(jsonschema.Draft7Validator(crds[key]).iter_errors(d))
                elif key in SUBSET_SCHEMAS:
                    how = (f"NOTE: {d['kind']} is not a Kubernetes built-in; checked against the hand-written "
                           f"subset schema {SUBSET_SCHEMAS[key].relative_to(HERE.parent)}")
                    errs = list(jsonschema.Draft7Validator(json.loads(SUBSET_SCHEMAS[key].read_text())).iter_errors(d))
                else:
                    v, errs = builtin_errors(d, args.kubernetes_version)
                    how = f"kubernetes-validate --strict, Kubernetes {v}"
                if errs:
                    report(fname, what, errs)
                    failures += 1
                else:
                    print(f"OK    {fname}: {what} ({how})")
            except kv.SchemaNotFoundError as e:
                print(f"ERROR {fname}: {what}: {e.message} (no schema: refusing to pass it unchecked)")
                failures += 1
            except kv.VersionNotSupportedError as e:
                print(f"FATAL {e.message}")
                return 2
    print(f"validate-manifests: {checked} documents, {failures} invalid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
