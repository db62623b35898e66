#!/usr/bin/env bash
# Render each overlay with `kubectl kustomize` and validate every object
# against the Kubernetes API schemas (strict: unknown fields are errors) of the
# oldest and newest versions kubernetes-validate knows. `make lint` runs it.
#
# kubectl: $KUBECTL, else the one on PATH, else the one build.sh made. With
# none, the check is skipped with the reason, unless REQUIRE_KUBERNETES=1.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VALIDATE=${VALIDATE:-kubernetes-validate}
VERSIONS=(1.25.0 1.37.0)

kubectl=${KUBECTL:-$(command -v kubectl || true)}
if [ -z "$kubectl" ]; then
  kubectl=$(ls "${MLOPS_CACHE_HOME:-$HOME/.cache/mlops-template}"/kubernetes/*/bin/kubectl \
    2>/dev/null | head -1 || true)
fi
if [ -z "$kubectl" ]; then
  message="no kubectl: the Kubernetes overlays were not rendered or validated"
  if [ "${REQUIRE_KUBERNETES:-}" = 1 ]; then echo "error: $message" >&2; exit 1; fi
  echo "skipped: $message (install kubectl, or run infra/kubernetes/build.sh)" >&2
  exit 0
fi
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for overlay in "$HERE"/overlays/*/; do
  name=$(basename "$overlay")
  # kustomize's deprecation notes (the overlays keep kubectl 1.20's syntax) are not errors.
  "$kubectl" kustomize "$overlay" 2> >(grep -v "is deprecated" >&2) > "$rendered/$name.yaml"
  for version in "${VERSIONS[@]}"; do
    "$VALIDATE" --strict --quiet -k "$version" "$rendered/$name.yaml"
  done
  echo "overlays/$name: $(grep -c '^kind:' "$rendered/$name.yaml") objects valid on" \
    "Kubernetes ${VERSIONS[*]}"
done
# Objects an overlay adds when it needs them (not rendered by any overlay here).
for optional in "$HERE"/base/networkpolicy-log-storage.yaml; do
  for version in "${VERSIONS[@]}"; do
    "$VALIDATE" --strict --quiet -k "$version" "$optional"
  done
  echo "base/$(basename "$optional"): valid on Kubernetes ${VERSIONS[*]}"
done
