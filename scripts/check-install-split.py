#!/usr/bin/env python3
"""The kubectl install keeps data on uninstall: CRDS_FILE holds CustomResourceDefinitions
only and OPERATOR_FILE holds none, so `kubectl delete -f OPERATOR_FILE` never deletes a CRD
(and with it every custom resource and, through garbage collection, their pods).

    check-install-split.py deploy/crds.yaml deploy/operator.yaml
"""
import sys

import yaml


def kinds(path):
    with open(path) as f:
        return [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(f) if d]


def main(crds_file, operator_file):
    errors = []
    crds = kinds(crds_file)
    if not crds:
        errors.append(f"{crds_file}: no CustomResourceDefinition")
    errors += [f"{crds_file}: {k}/{n} is not a CustomResourceDefinition"
               for k, n in crds if k != "CustomResourceDefinition"]
    errors += [f"{operator_file}: {k}/{n}: CRDs belong in {crds_file} (deleting this file would delete them)"
               for k, n in kinds(operator_file) if k == "CustomResourceDefinition"]
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{crds_file}: {len(crds)} CRDs only; {operator_file}: no CRD")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
