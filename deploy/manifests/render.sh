#!/usr/bin/env bash
# Renders deploy/manifests/periscope.yaml: the chart with its default values, release `periscope`
# in namespace `monitoring`, for installing without Helm. tests/tests/chart.rs fails when the file
# and the chart disagree; run this after changing the chart.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
helm="$(bash "$root/tests/helm/install.sh" 2>/dev/null | tail -n 1)"
"$helm" template periscope "$root/deploy/helm/periscope" --namespace monitoring \
    >"$root/deploy/manifests/periscope.yaml"
echo "wrote $root/deploy/manifests/periscope.yaml" >&2
