#!/usr/bin/env bash
# A release's files, from its tag (used by .github/workflows/release.yml; runs offline):
#
#   scripts/release-artifacts.sh TAG OWNER [IMAGE_DIGEST]
#   OUT_DIR=dist scripts/release-artifacts.sh v0.2.0 relayops sha256:…   # (default OUT_DIR: dist)
#
# writes, for TAG = vX.Y.Z (which must be `v` + the `version` of Cargo.toml):
#   OUT_DIR/relay-operator-X.Y.Z.tgz   the chart, version and appVersion X.Y.Z, its default
#                                      image ghcr.io/OWNER/relay-operator (tag: appVersion)
#   OUT_DIR/crds.yaml                  the CRDs
#   OUT_DIR/operator.yaml              the operator, image ghcr.io/OWNER/relay-operator:X.Y.Z,
#                                      pinned to IMAGE_DIGEST when given
#   OUT_DIR/notes.md                   release notes: image, digest, install commands
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/bin:$PATH"
cd "$ROOT"

[[ $# -ge 2 && $# -le 3 ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
TAG="$1"
OWNER="${2,,}" # ghcr.io names are lower case
DIGEST="${3:-}"
OUT_DIR="${OUT_DIR:-dist}"
command -v helm >/dev/null || { echo "helm not found: run scripts/install-tools.sh" >&2; exit 2; }

VERSION="${TAG#v}"
CRATE_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
if [[ "$TAG" != "v$CRATE_VERSION" ]]; then
  echo "ERROR: tag $TAG does not match Cargo.toml's version $CRATE_VERSION (expected v$CRATE_VERSION)" >&2
  exit 1
fi
if [[ -n "$DIGEST" && ! "$DIGEST" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "ERROR: image digest '$DIGEST' is not sha256:<64 hex digits>" >&2
  exit 1
fi
REPOSITORY="ghcr.io/$OWNER/relay-operator"
IMAGE="$REPOSITORY:$VERSION${DIGEST:+@$DIGEST}"

mkdir -p "$OUT_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The chart, its default image repository set to the one the release pushes to.
cp -r charts/relay-operator "$work/chart"
sed -i "s|^  repository: .*|  repository: $REPOSITORY|" "$work/chart/values.yaml"
helm package "$work/chart" --version "$VERSION" --app-version "$VERSION" --destination "$OUT_DIR" >/dev/null
CHART="$OUT_DIR/relay-operator-$VERSION.tgz"
helm show values "$CHART" | grep -qx "  repository: $REPOSITORY" \
  || { echo "ERROR: $CHART does not default to $REPOSITORY" >&2; exit 1; }
helm template relay-operator "$CHART" | grep -qF "image: \"$REPOSITORY:$VERSION\"" \
  || { echo "ERROR: $CHART does not run $REPOSITORY:$VERSION" >&2; exit 1; }

# The kubectl install, the Deployment running exactly the pushed image.
IMAGE_REPOSITORY="$REPOSITORY" IMAGE_TAG="$VERSION${DIGEST:+@$DIGEST}" OUT_DIR="$OUT_DIR" \
  scripts/gen-install.sh >/dev/null
grep -qF "image: \"$IMAGE\"" "$OUT_DIR/operator.yaml" \
  || { echo "ERROR: $OUT_DIR/operator.yaml does not run $IMAGE" >&2; exit 1; }

REPO_URL="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-$OWNER/relay-operator}"
cat > "$OUT_DIR/notes.md" <<MD
Image: \`$REPOSITORY:$VERSION\` (linux/amd64, linux/arm64)${DIGEST:+, digest \`$DIGEST\`}

Chart: \`oci://ghcr.io/$OWNER/charts/relay-operator\` version $VERSION

\`\`\`sh
helm install relay-operator oci://ghcr.io/$OWNER/charts/relay-operator --version $VERSION \\
  --namespace relay-operator --create-namespace
# or with kubectl (operator.yaml runs $IMAGE):
kubectl apply --server-side -f $REPO_URL/releases/download/$TAG/crds.yaml
kubectl apply -f $REPO_URL/releases/download/$TAG/operator.yaml
\`\`\`

Uninstall keeping every RelayService and its pods: \`kubectl delete -f operator.yaml\` (or
\`helm uninstall\`); never delete crds.yaml unless you mean to delete every custom resource.
MD

for f in "$CHART" "$OUT_DIR/crds.yaml" "$OUT_DIR/operator.yaml" "$OUT_DIR/notes.md"; do
  echo "wrote $f"
done
