#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and promtool) for the end-to-end tests of the
# Prometheus exporter. Idempotent: returns at once when both binaries are on PATH.
#
# The package's maintainer scripts would start a `prometheus` service (and, with recommends, node
# exporter): a temporary policy-rc.d forbids that, and any prometheus process that still appears
# during the install (and was not running before) is stopped by its pid. Nothing else is touched.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (apt-get install prometheus)" >&2
    exit 1
fi

before=$(pgrep -x prometheus || true)

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# written by tests/prometheus/install.sh for the duration of an install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
fi
cleanup() {
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Stop only what this install started.
for pid in $(pgrep -x prometheus || true); do
    if ! grep -qx "$pid" <<<"$before"; then
        echo "install.sh: stopping prometheus (pid $pid) started by the package" >&2
        kill "$pid" 2>/dev/null || true
    fi
done

command -v prometheus >/dev/null && command -v promtool >/dev/null
prometheus --version 2>&1 | head -n 1
