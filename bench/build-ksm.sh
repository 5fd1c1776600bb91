#!/usr/bin/env bash
# Builds kube-state-metrics, the benchmark's peer, from the Go module proxy and caches it under
#   ${PERISCOPE_CACHE:-$HOME/.cache/periscope}/kube-state-metrics/<version>/bin/kube-state-metrics
# The last line printed is the binary's path.
#
# The version and every dependency are pinned by the throwaway module in bench/ksm/ (go.mod and a
# complete go.sum), so the default -mod=readonly holds and the build never asks the checksum
# database. A stamp beside the binary records the hash of those files and the Go version: when it
# matches and the binary runs, nothing is rebuilt (well under a second). A cold build takes about
# 4 minutes on 2 cores; Go's own caches keep their defaults, so a rebuild after that is quick.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/ksm"

# Only the local Go (the module asks for go 1.24.0; the machine's is newer).
export GOTOOLCHAIN=local
# As kube-state-metrics' own release build does: a static binary.
export CGO_ENABLED=0

version="$(awk '$1 == "k8s.io/kube-state-metrics/v2" && $2 ~ /^v/ { print $2; exit }' "$module/go.mod")"
if [[ -z "$version" ]]; then
    echo "build-ksm.sh: $module/go.mod requires no k8s.io/kube-state-metrics/v2 version" >&2
    exit 1
fi

bin="${PERISCOPE_CACHE:-$HOME/.cache/periscope}/kube-state-metrics/$version/bin"
target="$bin/kube-state-metrics"
mkdir -p "$bin"

stamp="$({ cat "$module/go.mod" "$module/go.sum"; go env GOVERSION; } | sha256sum | cut -d' ' -f1)"
if [[ -x "$target" && -f "$target.stamp" && "$(cat "$target.stamp")" == "$stamp" ]] \
    && "$target" version >/dev/null 2>&1; then
    echo "kube-state-metrics $version: cached" >&2
    echo "$target"
    exit 0
fi

echo "kube-state-metrics $version: building (a cold build takes several minutes)…" >&2
start=$SECONDS
pkg=github.com/prometheus/common/version
# Into a private name first, so an interrupted build never leaves a half-written binary.
(cd "$module" && go build -trimpath \
    -ldflags="-s -w -X $pkg.Version=$version -X $pkg.Branch=release -X $pkg.Revision=$version" \
    -o "$target.tmp.$$" k8s.io/kube-state-metrics/v2)
mv -f "$target.tmp.$$" "$target"
echo "$stamp" >"$target.stamp"
echo "kube-state-metrics $version: built in $((SECONDS - start)) s" >&2
echo "$target"
