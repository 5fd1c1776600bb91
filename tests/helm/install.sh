#!/usr/bin/env bash
# Installs the real tools the chart's tests use, from the Go module proxy, cached under
#   ${PERISCOPE_CACHE:-$HOME/.cache/periscope}/helm/<helm-version>/bin/helm
#   ${PERISCOPE_CACHE:-$HOME/.cache/periscope}/prometheus-operator/<version>/crds/*.yaml
# The last line printed is the helm binary's path.
#
# helm is built with `go install helm.sh/helm/v3/cmd/helm@<version>` (github.com cannot be reached
# here; the proxy can). The prometheus-operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule,
# …) come from the same proxy: `go mod download` of the operator's module holds them in
# example/prometheus-operator-crd/. Idempotent: a second run only checks the cached files.
set -euo pipefail

helm_version=v3.22.0
operator_version=v0.85.0

export GOTOOLCHAIN=local
cache="${PERISCOPE_CACHE:-$HOME/.cache/periscope}"

bin="$cache/helm/$helm_version/bin"
if [[ -x "$bin/helm" ]] && "$bin/helm" version --short 2>/dev/null | grep -q "^$helm_version"; then
    echo "helm: cached in $bin" >&2
else
    echo "helm: building helm.sh/helm/v3/cmd/helm@$helm_version (takes a few minutes once)…" >&2
    mkdir -p "$bin"
    tmp="$(mktemp -d "$bin/.build.XXXXXX")"
    GOBIN="$tmp" go install -trimpath -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
        "helm.sh/helm/v3/cmd/helm@$helm_version"
    mv -f "$tmp/helm" "$bin/helm"
    rmdir "$tmp"
fi

crds="$cache/prometheus-operator/$operator_version/crds"
if [[ -s "$crds/monitoring.coreos.com_servicemonitors.yaml" ]]; then
    echo "prometheus-operator CRDs: cached in $crds" >&2
else
    echo "prometheus-operator CRDs: downloading github.com/prometheus-operator/prometheus-operator@$operator_version…" >&2
    dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$operator_version" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    if [[ -z "$dir" || ! -d "$dir/example/prometheus-operator-crd" ]]; then
        echo "install.sh: the operator module has no example/prometheus-operator-crd ($dir)" >&2
        exit 1
    fi
    mkdir -p "$crds"
    cp "$dir"/example/prometheus-operator-crd/*.yaml "$crds/"
    chmod 0644 "$crds"/*.yaml
fi

"$bin/helm" version --short >&2
echo "$bin/helm"
