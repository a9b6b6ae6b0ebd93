#!/usr/bin/env python3
"""What the GitHub workflows must keep doing (actionlint checks they are valid; this checks
they still do the job), from .github/workflows/ or the directory given:

- ci.yml runs `.ci/run` on pushes and pull requests;
- release.yml runs on `v*` tags; its image job sets up QEMU and buildx and pushes
  linux/amd64 + linux/arm64; its publish job runs scripts/release-artifacts.sh, pushes the
  chart with `helm push` to an oci:// registry and attaches crds.yaml and operator.yaml to a
  GitHub release.

    check-workflows.py [DIR]
"""
import pathlib
import sys

import yaml


def load(path):
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def strings(node):
    """Every key and scalar of a YAML node, as text."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, bool):
                value = str(value).lower()
            yield f"{key}: {value}" if not isinstance(value, (dict, list)) else str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    else:
        yield str(node)


def steps_text(job):
    return "\n".join(strings(job.get("steps", [])))


def main(directory):
    errors = []
    ci = load(directory / "ci.yml")
    if not {"push", "pull_request"} <= set(ci["on"] or {}):
        errors.append("ci.yml: must run on push and pull_request")
    if not any(".ci/run" in steps_text(job) for job in ci["jobs"].values()):
        errors.append("ci.yml: no job runs .ci/run")

    release = load(directory / "release.yml")
    tags = ((release["on"] or {}).get("push") or {}).get("tags", [])
    if "v*" not in tags:
        errors.append("release.yml: must run on tags v*")
    jobs = release["jobs"]
    for name in ("image", "publish"):
        if name not in jobs:
            errors.append(f"release.yml: job {name!r} is missing")
    image = steps_text(jobs.get("image", {}))
    for needle in ("docker/setup-qemu-action", "docker/setup-buildx-action", "docker/build-push-action",
                   "linux/amd64", "linux/arm64", "push: true", "ghcr.io"):
        if needle not in image:
            errors.append(f"release.yml: the image job lacks {needle!r}")
    publish = steps_text(jobs.get("publish", {}))
    for needle in ("scripts/release-artifacts.sh", "helm push", "oci://ghcr.io", "gh release create",
                   "dist/crds.yaml", "dist/operator.yaml"):
        if needle not in publish:
            errors.append(f"release.yml: the publish job lacks {needle!r}")

    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{directory}: ci.yml runs .ci/run; release.yml builds amd64+arm64, pushes the chart, attaches the manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".github/workflows")))
