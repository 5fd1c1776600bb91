#!/usr/bin/env bash
# Builds everything the benchmark needs and runs it; arguments go to periscope-bench
# (e.g. `bash bench/run.sh --objects 10k`; `--help` lists them all).
#
#   kube-apiserver + etcd   tests/controlplane/build.sh (cached under ~/.cache/periscope)
#   kube-state-metrics      bench/build-ksm.sh          (cached under ~/.cache/periscope)
#   periscope, the Prometheus exporter plugin and periscope-bench: cargo, release profile
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/controlplane/build.sh >/dev/null
ksm="$(bash bench/build-ksm.sh)"
cargo build --release --locked -p periscope-core -p periscope-exporter-prometheus -p periscope-bench
exec target/release/periscope-bench --ksm-bin "$ksm" "$@"
